//! The app's Micro: a page, a small JSON API of notes kept in `/tmp`, and a scheduled action.
//!
//! Every request runs in a fresh sandbox: nothing in memory outlives it. What must last goes to
//! `/tmp` (or the app's Base and Drive); files beside this crate (`motd.txt`) are readable at `/`.

use std::io::{Read as _, Write as _};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Where the notes are kept: `/tmp` is the one writable folder, and it outlives a request.
const NOTES: &str = "/tmp/notes.json";

/// A note as it is stored and answered.
#[derive(Serialize, Deserialize)]
struct Note {
    id: u64,
    text: String,
}

/// A response: status, content type and body.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, value: &impl Serialize) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    fn html(body: String) -> Self {
        Self {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
        }
    }

    fn error(status: u16, message: &str) -> Self {
        Self::json(status, &json!({ "error": message }))
    }
}

/// The routes: add yours here.
fn route(method: &Method, path: &str, body: &[u8]) -> Reply {
    match (method, path) {
        (Method::Get, "/") => home(),
        (Method::Get, "/api/notes") => Reply::json(200, &load_notes()),
        (Method::Post, "/api/notes") => add_note(body),
        (Method::Get, "/api/about") => about(),
        // Scheduled actions arrive as this POST (see the README).
        (Method::Post, "/__space/v0/actions") => action(body),
        (_, "/" | "/api/notes" | "/api/about" | "/__space/v0/actions") => {
            Reply::error(405, "method not allowed")
        }
        _ => Reply::error(404, "not found"),
    }
}

fn home() -> Reply {
    let greeting = std::env::var("GREETING").unwrap_or_default();
    Reply::html(format!(
        "<!doctype html>\n<title>micros</title>\n<h1>{}</h1>\n<p>Notes live at <code>/api/notes</code>.</p>\n",
        escape(&greeting)
    ))
}

fn add_note(body: &[u8]) -> Reply {
    let text = match serde_json::from_slice::<Value>(body) {
        Err(_) => return Reply::error(400, "the body is not JSON"),
        Ok(value) => match value.get("text").and_then(Value::as_str) {
            Some(text) => text.to_string(),
            None => return Reply::error(400, "`text` must be a string"),
        },
    };
    let mut notes = load_notes();
    let note = Note {
        id: notes.last().map_or(1, |last| last.id + 1),
        text,
    };
    let reply = Reply::json(201, &note);
    notes.push(note);
    match save_notes(&notes) {
        Ok(()) => reply,
        Err(error) => Reply::error(500, &format!("cannot save the notes: {error}")),
    }
}

fn about() -> Reply {
    let var = |name| std::env::var(name).unwrap_or_default();
    let motd = std::fs::read_to_string("/motd.txt").unwrap_or_default();
    Reply::json(
        200,
        &json!({
            "micro": var("DETA_SPACE_APP_MICRO_NAME"),
            "version": var("DETA_SPACE_APP_VERSION"),
            "motd": motd.trim(),
        }),
    )
}

/// Runs a scheduled action: the body is `{"event":{"id":"tidy","trigger":"schedule"}}`.
fn action(body: &[u8]) -> Reply {
    let event: Value = serde_json::from_slice(body).unwrap_or_default();
    match event.pointer("/event/id").and_then(Value::as_str) {
        Some("tidy") => {
            let removed = load_notes().len();
            match save_notes(&[]) {
                Ok(()) => Reply::json(200, &json!({ "tidied": removed })),
                Err(error) => Reply::error(500, &format!("cannot save the notes: {error}")),
            }
        }
        _ => Reply::error(404, "unknown action"),
    }
}

fn load_notes() -> Vec<Note> {
    std::fs::read(NOTES)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn save_notes(notes: &[Note]) -> std::io::Result<()> {
    std::fs::write(NOTES, serde_json::to_vec(notes)?)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Micro;

impl wasip2::exports::http::incoming_handler::Guest for Micro {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_and_query = request.path_with_query().unwrap_or_default();
        let path = path_and_query.split('?').next().unwrap_or("/").to_string();
        let method = request.method();
        let body = read_body(request);
        send(out, route(&method, &path, &body));
    }
}

fn read_body(request: IncomingRequest) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(body) = request.consume()
        && let Ok(mut stream) = body.stream()
    {
        let _ = stream.read_to_end(&mut bytes);
    }
    bytes
}

fn send(out: ResponseOutparam, reply: Reply) {
    let headers = Fields::new();
    let _ = headers.append("content-type", reply.content_type.as_bytes());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(reply.status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(&reply.body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

wasip2::http::proxy::export!(Micro);
