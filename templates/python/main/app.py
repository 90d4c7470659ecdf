"""The Micro's routes. Add your own below; `micro.py` does the HTTP plumbing."""

import json
import os

from micro import Micro, abort, escape, html

app = Micro()

NOTES = "/tmp/notes.json"  # /tmp is the Micro's writable folder, kept while micros runs


def load_notes():
    """The saved notes, or [] before the first one."""
    try:
        with open(NOTES) as f:
            return json.load(f)
    except FileNotFoundError:
        return []


def save_notes(notes):
    """Rewrite the notes file."""
    with open(NOTES, "w") as f:
        json.dump(notes, f)


PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name}</title>
<style>body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; padding: 0 1rem; }}</style>
<h1>{greeting}</h1>
<p>{motd}</p>
<form id="add"><input name="text" placeholder="A note" required> <button>Add</button></form>
<ul id="notes"></ul>
<p><small>The notes API is private: <a href="/__space/login">log in</a> with the owner token first.</small></p>
<script>
const list = document.getElementById("notes");
async function refresh() {{
  const res = await fetch("/api/notes");
  if (!res.ok) {{ list.innerHTML = "<li>(log in to see the notes)</li>"; return; }}
  list.replaceChildren(...(await res.json()).map(n => Object.assign(document.createElement("li"), {{ textContent: n.text }})));
}}
document.getElementById("add").onsubmit = async (e) => {{
  e.preventDefault();
  await fetch("/api/notes", {{ method: "POST", headers: {{ "content-type": "application/json" }},
    body: JSON.stringify({{ text: e.target.text.value }}) }});
  e.target.reset();
  refresh();
}};
refresh();
</script>
</html>
"""


def motd():
    """The bundled motd.txt: files in the Micro's folder are readable at / (read-only)."""
    with open("/motd.txt") as f:
        return f.read().strip()


@app.get("/")
def index(req):
    greeting = os.environ.get("GREETING", "Hello from micros")
    name = os.environ.get("DETA_SPACE_APP_MICRO_NAME", "micro")
    return html(PAGE.format(greeting=escape(greeting), motd=escape(motd()), name=escape(name)))


@app.get("/api/notes")
def list_notes(req):
    return load_notes()


@app.post("/api/notes")
def add_note(req):
    data = req.json()
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        abort(400, 'expected {"text": "..."}')
    notes = load_notes()
    note = {"id": max((n["id"] for n in notes), default=0) + 1, "text": data["text"]}
    notes.append(note)
    save_notes(notes)
    return note, 201


@app.get("/api/about")
def about(req):
    return {
        "micro": os.environ.get("DETA_SPACE_APP_MICRO_NAME"),
        "version": os.environ.get("DETA_SPACE_APP_VERSION"),
        "motd": motd(),
    }


@app.action("tidy")
def tidy(req, event):
    """Runs on the schedule in Spacefile.toml (or `micros trigger . tidy`)."""
    removed = len(load_notes())
    save_notes([])
    return {"tidied": removed}


# componentize-py exports this class. Routes added below this line still count:
# they are looked up on `app` when each request arrives.
IncomingHandler = app.handler()
