"""An ordinary Flask app: nothing here knows it runs as a WebAssembly component."""

import os

from flask import Flask, abort, jsonify, redirect, render_template_string, request, url_for

app = Flask(__name__)

ITEMS = {1: {"id": 1, "name": "teapot"}, 2: {"id": 2, "name": "kettle"}}

PAGE = """<!doctype html>
<title>Flask on micros</title>
<h1>{{ greeting }}</h1>
<form method="post" action="{{ url_for('greet') }}">
  <input name="name" placeholder="Your name"> <button>Greet me</button>
</form>
"""


@app.get("/")
def index():
    return render_template_string(PAGE, greeting=os.environ.get("GREETING", "Hello"))


@app.post("/greet")
def greet():
    name = request.form.get("name", "").strip()
    if not name:
        abort(400)
    return render_template_string("<p>Hello, {{ name }}!</p>", name=name)


@app.get("/hello/<name>")
def hello(name):
    return jsonify(hello=name, shout=request.args.get("shout") == "1")


@app.post("/echo")
def echo():
    data = request.get_json()
    return jsonify(received=data, length=request.content_length)


@app.get("/items/<int:item_id>")
def item(item_id):
    if item_id not in ITEMS:
        abort(404)
    return jsonify(ITEMS[item_id])


@app.get("/env")
def env():
    return jsonify(greeting=os.environ.get("GREETING"), micro=os.environ.get("DETA_SPACE_APP_MICRO_NAME"))


@app.get("/old")
def old():
    return redirect(url_for("index"))


@app.get("/boom")
def boom():
    raise RuntimeError("an unhandled error: Flask answers 500")


@app.errorhandler(404)
def not_found(error):
    return jsonify(error="not found", path=request.path), 404


if __name__ == "__main__":  # plain `python flask_app.py` still works for local development
    app.run(debug=True)
