//! Exercises the filesystem: read a bundled file, write and read `/tmp`, try to write elsewhere.

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Files;

fn outcome<T>(result: std::io::Result<T>, ok: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(value) => ok(value),
        Err(e) => format!("error: {:?}: {e}", e.kind()),
    }
}

impl wasip2::exports::http::incoming_handler::Guest for Files {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = kit::query(&request, "path").unwrap_or_else(|| "/bundled.txt".into());
        let pwq = kit::path_with_query(&request);
        let route = pwq.split('?').next().unwrap_or("/");
        let body = match route {
            "/read" => outcome(std::fs::read_to_string(&path), |s| s),
            "/write" => {
                let data = kit::query(&request, "data").unwrap_or_else(|| "written".into());
                outcome(std::fs::write(&path, &data), |()| "ok".into())
            }
            "/list" => outcome(std::fs::read_dir(&path), |entries| {
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names.join("\n")
            }),
            "/delete" => outcome(std::fs::remove_file(&path), |()| "ok".into()),
            _ => "routes: /read /write /list /delete, each with ?path=".into(),
        };
        kit::text(out, &body);
    }
}

wasip2::http::proxy::export!(Files);
