//! Queries a database bundled in its src through the runtime's read-only SQLite
//! (`wit/sqlite.wit`). The request body is the database's path on the first line, the SQL on
//! the second, then one parameter per line (`n`, `i:42`, `r:1.5`, `t:text`, `b:68656c6c6f`).
//! The answer is the column names, then one line per row, values tab-separated and typed the
//! same way; a refusal is a 422 whose body names the error. `?open=N` opens the database N
//! times (kept open) before the query.

wit_bindgen::generate!({
    path: "../../wit",
    inline: "package guests:sqlite; world sqlite { import micros:micro/sqlite@0.1.0; }",
    world: "guests:sqlite/sqlite",
    generate_all,
});

use micros::micro::sqlite::{Database, Error, Value};
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Sqlite;

/// How an error is shown: its variant, then its message.
fn show(error: &Error) -> String {
    let (kind, message) = match error {
        Error::OutsideSrc(m) => ("outside-src", m),
        Error::NotFound(m) => ("not-found", m),
        Error::ReadOnly(m) => ("read-only", m),
        Error::TooLarge(m) => ("too-large", m),
        Error::TooManyOpen(m) => ("too-many-open", m),
        Error::Invalid(m) => ("invalid", m),
    };
    format!("{kind}: {message}\n")
}

fn parse(line: &str) -> Value {
    match line.split_once(':') {
        Some(("i", v)) => Value::Integer(v.parse().expect("integer parameter")),
        Some(("r", v)) => Value::Real(v.parse().expect("real parameter")),
        Some(("t", v)) => Value::Text(v.to_string()),
        Some(("b", v)) => Value::Blob(
            (0..v.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&v[i..i + 2], 16).expect("hex blob"))
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn format(value: &Value) -> String {
    match value {
        Value::Null => "n".to_string(),
        Value::Integer(i) => format!("i:{i}"),
        Value::Real(r) => format!("r:{r}"),
        Value::Text(t) => format!("t:{t}"),
        Value::Blob(b) => format!(
            "b:{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

impl wasip2::exports::http::incoming_handler::Guest for Sqlite {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let opens = kit::query_u64(&request, "open", 0);
        let summary = kit::query(&request, "summary").is_some();
        let body = String::from_utf8(kit::read_body(&request)).expect("utf-8 body");
        let mut lines = body.lines();
        let path = lines.next().unwrap_or_default();
        let sql = lines.next().unwrap_or_default();
        let params: Vec<Value> = lines.map(parse).collect();
        let refuse = |out, error: &Error| kit::respond(out, 422, &[], show(error).as_bytes());
        let mut held = Vec::new();
        for _ in 0..opens {
            match Database::open(path) {
                Ok(database) => held.push(database),
                Err(error) => return refuse(out, &error),
            }
        }
        let database = match Database::open(path) {
            Ok(database) => database,
            Err(error) => return refuse(out, &error),
        };
        match database.query(sql, &params) {
            Ok(rows) if summary => kit::text(out, &format!("rows={}\n", rows.rows.len())),
            Ok(rows) => {
                let mut text = rows.columns.join("\t");
                text.push('\n');
                for row in &rows.rows {
                    text.push_str(&row.iter().map(format).collect::<Vec<_>>().join("\t"));
                    text.push('\n');
                }
                kit::text(out, &text);
            }
            Err(error) => refuse(out, &error),
        }
    }
}

wasip2::http::proxy::export!(Sqlite);
