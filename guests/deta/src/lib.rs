//! Talks to Deta Base and Drive the way Deta's SDKs did: a request to `/{base}/{operation}` here
//! is sent with the same method, body and content type to
//! `https://database.deta.sh/v1/{project id}/{base}/{operation}`, and one to
//! `/drive/{drive}/{operation}` to `https://drive.deta.sh/v1/{project id}/{drive}/{operation}`,
//! with `X-API-Key: $DETA_PROJECT_KEY`; the answer is passed back (status, content type, body).
//! `?key=K` sends K instead (`?key=` sends none); `?project=P` puts P in the path instead; the
//! rest of the query goes with the request.

use std::io::Read as _;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, ResponseOutparam, Scheme,
};

struct Deta;

impl wasip2::exports::http::incoming_handler::Guest for Deta {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let project_key = std::env::var("DETA_PROJECT_KEY").unwrap_or_default();
        let key = kit::query(&request, "key").unwrap_or_else(|| project_key.clone());
        let project = kit::query(&request, "project").unwrap_or_else(|| {
            project_key
                .split_once('_')
                .map(|(id, _)| id.to_string())
                .unwrap_or_default()
        });
        let full = kit::path_with_query(&request);
        let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
        let query: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("key=") && !p.starts_with("project="))
            .collect();
        let (host, path) = match path.strip_prefix("/drive") {
            Some(rest) => ("drive.deta.sh", rest),
            None => ("database.deta.sh", path),
        };
        let target = if query.is_empty() {
            format!("/v1/{project}{path}")
        } else {
            format!("/v1/{project}{path}?{}", query.join("&"))
        };
        let content_type = request
            .headers()
            .get("content-type")
            .into_iter()
            .next()
            .unwrap_or_else(|| b"application/json".to_vec());
        let method = request.method();
        let body = kit::read_body(&request);

        let headers = Fields::new();
        if !key.is_empty() {
            headers.append("x-api-key", key.as_bytes()).expect("header");
        }
        headers
            .append("content-type", &content_type)
            .expect("header");
        let outgoing = OutgoingRequest::new(headers);
        outgoing.set_method(&method).expect("method");
        outgoing.set_scheme(Some(&Scheme::Https)).expect("scheme");
        outgoing.set_authority(Some(host)).expect("authority");
        outgoing.set_path_with_query(Some(&target)).expect("path");
        let sent_body = outgoing.body().expect("body");
        // Sent first, then the body streamed: a large body does not fit in the pipe's buffer.
        let future = match outgoing_handler::handle(outgoing, None) {
            Ok(future) => future,
            Err(code) => return kit::respond(out, 599, &[], format!("{code:?}").as_bytes()),
        };
        if !matches!(method, Method::Get) {
            let stream = sent_body.write().expect("body stream");
            // The host may answer (413) before it has read everything: stop writing then.
            for chunk in body.chunks(4096) {
                if stream.blocking_write_and_flush(chunk).is_err() {
                    break;
                }
            }
            drop(stream);
        }
        let _ = OutgoingBody::finish(sent_body, None);
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            other => return kit::respond(out, 599, &[], format!("{other:?}").as_bytes()),
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .into_iter()
            .next()
            .unwrap_or_default();
        let incoming = response.consume().expect("response body");
        let mut bytes = Vec::new();
        incoming
            .stream()
            .expect("response stream")
            .read_to_end(&mut bytes)
            .expect("read response");
        kit::respond(out, status, &[("content-type", &content_type)], &bytes);
    }
}

wasip2::http::proxy::export!(Deta);
