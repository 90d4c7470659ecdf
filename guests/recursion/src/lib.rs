//! Recurses `?depth=N` calls deep (default: until the stack runs out), each frame holding a
//! buffer so both the wasm stack and the shadow stack in linear memory grow.

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Recursion;

#[inline(never)]
fn descend(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth as u8; 256]);
    if depth == 0 {
        return frame[0] as u64;
    }
    std::hint::black_box(descend(depth - 1)) + frame[255] as u64 % 2
}

impl wasip2::exports::http::incoming_handler::Guest for Recursion {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let depth = kit::query_u64(&request, "depth", u64::MAX);
        let result = descend(depth);
        kit::text(out, &format!("reached depth {depth} ({result})\n"));
    }
}

wasip2::http::proxy::export!(Recursion);
