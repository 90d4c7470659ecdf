//! The smallest Micro: answers every request with a greeting and logs one line on each stream.

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        if kit::query(&request, "log").is_some() {
            println!("hello on stdout");
            eprintln!("hello on stderr");
        }
        kit::text(out, "hello from micros\n");
    }
}

wasip2::http::proxy::export!(Hello);
