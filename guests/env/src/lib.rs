//! Lists the environment the Micro sees (`NAME=value` lines, sorted) and its arguments.

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Env;

impl wasip2::exports::http::incoming_handler::Guest for Env {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
        vars.sort();
        let args = std::env::args().count();
        kit::text(out, &format!("{}\nargs={args}\n", vars.join("\n")));
    }
}

wasip2::http::proxy::export!(Env);
