//! Sleeps `?ms=N` in a blocking host call (default 1000), then answers; `?after_head` sleeps mid-body.

use std::time::Duration;

use wasip2::http::types::{IncomingRequest, OutgoingBody, ResponseOutparam};

struct Sleeper;

impl wasip2::exports::http::incoming_handler::Guest for Sleeper {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let ms = kit::query_u64(&request, "ms", 1000);
        if kit::query(&request, "after_head").is_some() {
            let (response, body) = kit::start(200, &[]);
            ResponseOutparam::set(out, Ok(response));
            let stream = body.write().expect("response body stream");
            kit::write_all(&stream, b"partial");
            std::thread::sleep(Duration::from_millis(ms));
            kit::write_all(&stream, b" and the rest");
            drop(stream);
            OutgoingBody::finish(body, None).expect("finish");
            return;
        }
        std::thread::sleep(Duration::from_millis(ms));
        kit::text(out, &format!("slept {ms} ms\n"));
    }
}

wasip2::http::proxy::export!(Sleeper);
