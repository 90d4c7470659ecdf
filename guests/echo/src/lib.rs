//! Echoes the request: method, path and headers in response headers, the body streamed back.

use std::io::Write as _;

use wasip2::http::types::{IncomingRequest, OutgoingBody, ResponseOutparam};

struct Echo;

impl wasip2::exports::http::incoming_handler::Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = format!("{:?}", request.method());
        let path = kit::path_with_query(&request);
        let authority = request.authority().unwrap_or_default();
        let mut headers: Vec<(String, Vec<u8>)> = request.headers().entries();
        headers.sort();
        let header_list = headers
            .iter()
            .map(|(name, value)| format!("{name}={}", String::from_utf8_lossy(value)))
            .collect::<Vec<_>>()
            .join(";");
        let (response, body) = kit::start(
            200,
            &[
                ("x-echo-method", method.as_bytes()),
                ("x-echo-path", path.as_bytes()),
                ("x-echo-authority", authority.as_bytes()),
                ("x-echo-headers", header_list.as_bytes()),
            ],
        );
        ResponseOutparam::set(out, Ok(response));
        // Stream: each chunk read is written back before the next is read.
        let incoming = request.consume().expect("request body");
        {
            let mut input = incoming.stream().expect("request stream");
            let mut output = body.write().expect("response stream");
            let mut buffer = vec![0; 16 * 1024];
            loop {
                match std::io::Read::read(&mut input, &mut buffer) {
                    Ok(0) => break,
                    Ok(n) => output.write_all(&buffer[..n]).expect("write echo"),
                    Err(e) => panic!("reading the request body failed: {e}"),
                }
            }
            output.flush().expect("flush echo");
        }
        OutgoingBody::finish(body, None).expect("finish echo");
    }
}

wasip2::http::proxy::export!(Echo);
