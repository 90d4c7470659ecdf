//! Makes `?count=N` resource handles (header maps) and holds them all; without `count`, makes
//! them until the host says no. Handles live in host memory, so the host must cap them.

use wasip2::http::types::{Fields, IncomingRequest, ResponseOutparam};

struct Handles;

impl wasip2::exports::http::incoming_handler::Guest for Handles {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let count = kit::query_u64(&request, "count", u64::MAX);
        let mut held = Vec::new();
        while (held.len() as u64) < count {
            held.push(Fields::new());
        }
        kit::text(out, &format!("holding {} handles\n", held.len()));
    }
}

wasip2::http::proxy::export!(Handles);
