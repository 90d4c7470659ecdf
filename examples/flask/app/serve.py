"""The component's entry point: micro.wsgi runs the Flask app behind wasi:http."""

import micro
from flask_app import app

# Modules imported only while a request is served must be in the component already
# (componentize-py snapshots the interpreter at build time): import Flask's whole stack now.
micro.preload("flask", "werkzeug", "jinja2", "markupsafe", "itsdangerous")

IncomingHandler = micro.wsgi(app)
