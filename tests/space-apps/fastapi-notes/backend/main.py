"""A FastAPI app as Space apps were written: run with `uvicorn main:app`."""

import os
from contextlib import asynccontextmanager
from typing import Optional

from deta import Deta
from fastapi import BackgroundTasks, FastAPI, Form, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

LOG = "/tmp/events.log"


def record(event):
    with open(LOG, "a") as f:
        f.write(event + "\n")


def events():
    try:
        with open(LOG) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


@asynccontextmanager
async def lifespan(app):
    app.state.started = True
    yield
    record("shutdown")


app = FastAPI(lifespan=lifespan)
db = Deta().Base("notes")


class Note(BaseModel):
    text: str
    stars: int = 0


class Saved(BaseModel):
    id: int
    text: str
    stars: int


@app.get("/public/hello")
def hello():
    return {"greeting": os.environ.get("GREETING"), "started": app.state.started}


@app.get("/items/{item_id}")
def item(item_id: int, q: Optional[str] = None):
    return {"item_id": item_id, "q": q}


@app.post("/notes", response_model=Saved, status_code=201)
async def add(note: Note, tasks: BackgroundTasks):
    tasks.add_task(record, "background:" + note.text)
    db.put({"text": note.text, "stars": note.stars}, "1")
    return {"id": 1, "text": note.text, "stars": note.stars, "secret": "not in the model"}


@app.get("/notes/{key}")
def get_note(key: str):
    item = db.get(key)
    if item is None:
        raise HTTPException(status_code=404, detail="no such note")
    return item


@app.post("/form")
async def form(name: str = Form(...)):
    return {"name": name}


@app.get("/events")
def list_events():
    return {"events": events()}


@app.get("/stream")
async def stream():
    async def parts():
        for i in range(3):
            yield f"part {i}\n"

    return StreamingResponse(parts(), media_type="text/plain")


@app.get("/stream-fails")
async def stream_fails():
    async def parts():
        yield "part 0\n"
        raise RuntimeError("the stream failed half way")

    return StreamingResponse(parts(), media_type="text/plain")


@app.post("/__space/v0/actions")
async def action(request: Request):
    event = (await request.json())["event"]
    record("action:" + event["id"])
    return {"ran": event["id"]}
