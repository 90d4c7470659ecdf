//! Sends `?bytes=N` bytes of `x`; `&declare` sets `content-length`; `&trap_after=M` panics after M bytes.

use wasip2::http::types::{IncomingRequest, OutgoingBody, ResponseOutparam};

struct Big;

impl wasip2::exports::http::incoming_handler::Guest for Big {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let bytes = kit::query_u64(&request, "bytes", 1024) as usize;
        let trap_after = kit::query(&request, "trap_after").and_then(|v| v.parse::<usize>().ok());
        let length = bytes.to_string();
        let headers: &[(&str, &[u8])] = if kit::query(&request, "declare").is_some() {
            &[("content-length", length.as_bytes())]
        } else {
            &[]
        };
        let (response, body) = kit::start(200, headers);
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("response body stream");
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < bytes {
            if trap_after.is_some_and(|limit| sent >= limit) {
                panic!("big: trapping after {sent} bytes as asked");
            }
            let n = chunk.len().min(bytes - sent);
            kit::write_all(&stream, &chunk[..n]);
            sent += n;
        }
        if trap_after.is_some() {
            panic!("big: trapping at the end as asked");
        }
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish");
    }
}

wasip2::http::proxy::export!(Big);
