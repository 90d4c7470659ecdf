//! Who gets in: private routes, the owner token (bearer and login cookie), app keys where a
//! Micro takes them, public routes and their globs, and credentials never reaching a guest.

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::Full;
use micros::{AuthMode, Credentials};
use micros_guests as guests;

use crate::support::{MicroSpec, Reply, Server, micro, send, serve_config};

/// Serves with access control on.
async fn serve_private(micros: &[MicroSpec]) -> Server {
    serve_config(micros, |config| config.auth = AuthMode::Required).await
}

/// Serves with access control on, behind a trusted proxy on loopback.
async fn serve_behind_proxy(micros: &[MicroSpec]) -> Server {
    serve_config(micros, |config| {
        config.auth = AuthMode::Required;
        config.front_door.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
}

/// The credentials of a served test app, as the CLI would open them.
fn credentials(server: &Server) -> Credentials {
    let state = micros::state::StateDir::open(server.dir.path().join(".micros")).unwrap();
    Credentials::open(&state)
}

/// `GET path` with extra headers.
async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = http::Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(server.addr, request.body(Full::new(Bytes::new())).unwrap()).await
}

fn assert_unauthorized(reply: &Reply, micro: &str) {
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"micros\"")
    );
    assert_eq!(
        reply.text(),
        format!(
            "micro `{micro}`: this route is private: send the owner token (`Authorization: Bearer \
             ...`, or log in at /__space/login) or, where the Micro takes them, an app key \
             (`X-Space-App-Key`)\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn private_routes_need_the_owner_token() {
    let server = serve_private(&[micro("web", guests::RECORDER).primary()]).await;
    // Before any owner token exists, nobody gets in.
    assert_unauthorized(&get(&server, "/", &[]).await, "web");
    let token = credentials(&server).ensure_owner_token().unwrap().unwrap();
    assert_unauthorized(&get(&server, "/", &[]).await, "web");
    assert_unauthorized(
        &get(&server, "/", &[("authorization", "Bearer wrong")]).await,
        "web",
    );
    // A good token beside a bad one is still refused.
    let both = get(
        &server,
        "/",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-space-app-key", "wrong"),
        ],
    )
    .await;
    assert_unauthorized(&both, "web");
    let reply = get(
        &server,
        "/notes?x=1",
        &[
            ("authorization", &format!("bearer {token}")),
            ("x-kept", "yes"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = reply.text();
    assert!(seen.starts_with("Method::Get /notes?x=1\n"), "{seen}");
    assert!(seen.contains("\nx-kept: yes\n"), "{seen}");
    assert!(
        !seen.contains("authorization") && !seen.contains(&token),
        "{seen}"
    );
    // Rotated: the old token stops working at once, the new one works.
    let new_token = credentials(&server).rotate_owner_token().unwrap();
    assert_unauthorized(
        &get(
            &server,
            "/",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await,
        "web",
    );
    let reply = get(
        &server,
        "/",
        &[("authorization", &format!("Bearer {new_token}"))],
    )
    .await;
    assert_eq!(reply.status, 200);
    // The runtime's namespace stays closed, credentials or not.
    let reply = get(
        &server,
        "/__space/v0/actions",
        &[("authorization", &format!("Bearer {new_token}"))],
    )
    .await;
    assert_eq!(reply.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_page_sets_a_cookie_the_guest_never_sees() {
    let server = serve_private(&[micro("web", guests::RECORDER).primary()]).await;
    let token = credentials(&server).ensure_owner_token().unwrap().unwrap();
    let page = get(&server, "/__space/login", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.text()
            .contains("<form method=\"post\" action=\"/__space/login\">")
    );
    let login = |form: String| {
        send(
            server.addr,
            http::Request::post("/__space/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(form)))
                .unwrap(),
        )
    };
    let wrong = login("token=nope".into()).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    assert!(wrong.text().contains("That token is not the owner token."));
    let right = login(format!("token={token}")).await;
    assert_eq!(right.status, 303);
    assert_eq!(right.header("location"), Some("/"));
    assert_eq!(
        right.header("set-cookie"),
        Some(
            format!("micros_owner={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=2592000")
                .as_str()
        )
    );
    let reply = get(
        &server,
        "/",
        &[(
            "cookie",
            &format!("theme=dark; micros_owner={token}; lang=en"),
        )],
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = reply.text();
    assert!(seen.contains("\ncookie: theme=dark; lang=en\n"), "{seen}");
    assert!(!seen.contains(&token), "{seen}");
    assert_unauthorized(
        &get(&server, "/", &[("cookie", "micros_owner=forged")]).await,
        "web",
    );
    // A browser asking for a private page is sent to log in, and back to the page after.
    let private = get(&server, "/notes?id=7", &[("accept", "text/html,*/*")]).await;
    assert_eq!(private.status, 401);
    assert_eq!(
        private.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        private
            .text()
            .contains("<a href=\"/__space/login?next=%2Fnotes%3Fid%3D7\">Log in</a>"),
        "{}",
        private.text()
    );
    let form = get(&server, "/__space/login?next=%2Fnotes%3Fid%3D7", &[]).await;
    assert!(
        form.text()
            .contains("<input type=\"hidden\" name=\"next\" value=\"/notes?id=7\">"),
        "{}",
        form.text()
    );
    let back = login(format!("token={token}&next=%2Fnotes%3Fid%3D7")).await;
    assert_eq!(back.header("location"), Some("/notes?id=7"));
    // Never to another site.
    let elsewhere = login(format!("token={token}&next=%2F%2Fevil.example")).await;
    assert_eq!(elsewhere.header("location"), Some("/"));
    let logout = get(&server, "/__space/logout", &[]).await;
    assert_eq!(logout.status, 303);
    assert_eq!(
        logout.header("set-cookie"),
        Some("micros_owner=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cookie_is_secure_when_a_trusted_proxy_says_tls() {
    let server = serve_behind_proxy(&[micro("web", guests::HELLO).primary()]).await;
    let token = credentials(&server).ensure_owner_token().unwrap().unwrap();
    let reply = send(
        server.addr,
        http::Request::post("/__space/login")
            .header("x-forwarded-proto", "https")
            .body(Full::new(Bytes::from(format!("token={token}"))))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 303);
    assert!(
        reply.header("set-cookie").unwrap().ends_with("; Secure"),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn app_keys_open_only_micros_that_take_them() {
    let server = serve_private(&[
        micro("web", guests::RECORDER).primary(),
        micro("api", guests::RECORDER)
            .path("/api")
            .toml("[micros.presets]\napi_keys = true"),
    ])
    .await;
    let credentials = credentials(&server);
    let token = credentials.ensure_owner_token().unwrap().unwrap();
    let key = credentials.create_key("ci").unwrap();
    let reply = get(&server, "/api/items", &[("X-SPACE-APP-KEY", &key)]).await;
    assert_eq!(reply.status, 200);
    let seen = reply.text();
    assert!(seen.starts_with("Method::Get /items\n"), "{seen}");
    assert!(
        !seen.contains("x-space-app-key") && !seen.contains(&key),
        "{seen}"
    );
    // The primary takes no app keys: the same key is refused there.
    assert_unauthorized(
        &get(&server, "/", &[("x-space-app-key", &key)]).await,
        "web",
    );
    // The owner token opens both; as an app key it is not one.
    let bearer = format!("Bearer {token}");
    assert_eq!(
        get(&server, "/api", &[("authorization", &bearer)])
            .await
            .status,
        200
    );
    assert_unauthorized(
        &get(&server, "/api", &[("x-space-app-key", &token)]).await,
        "api",
    );
    assert_unauthorized(
        &get(&server, "/api", &[("x-space-app-key", "wrong")]).await,
        "api",
    );
    assert!(credentials.revoke_key("ci").unwrap());
    assert_unauthorized(
        &get(&server, "/api", &[("x-space-app-key", &key)]).await,
        "api",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn public_routes_and_globs_open_without_credentials() {
    let server = serve_private(&[
        micro("web", guests::RECORDER)
            .primary()
            .toml("public_routes = [\"/public/*\", \"/api-docs/*/v1\", \"/exact\"]"),
        micro("api", guests::RECORDER)
            .path("/api")
            .toml("public_routes = [\"/docs\"]"),
        micro("site", guests::HELLO)
            .path("/site")
            .toml("public = true"),
    ])
    .await;
    credentials(&server).ensure_owner_token().unwrap();
    for path in [
        "/public/",
        "/public/app.css",
        "/public/a/b",
        "/api-docs/x/v1",
        "/exact",
        "/exact?q=1",
        "/api/docs",
        "/site",
        "/site/any/thing",
    ] {
        assert_eq!(get(&server, path, &[]).await.status, 200, "{path}");
    }
    for (path, micro) in [
        ("/", "web"),
        ("/public", "web"),
        ("/exactly", "web"),
        ("/api-docs/x/v2", "web"),
        // Patterns are relative to the Micro's own path.
        ("/docs", "web"),
        ("/api", "api"),
        ("/api/docs/x", "api"),
        // A path that a framework would resolve out of the public folder is not public.
        ("/public/../secret", "web"),
        ("/public/%2e%2e/secret", "web"),
        ("/public/..%2Fsecret", "web"),
    ] {
        assert_unauthorized(&get(&server, path, &[]).await, micro);
    }
    // Credentials sent to a public route are still taken off.
    let seen = get(
        &server,
        "/public/x",
        &[
            ("authorization", "Bearer nope"),
            ("x-space-app-key", "nope"),
        ],
    )
    .await
    .text();
    assert!(!seen.contains("nope"), "{seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_auth_everything_is_open_and_credentials_still_taken() {
    let server = serve_config(&[micro("web", guests::RECORDER).primary()], |config| {
        config.auth = AuthMode::Off;
    })
    .await;
    let reply = get(
        &server,
        "/",
        &[("authorization", "Bearer x"), ("x-space-app-key", "k")],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(!reply.text().contains("authorization"));
    assert!(!reply.text().contains("x-space-app-key"));
}

/// The login form is held to the front door's limits: a form that stalls is cut at the body
/// timeout (408), one past 4 KiB is refused (413).
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_or_oversized_login_form_is_refused() {
    let server = serve_config(&[micro("web", guests::HELLO).primary()], |config| {
        config.auth = AuthMode::Required;
        config.front_door.body_read_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let stalled = futures::stream::iter([Ok::<_, std::convert::Infallible>(
        hyper::body::Frame::data(Bytes::from_static(b"token=")),
    )])
    .chain(futures::stream::pending());
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        send(
            server.addr,
            http::Request::post("/__space/login")
                .body(http_body_util::StreamBody::new(stalled))
                .unwrap(),
        ),
    )
    .await
    .expect("a stalled login form is cut, not waited for");
    assert_eq!(reply.status, 408);
    assert!(reply.text().contains("The form did not arrive."));
    let big = send(
        server.addr,
        http::Request::post("/__space/login")
            .body(Full::new(Bytes::from(vec![b'x'; 5000])))
            .unwrap(),
    )
    .await;
    assert_eq!(big.status, 413);
    assert!(big.text().contains("That form was too large."));
}
