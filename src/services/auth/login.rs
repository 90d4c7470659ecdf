//! The owner's login page for browsers: `/__space/login` takes the owner token in a form and
//! sets the login cookie; `/__space/logout` clears it.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt as _, Limited};

use super::{Credentials, Holder, OWNER_COOKIE};
use crate::sandbox::ResponseBody;

/// The login page.
pub(crate) const LOGIN_PATH: &str = "/__space/login";
/// Clears the login cookie.
pub(crate) const LOGOUT_PATH: &str = "/__space/logout";
/// Largest login form accepted: a token and a little more.
const MAX_FORM: usize = 4096;
/// How long the login cookie lasts: 30 days, or until the owner token is rotated.
const COOKIE_MAX_AGE_SECONDS: u64 = 30 * 24 * 60 * 60;

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>micros: log in</title></head>
<body style="font-family:sans-serif;max-width:28rem;margin:4rem auto">
<h1>Log in</h1>
<p>{message}</p>
<form method="post" action="/__space/login">
<input type="hidden" name="next" value="{next}">
<label>Owner token<br><input name="token" type="password" autocomplete="current-password" required autofocus style="width:100%"></label>
<p><button type="submit">Log in</button></p>
</form>
<p><small>The token was printed when this app was first started; make a new one with
<code>micros owner-token --rotate</code>.</small></p>
</body></html>
"#;

/// Answers `/__space/login`: the form on GET, the cookie on a POST with the right token (then
/// back to `/`), the form again with 401 on a wrong one. `secure` marks the cookie `Secure`
/// (the request came over TLS: the server's own, or through a trusted proxy).
pub(crate) async fn login<B>(
    request: Request<B>,
    credentials: &Credentials,
    secure: bool,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match *request.method() {
        Method::GET | Method::HEAD => {
            let next = request
                .uri()
                .query()
                .and_then(|q| form_urlencoded(q.as_bytes(), "next"));
            page(
                StatusCode::OK,
                "Enter the app's owner token.",
                next.as_deref(),
            )
        }
        Method::POST => {
            let body = match Limited::new(request.into_body(), MAX_FORM).collect().await {
                Ok(body) => body,
                Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                    return page(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "That form was too large.",
                        None,
                    );
                }
                Err(_) => {
                    return page(
                        StatusCode::REQUEST_TIMEOUT,
                        "The form did not arrive.",
                        None,
                    );
                }
            };
            let body = body.to_bytes();
            let token = form_urlencoded(&body, "token").unwrap_or_default();
            let next = form_urlencoded(&body, "next");
            if credentials.holder(&token, false) != Some(Holder::Owner) {
                tracing::warn!(error.type = "auth", "login with a wrong owner token");
                return page(
                    StatusCode::UNAUTHORIZED,
                    "That token is not the owner token.",
                    next.as_deref(),
                );
            }
            let mut cookie = format!(
                "{OWNER_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={COOKIE_MAX_AGE_SECONDS}"
            );
            if secure {
                cookie.push_str("; Secure");
            }
            tracing::info!("owner logged in");
            redirect(
                &cookie,
                next.as_deref().filter(|n| is_local_path(n)).unwrap_or("/"),
            )
        }
        _ => page(StatusCode::METHOD_NOT_ALLOWED, "Use the form.", None),
    }
}

/// Answers `/__space/logout`: clears the cookie and goes back to the login page.
pub(crate) fn logout(secure: bool) -> Response<ResponseBody> {
    let mut cookie = format!("{OWNER_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    if secure {
        cookie.push_str("; Secure");
    }
    redirect(&cookie, LOGIN_PATH)
}

/// The page a browser gets for a private route: 401, and a link to the login page that comes
/// back to `path`.
pub(crate) fn private_page(path: &str) -> String {
    let next: String =
        percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC).collect();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Private</title></head>\n\
         <body style=\"font-family:sans-serif;max-width:28rem;margin:4rem auto\">\n\
         <h1>This page is private</h1>\n\
         <p><a href=\"{LOGIN_PATH}?next={next}\">Log in</a> with the app's owner token.</p>\n\
         </body></html>\n"
    )
}

/// Whether `next` is a path on this server (never `//host` or `/\\host`, which browsers take
/// for another site): the login page only sends a browser back to its own app.
fn is_local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control())
}

fn redirect(cookie: &str, location: &str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let location =
        HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"));
    response.headers_mut().insert(LOCATION, location);
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn page(status: StatusCode, message: &str, next: Option<&str>) -> Response<ResponseBody> {
    let next = html_escape(next.filter(|n| is_local_path(n)).unwrap_or("/"));
    let text = PAGE.replace("{message}", message).replace("{next}", &next);
    let mut response = Response::new(ResponseBody::full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The page must not be framed (clickjacking) nor load anything from elsewhere.
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    response
}

/// `text` safe inside HTML text and attribute values.
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
fn form_urlencoded(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            let value = value.replace('+', " ");
            percent_encoding::percent_decode_str(&value)
                .decode_utf8_lossy()
                .trim()
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields() {
        assert_eq!(
            form_urlencoded(b"a=1&token=abc%2Bd+e", "token").as_deref(),
            Some("abc+d e")
        );
        assert_eq!(form_urlencoded(b"tokens=1", "token"), None);
        assert_eq!(form_urlencoded(&[0xff, b'='], "token"), None);
    }

    #[test]
    fn only_local_paths_are_followed_and_escaped() {
        for ok in ["/", "/notes?x=1", "/a/b"] {
            assert!(is_local_path(ok), "{ok}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "",
            "/a\nb",
        ] {
            assert!(!is_local_path(bad), "{bad}");
        }
        assert_eq!(html_escape("/\"><script>"), "/&quot;&gt;&lt;script&gt;");
        assert!(private_page("/a b?c").contains("href=\"/__space/login?next=%2Fa%20b%3Fc\""));
    }
}
