//! Fails on purpose: `/` panics, `/silent` returns without a response, `/error` sets an error.

use wasip2::http::types::{ErrorCode, IncomingRequest, ResponseOutparam};

struct Panic;

impl wasip2::exports::http::incoming_handler::Guest for Panic {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match kit::path_with_query(&request).as_str() {
            "/silent" => drop(out),
            "/error" => ResponseOutparam::set(
                out,
                Err(ErrorCode::InternalError(Some("on purpose".into()))),
            ),
            _ => panic!("the panic guest panics on purpose"),
        }
    }
}

wasip2::http::proxy::export!(Panic);
