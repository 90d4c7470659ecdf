//! Never answers: spins in a CPU-bound loop without calling the host.

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Spin;

impl wasip2::exports::http::incoming_handler::Guest for Spin {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        if kit::query(&request, "after_head").is_some() {
            // Send the head and some body, then spin: the limit must cut the body.
            let (response, body) = kit::start(200, &[]);
            ResponseOutparam::set(out, Ok(response));
            let stream = body.write().expect("response body stream");
            kit::write_all(&stream, b"partial");
            spin_forever();
        }
        let _ = out;
        spin_forever();
    }
}

fn spin_forever() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

wasip2::http::proxy::export!(Spin);
