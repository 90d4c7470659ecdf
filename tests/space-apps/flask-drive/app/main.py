"""A Flask app with Drive uploads and a Base, as Space apps were written: `gunicorn main:app`."""

from deta import Deta
from flask import Flask, Response, abort, jsonify, request

app = Flask(__name__)
deta = Deta()
drive = deta.Drive("uploads")
notes = deta.Base("notes")


@app.get("/health")
def health():
    return "ok"


@app.post("/upload")
def upload():
    file = request.files["file"]
    name = drive.put(file.filename, file.read(), content_type=file.mimetype)
    return jsonify({"uploaded": name}), 201


@app.get("/files")
def files():
    return jsonify(drive.list()["names"])


@app.get("/files/<path:name>")
def download(name):
    body = drive.get(name)
    if body is None:
        abort(404)
    return Response(b"".join(body.iter_chunks(4)), mimetype="application/octet-stream")


@app.delete("/files/<path:name>")
def remove(name):
    return jsonify({"deleted": drive.delete(name)})


@app.post("/notes")
def add_note():
    saved = notes.put(request.get_json(), expire_in=3600)
    return jsonify(saved), 201


@app.get("/notes")
def list_notes():
    page = notes.fetch(limit=100)
    return jsonify({"count": page.count, "keys": sorted(item["key"] for item in page.items)})


@app.get("/sdk")
def sdk():
    """The calls Deta's SDK made, each answer as the SDK returned it."""
    things = deta.Base("things")
    files = deta.Drive("scratch")
    out = {"put": things.put({"n": 1}, "a"), "put_value": things.put("plain", "v")}
    out["put_many"] = things.put_many([{"key": "b", "n": 2}, {"key": "c", "n": 3, "tags": ["x"]}])["processed"]["items"]
    out["get"], out["missing"] = things.get("a"), things.get("zzz")
    try:
        things.insert({"n": 9}, "a")
    except Exception as error:
        out["insert_taken"] = str(error)
    out["insert"] = things.insert({"n": 4}, "d")
    things.update({"n": things.util.increment(5), "tags": things.util.append("y"), "new": True}, "c")
    things.update({"tags": things.util.prepend("w"), "new": things.util.trim()}, "c")
    out["updated"] = things.get("c")
    try:
        things.update({"n": 1}, "nope")
    except Exception as error:
        out["update_missing"] = str(error)
    page = things.fetch({"n?gte": 2}, limit=2)
    rest = things.fetch({"n?gte": 2}, limit=2, last=page.last)
    out["pages"] = [[p.count, p.last, [i["key"] for i in p.items]] for p in (page, rest)]
    out["or"] = sorted(i["key"] for i in things.fetch([{"n": 1}, {"n": 4}]).items)
    things.delete("d")
    out["deleted"] = things.get("d")
    at = things.put({"n": 0}, "e", expire_at=2000000000)
    out["expire_at"] = at["__expires"]
    files.put("notes/a.txt", "hello drive", content_type="text/plain")
    files.put("b.bin", b"\x00\x01\x02")
    body = files.get("notes/a.txt")
    out["file"] = body.read(5).decode() + "|" + body.read().decode()
    out["lines"] = [l.decode() for l in files.get("notes/a.txt").iter_lines(3)]
    out["list"] = files.list()["names"]
    out["list_prefix"] = files.list(prefix="notes/")["names"]
    out["list_page"] = files.list(limit=1)
    out["delete_many"] = files.delete_many(["b.bin", "nope"])
    out["missing_file"] = files.get("b.bin")
    return jsonify(out)


@app.get("/requests")
def via_requests():
    """`requests`, as apps call other services with it: here, Deta's Base API itself."""
    import os

    import requests

    key = os.environ["DETA_PROJECT_KEY"]
    url = f"https://database.deta.sh/v1/{key.split('_')[0]}/notes/items/n1"
    refused = requests.get(url, timeout=5)
    answer = requests.get(url, headers={"X-API-Key": key}, timeout=5)
    return jsonify({"refused": refused.status_code, "status": answer.status_code, "item": answer.json()})
