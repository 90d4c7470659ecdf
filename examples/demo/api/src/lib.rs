//! The demo's API Micro under `/api`: notes kept in its `/tmp`, and what it knows of itself.

use std::io::{Read as _, Write as _};

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

const NOTES: &str = "/tmp/notes.txt";

struct Api;

impl wasip2::exports::http::incoming_handler::Guest for Api {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let route = path.split('?').next().unwrap_or("/").to_string();
        let (status, body) = match (request.method(), route.as_str()) {
            (Method::Get, "/") => (
                200,
                format!(
                    "{{\"micro\":{},\"type\":{},\"version\":{}}}",
                    json(&var("DETA_SPACE_APP_MICRO_NAME")),
                    json(&var("DETA_SPACE_APP_MICRO_TYPE")),
                    json(&var("DETA_SPACE_APP_VERSION")),
                ),
            ),
            (Method::Get, "/notes") => {
                let notes = std::fs::read_to_string(NOTES).unwrap_or_default();
                let items: Vec<String> = notes.lines().map(json).collect();
                (200, format!("[{}]", items.join(",")))
            }
            (Method::Post, "/notes") => {
                let text = read_body(&request);
                let text = text.trim().replace('\n', " ");
                if text.is_empty() {
                    (400, "{\"error\":\"a note needs some text\"}".to_string())
                } else {
                    let saved = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(NOTES)
                        .and_then(|mut file| writeln!(file, "{text}"));
                    match saved {
                        Ok(()) => (201, format!("{{\"saved\":{}}}", json(&text))),
                        Err(e) => (500, format!("{{\"error\":{}}}", json(&e.to_string()))),
                    }
                }
            }
            (Method::Post, "/__space/v0/actions") => {
                // The scheduled "tidy" action: drop the notes.
                let _ = std::fs::remove_file(NOTES);
                (200, "{\"tidied\":true}".to_string())
            }
            _ => (404, "{\"error\":\"not found\"}".to_string()),
        };
        send(out, status, body.as_bytes());
    }
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn json(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn read_body(request: &IncomingRequest) -> String {
    let mut bytes = Vec::new();
    if let Ok(body) = request.consume() {
        if let Ok(mut stream) = body.stream() {
            let _ = stream.read_to_end(&mut bytes);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn send(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"application/json");
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("response body");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = outgoing.write().expect("body stream");
        let _ = stream.write_all(body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

wasip2::http::proxy::export!(Api);
