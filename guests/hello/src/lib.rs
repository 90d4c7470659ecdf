//! The smallest Micro: answers every request with a greeting; `?log` logs a line on each stream,
//! `?flood=N` prints N lines to stdout.

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        for i in 0..kit::query_u64(&request, "flood", 0) {
            println!("flood line {i:05}");
        }
        if kit::query(&request, "log").is_some() {
            println!("hello on stdout");
            eprintln!("hello on stderr");
        }
        kit::text(out, "hello from micros\n");
    }
}

wasip2::http::proxy::export!(Hello);
