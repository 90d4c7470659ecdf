//! The demo's primary Micro: serves its bundled page, greeting with the `GREETING` preset.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Web;

impl wasip2::exports::http::incoming_handler::Guest for Web {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        println!("web: {:?} {path}", request.method());
        let (status, kind, body) = match path.split('?').next().unwrap_or("/") {
            "/" => match std::fs::read_to_string("/static/index.html") {
                Ok(page) => {
                    let greeting = std::env::var("GREETING").unwrap_or_default();
                    (
                        200,
                        "text/html; charset=utf-8",
                        page.replace("{{GREETING}}", &escape(&greeting)),
                    )
                }
                Err(e) => (
                    500,
                    "text/plain; charset=utf-8",
                    format!("cannot read the page: {e}\n"),
                ),
            },
            _ => (404, "text/plain; charset=utf-8", "not found\n".to_string()),
        };
        send(out, status, kind, body.as_bytes());
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn send(out: ResponseOutparam, status: u16, kind: &str, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.append("content-type", kind.as_bytes());
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

wasip2::http::proxy::export!(Web);
