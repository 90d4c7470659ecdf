//! Records every request it gets (method, path, headers, body) in `/tmp/received.log` and
//! answers with the same record: how tests see exactly what a Micro was delivered.

use std::io::Write as _;

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Recorder;

impl wasip2::exports::http::incoming_handler::Guest for Recorder {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let mut headers: Vec<(String, Vec<u8>)> = request.headers().entries();
        headers.sort();
        let mut record = format!(
            "{:?} {}\nauthority: {}\n",
            request.method(),
            kit::path_with_query(&request),
            request.authority().unwrap_or_default()
        );
        for (name, value) in headers {
            record.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(&value)));
        }
        let body = kit::read_body(&request);
        record.push('\n');
        record.push_str(&String::from_utf8_lossy(&body));
        record.push('\n');
        let logged = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open("/tmp/received.log")
            .and_then(|mut log| log.write_all(record.as_bytes()));
        match logged {
            Ok(()) => kit::text(out, &record),
            Err(e) => kit::respond(out, 500, &[], format!("cannot log: {e}\n").as_bytes()),
        }
    }
}

wasip2::http::proxy::export!(Recorder);
