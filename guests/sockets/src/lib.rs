//! Tries the network through `wasi:sockets` (TCP connect, UDP bind, name lookup) and reports
//! what each attempt got: the runtime must deny every one.

use std::net::{TcpStream, ToSocketAddrs as _, UdpSocket};

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Sockets;

fn outcome<T>(result: std::io::Result<T>) -> String {
    match result {
        Ok(_) => "allowed".into(),
        Err(e) => format!("denied ({:?})", e.kind()),
    }
}

impl wasip2::exports::http::incoming_handler::Guest for Sockets {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = kit::query(&request, "target").unwrap_or_else(|| "127.0.0.1:80".into());
        let report = format!(
            "tcp connect: {}\nudp bind: {}\nname lookup: {}\n",
            outcome(TcpStream::connect(&target)),
            outcome(UdpSocket::bind("0.0.0.0:0")),
            outcome("localhost:80".to_socket_addrs()),
        );
        kit::text(out, &report);
    }
}

wasip2::http::proxy::export!(Sockets);
