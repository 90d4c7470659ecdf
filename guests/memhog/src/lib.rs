//! Allocates and touches `?mib=N` MiB (default 16) in `?step=` MiB pieces, then answers.

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct MemHog;

impl wasip2::exports::http::incoming_handler::Guest for MemHog {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let mib = kit::query_u64(&request, "mib", 16) as usize;
        let step = kit::query_u64(&request, "step", mib.max(1) as u64).max(1) as usize;
        let mut held: Vec<Vec<u8>> = Vec::new();
        let mut total = 0;
        while total < mib {
            let size = step.min(mib - total);
            // Touch every page so the memory is really used, not just reserved.
            held.push(vec![0xA5; size << 20]);
            total += size;
        }
        let sum: usize = held.iter().map(|v| v.len()).sum();
        kit::text(out, &format!("held {} MiB\n", sum >> 20));
    }
}

wasip2::http::proxy::export!(MemHog);
