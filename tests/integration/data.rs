//! App data: Deta Base answered by the runtime, from a real guest that talks to
//! `database.deta.sh` as Deta's SDKs did, and from the owner over `/__space/v0/base/`.

use bytes::Bytes;
use http_body_util::Full;
use micros::AuthMode;
use micros_guests as guests;
use serde_json::{Value, json};

use crate::support::{MicroSpec, Server, micro, send, serve, serve_config};

/// The `deta` guest as the primary Micro, open to anyone (the tests are about data, not auth).
pub(crate) fn app() -> Vec<MicroSpec> {
    vec![micro("web", guests::DETA).primary().toml("public = true")]
}

/// Sends `method path` with a JSON `body` to the guest, which sends it on to Base; the status
/// and JSON body that came back.
async fn base(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let reply = send(
        server.addr,
        http::Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(body))
            .unwrap(),
    )
    .await;
    let text = reply.text();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (reply.status.as_u16(), json)
}

#[tokio::test]
async fn base_put_get_delete_from_a_guest() {
    let server = serve(&app()).await;
    let (status, body) = base(
        &server,
        "PUT",
        "/notes/items",
        Some(json!({"items": [
            {"key": "a", "title": "first", "n": 1},
            {"title": "keyless"},
            {"key": "b", "": "an empty attribute name"}
        ]})),
    )
    .await;
    assert_eq!(status, 207, "{body}");
    let processed = body["processed"]["items"].as_array().unwrap();
    assert_eq!(processed.len(), 2);
    assert_eq!(processed[0], json!({"key": "a", "title": "first", "n": 1}));
    let generated = processed[1]["key"].as_str().unwrap();
    assert_eq!(generated.len(), 12);
    assert!(
        generated
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
    assert_eq!(
        body["failed"]["items"],
        json!([{"key": "b", "": "an empty attribute name"}])
    );
    // A bad item refuses the whole put: nothing of it is stored.
    for (items, error) in [
        (
            json!([{"key": "c"}, "not an object"]),
            "item 1: an item must be a JSON object",
        ),
        (
            json!([{"key": "c"}, {"key": 1}]),
            "item 1: the key must be a string",
        ),
        (
            json!([{"key": "c"}, {"key": "c"}]),
            "key `c` is in the put twice",
        ),
    ] {
        assert_eq!(
            base(
                &server,
                "PUT",
                "/notes/items",
                Some(json!({"items": items}))
            )
            .await,
            (400, json!({"errors": [error]})),
            "{items}"
        );
    }
    assert_eq!(base(&server, "GET", "/notes/items/c", None).await.0, 404);

    assert_eq!(
        base(&server, "GET", "/notes/items/a", None).await,
        (200, json!({"key": "a", "title": "first", "n": 1}))
    );
    assert_eq!(
        base(&server, "GET", &format!("/notes/items/{generated}"), None).await,
        (200, json!({"key": generated, "title": "keyless"}))
    );
    // Bases are separate: the same key elsewhere is absent.
    assert_eq!(
        base(&server, "GET", "/other/items/a", None).await,
        (404, json!({"key": "a"}))
    );
    // A put replaces the whole item.
    let (status, _) = base(
        &server,
        "PUT",
        "/notes/items",
        Some(json!({"items": [{"key": "a", "x": true}]})),
    )
    .await;
    assert_eq!(status, 207);
    assert_eq!(
        base(&server, "GET", "/notes/items/a", None).await,
        (200, json!({"key": "a", "x": true}))
    );
    assert_eq!(
        base(&server, "DELETE", "/notes/items/a", None).await,
        (200, json!({"key": "a"}))
    );
    assert_eq!(
        base(&server, "GET", "/notes/items/a", None).await,
        (404, json!({"key": "a"}))
    );
    // Deleting what is not there is not an error.
    assert_eq!(
        base(&server, "DELETE", "/notes/items/a", None).await,
        (200, json!({"key": "a"}))
    );
    // Keys are path segments: a key with a space or a slash is percent-encoded by clients.
    base(
        &server,
        "PUT",
        "/notes/items",
        Some(json!({"items": [{"key": "a b/c"}]})),
    )
    .await;
    assert_eq!(
        base(&server, "GET", "/notes/items/a%20b%2Fc", None).await,
        (200, json!({"key": "a b/c"}))
    );
}

#[tokio::test]
async fn base_insert_and_its_conflict() {
    let server = serve(&app()).await;
    let item = json!({"item": {"key": "k", "v": 1}});
    assert_eq!(
        base(&server, "POST", "/b/items", Some(item.clone())).await,
        (201, json!({"key": "k", "v": 1}))
    );
    assert_eq!(
        base(&server, "POST", "/b/items", Some(item)).await,
        (409, json!({"errors": ["Key already exists"]}))
    );
    // The item is the first one, unchanged.
    assert_eq!(
        base(&server, "GET", "/b/items/k", None).await.1,
        json!({"key": "k", "v": 1})
    );
    let (status, body) = base(&server, "POST", "/b/items", Some(json!({"item": {"v": 2}}))).await;
    assert_eq!(status, 201);
    assert_eq!(body["key"].as_str().unwrap().len(), 12);
    assert_eq!(
        base(
            &server,
            "POST",
            "/b/items",
            Some(json!({"item": {"key": 7}}))
        )
        .await,
        (400, json!({"errors": ["the key must be a string"]}))
    );
}

#[tokio::test]
async fn base_update_operations() {
    let server = serve(&app()).await;
    base(
        &server,
        "PUT",
        "/u/items",
        Some(json!({"items": [{"key": "p", "name": "ann", "age": 30, "tags": ["b"], "profile": {"city": "x", "old": 1}, "gone": 1}]})),
    )
    .await;
    let update = json!({
        "set": {"name": "bea", "profile.city": "y", "new": {"deep": true}},
        "increment": {"age": 2, "visits": 1},
        "append": {"tags": ["c", "d"]},
        "prepend": {"list": "z"},
        "delete": ["gone", "profile.old"]
    });
    let (status, body) = base(&server, "PATCH", "/u/items/p", Some(update.clone())).await;
    assert_eq!(status, 200, "{body}");
    let mut echoed = update.clone();
    echoed["key"] = json!("p");
    assert_eq!(body, echoed);
    assert_eq!(
        base(&server, "GET", "/u/items/p", None).await.1,
        json!({
            "key": "p", "name": "bea", "age": 32, "visits": 1, "tags": ["b", "c", "d"],
            "list": ["z"], "profile": {"city": "y"}, "new": {"deep": true}
        })
    );
    assert_eq!(
        base(
            &server,
            "PATCH",
            "/u/items/missing",
            Some(json!({"set": {"a": 1}}))
        )
        .await,
        (404, json!({"errors": ["Key not found"]}))
    );
    for (update, error) in [
        (
            json!({"set": {"key": "other"}}),
            "the key of an item cannot be updated",
        ),
        (
            json!({"set": {"a": 1}, "delete": ["a"]}),
            "field `a` is in more than one operation",
        ),
        (
            json!({"increment": {"age": "1"}}),
            "increment of `age` must be a number",
        ),
        (
            json!({"increment": {"name": 1}}),
            "`name` is not a number: it cannot be incremented",
        ),
        (
            json!({"append": {"name": 1}}),
            "`name` is not a list: nothing can be appended to it",
        ),
        (
            json!({"rename": {}}),
            "unknown operation `rename`: use set, increment, append, prepend or delete",
        ),
        // As Deta's SDKs send an update: every operation, all of them empty.
        (
            json!({"set": {}, "increment": {}, "append": {}, "prepend": {}, "delete": []}),
            "nothing to update: every operation is empty",
        ),
        (
            json!({"set": {"missing.field": 1}}),
            "`missing.field`: a nested field needs its parent to exist and be an object",
        ),
        (
            json!({"set": {"name.first": "a"}}),
            "`name.first`: a nested field needs its parent to exist and be an object",
        ),
    ] {
        assert_eq!(
            base(&server, "PATCH", "/u/items/p", Some(update.clone())).await,
            (400, json!({"errors": [error]})),
            "{update}"
        );
    }
    // A refused update changed nothing.
    assert_eq!(
        base(&server, "GET", "/u/items/p", None).await.1["name"],
        json!("bea")
    );
}

#[tokio::test]
async fn base_query_operators_paging_and_sort() {
    let server = serve(&app()).await;
    let items: Vec<Value> = (1..=9)
        .map(|i| {
            json!({
                "key": format!("k{i}"), "n": i, "name": format!("user{i}"),
                "tags": if i % 2 == 0 { json!(["even"]) } else { json!(["odd"]) },
                "profile": {"age": 20 + i}
            })
        })
        .collect();
    let (status, _) = base(&server, "PUT", "/q/items", Some(json!({"items": items}))).await;
    assert_eq!(status, 207);
    let keys = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key"].as_str().unwrap().to_string())
            .collect()
    };
    for (query, expected) in [
        (json!([{"n": 3}]), vec!["k3"]),
        (json!([{"n?ne": 3, "n?lt": 5}]), vec!["k1", "k2", "k4"]),
        (json!([{"n?gt": 7}]), vec!["k8", "k9"]),
        (json!([{"n?lte": 2}]), vec!["k1", "k2"]),
        (json!([{"n?gte": 9}]), vec!["k9"]),
        (json!([{"name?pfx": "user1"}]), vec!["k1"]),
        (json!([{"n?r": [4, 6]}]), vec!["k4", "k5", "k6"]),
        (
            json!([{"tags?contains": "even", "n?lt": 5}]),
            vec!["k2", "k4"],
        ),
        (json!([{"name?contains": "er7"}]), vec!["k7"]),
        (
            json!([{"tags?not_contains": "odd", "n?gt": 5}]),
            vec!["k6", "k8"],
        ),
        (json!([{"profile.age?gte": 28}]), vec!["k8", "k9"]),
        // A list of objects is OR; fields of one object are AND.
        (
            json!([{"n": 1}, {"n": 9}, {"n": 5, "name": "nobody"}]),
            vec!["k1", "k9"],
        ),
        (json!([{"missing": 1}]), vec![]),
        // Deta's other spellings of the operators.
        (json!([{"n?<": 2}, {"n?>=": 9}]), vec!["k1", "k9"]),
        (json!([{"n?<=": 1}, {"n?>": 8}]), vec!["k1", "k9"]),
        (
            json!([{"tags?!contains": "odd", "n?lt": 5}]),
            vec!["k2", "k4"],
        ),
        // Comparisons are within a type: a string is not less than a number.
        (json!([{"name?lt": 5}]), vec![]),
    ] {
        let (status, body) = base(&server, "POST", "/q/query", Some(json!({"query": query}))).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(keys(&body), expected, "{query}");
        assert_eq!(body["paging"], json!({"size": expected.len()}), "{query}");
    }
    // Paging: `last` is where a page ended, present only while more may follow.
    let (_, page) = base(&server, "POST", "/q/query", Some(json!({"limit": 4}))).await;
    assert_eq!(keys(&page), ["k1", "k2", "k3", "k4"]);
    assert_eq!(page["paging"], json!({"size": 4, "last": "k4"}));
    let (_, page) = base(
        &server,
        "POST",
        "/q/query",
        Some(json!({"limit": 4, "last": "k4"})),
    )
    .await;
    assert_eq!(keys(&page), ["k5", "k6", "k7", "k8"]);
    let (_, page) = base(
        &server,
        "POST",
        "/q/query",
        Some(json!({"limit": 4, "last": "k8"})),
    )
    .await;
    assert_eq!(keys(&page), ["k9"]);
    assert_eq!(page["paging"], json!({"size": 1}));
    let (_, page) = base(
        &server,
        "POST",
        "/q/query",
        Some(json!({"limit": 3, "sort": "desc"})),
    )
    .await;
    assert_eq!(keys(&page), ["k9", "k8", "k7"]);
    assert_eq!(page["paging"]["last"], json!("k7"));
    // What deta-python sends for the first page in key order: empty `last` and `sort`.
    let (status, page) = base(
        &server,
        "POST",
        "/q/query",
        Some(json!({"limit": 2, "last": null, "sort": ""})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(keys(&page), ["k1", "k2"]);
    let (_, page) = base(
        &server,
        "POST",
        "/q/query",
        Some(json!({"query": [], "limit": 1000, "last": "", "sort": ""})),
    )
    .await;
    assert_eq!(page["paging"], json!({"size": 9}));
    for (body, error) in [
        (
            json!({"query": [{"n?near": 1}]}),
            "unknown operator `?near` in `n?near`",
        ),
        (
            json!({"query": [{"n?r": [1]}]}),
            "`n?r` needs a range of two values: [from, to]",
        ),
        (
            json!({"limit": 0}),
            "`limit` must be a whole number of at least 1",
        ),
        (
            json!({"sort": "up"}),
            "`sort` is \"up\": use \"asc\" or \"desc\"",
        ),
        (
            json!({"query": {"n": 1}}),
            "`query` must be a list of objects",
        ),
    ] {
        assert_eq!(
            base(&server, "POST", "/q/query", Some(body.clone())).await,
            (400, json!({"errors": ["Bad query", error]})),
            "{body}"
        );
    }
}

#[tokio::test]
async fn base_items_expire_at_their_ttl() {
    let server = serve(&app()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    base(
        &server,
        "PUT",
        "/t/items",
        Some(json!({"items": [
            {"key": "past", "__expires": now - 1},
            {"key": "soon", "__expires": now + 2},
            {"key": "later", "__expires": now + 3600}
        ]})),
    )
    .await;
    assert_eq!(base(&server, "GET", "/t/items/past", None).await.0, 404);
    assert_eq!(base(&server, "GET", "/t/items/soon", None).await.0, 200);
    let (_, page) = base(&server, "POST", "/t/query", Some(json!({}))).await;
    assert_eq!(page["paging"]["size"], json!(2));
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(base(&server, "GET", "/t/items/soon", None).await.0, 404);
    let (_, page) = base(&server, "POST", "/t/query", Some(json!({}))).await;
    assert_eq!(
        page["items"],
        json!([{"key": "later", "__expires": now + 3600}])
    );
    // An expired key is free again for an insert.
    assert_eq!(
        base(
            &server,
            "POST",
            "/t/items",
            Some(json!({"item": {"key": "past"}}))
        )
        .await
        .0,
        201
    );
    assert_eq!(
        base(
            &server,
            "POST",
            "/t/items",
            Some(json!({"item": {"key": "x", "__expires": "soon"}}))
        )
        .await,
        (
            400,
            json!({"errors": ["`__expires` must be a Unix timestamp in seconds"]})
        )
    );
}

#[tokio::test]
async fn base_limits_obeyed_and_violated() {
    let server = serve(&app()).await;
    let items = |n: usize| json!({"items": (0..n).map(|i| json!({"key": i.to_string()})).collect::<Vec<_>>()});
    assert_eq!(
        base(
            &server,
            "PUT",
            "/l/items",
            Some(items(micros::data::MAX_PUT_ITEMS))
        )
        .await
        .0,
        207
    );
    assert_eq!(
        base(
            &server,
            "PUT",
            "/l/items",
            Some(items(micros::data::MAX_PUT_ITEMS + 1))
        )
        .await,
        (400, json!({"errors": ["26 items in one put: at most 25"]}))
    );
    // An item of the limit is stored; one byte more is refused.
    let sized = |bytes: usize| {
        let overhead = json!({"key": "big", "v": ""}).to_string().len();
        json!({"item": {"key": "big", "v": "x".repeat(bytes - overhead)}})
    };
    assert_eq!(
        base(
            &server,
            "POST",
            "/l/items",
            Some(sized(micros::data::MAX_ITEM_BYTES))
        )
        .await
        .0,
        201
    );
    let (status, body) = base(
        &server,
        "POST",
        "/l/items",
        Some(sized(micros::data::MAX_ITEM_BYTES + 1)),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"errors": [format!("the item is {} bytes, past the limit of {}", micros::data::MAX_ITEM_BYTES + 1, micros::data::MAX_ITEM_BYTES)]})
    );
    // The request size limit is tested over the owner's route (a guest's own request body is
    // capped at 5.5 MiB first): `base_is_served_to_the_owner_under_space`.
    assert_eq!(
        base(&server, "PUT", "/l/items", Some(json!({"items": []}))).await,
        (400, json!({"errors": ["no items to put"]}))
    );
    assert_eq!(
        base(&server, "GET", "/bad%20name/items/a", None).await,
        (
            400,
            json!({"errors": ["`bad name` is not a base name: up to 64 letters, digits, `_` and `-`"]})
        )
    );
}

/// The app's data limit (`--data-limit`): once the store is at it, Base and Drive writes get
/// 507 with what to do; reads and deletes still work, and a delete makes room again.
#[tokio::test]
async fn data_limit_obeyed_and_violated() {
    let server = serve_config(&app(), |config| config.limits.data_bytes = 512 * 1024).await;
    let item = |key: &str| json!({"item": {"key": key, "v": "x".repeat(100 * 1024)}});
    // Obeyed: items of 100 KiB are stored while there is room for them.
    let mut stored = Vec::new();
    let (status, body) = loop {
        let key = format!("k{}", stored.len());
        let (status, body) = base(&server, "POST", "/l/items", Some(item(&key))).await;
        if status != 201 {
            break (status, body);
        }
        stored.push(key);
        assert!(stored.len() < 10, "the limit never refused a write");
    };
    assert!(
        stored.len() >= 3,
        "only {} items before the limit",
        stored.len()
    );
    // Violated: the write that would pass it is refused, and says what to do.
    assert_eq!(status, 507, "{body}");
    let message = body["errors"][0].as_str().unwrap();
    assert!(
        message.contains("of 524288 bytes used") && message.contains("raise --data-limit"),
        "{message}"
    );
    // Drive writes too.
    let upload = send(
        server.addr,
        http::Request::post("/drive/files/files?name=a.txt")
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(vec![b'x'; 100 * 1024])))
            .unwrap(),
    )
    .await;
    assert_eq!(upload.status, 507, "{upload:?}");
    // Reads still work; deletes make room, and the next write fits.
    let (status, _) = base(&server, "GET", &format!("/l/items/{}", stored[0]), None).await;
    assert_eq!(status, 200);
    for key in &stored {
        let (status, _) = base(&server, "DELETE", &format!("/l/items/{key}"), None).await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        base(&server, "POST", "/l/items", Some(item("again")))
            .await
            .0,
        201
    );
}

#[tokio::test]
async fn base_refuses_a_wrong_key_or_project_and_keeps_apps_apart() {
    let first = serve(&app()).await;
    let second = serve(&app()).await;
    base(
        &first,
        "PUT",
        "/s/items",
        Some(json!({"items": [{"key": "secret", "v": 1}]})),
    )
    .await;
    let unauthorized = (401, json!({"errors": ["Unauthorized"]}));
    assert_eq!(
        base(&first, "GET", "/s/items/secret?key=", None).await,
        unauthorized
    );
    assert_eq!(
        base(&first, "GET", "/s/items/secret?key=abc_wrong", None).await,
        unauthorized
    );
    assert_eq!(
        base(&first, "GET", "/s/items/secret?project=other", None).await,
        unauthorized
    );
    // The other app has its own data: the key is not there, and the first app's key and project
    // open nothing in it.
    assert_eq!(
        base(&second, "GET", "/s/items/secret", None).await,
        (404, json!({"key": "secret"}))
    );
    let keys = |server: &Server| {
        let state = micros::state::StateDir::open(server.dir.path().join(".micros")).unwrap();
        let keys = state.keys(&["web"]).unwrap();
        (keys.project_id.clone(), keys.project_key("web").unwrap())
    };
    let (project, key) = keys(&first);
    assert_ne!(keys(&second).0, project);
    assert_eq!(
        base(
            &second,
            "GET",
            &format!("/s/items/secret?project={project}&key={key}"),
            None
        )
        .await,
        unauthorized
    );
}

#[tokio::test]
async fn base_is_served_to_the_owner_under_space() {
    let server = serve_config(&app(), |config| config.auth = AuthMode::Required).await;
    base(
        &server,
        "PUT",
        "/o/items",
        Some(json!({"items": [{"key": "a", "v": 1}]})),
    )
    .await;
    let state = micros::state::StateDir::open(server.dir.path().join(".micros")).unwrap();
    let token = micros::Credentials::open(&state)
        .ensure_owner_token()
        .unwrap()
        .unwrap();
    let owner = |method: &str, path: &str, body: &str, auth: Option<&str>| {
        let mut request = http::Request::builder().method(method).uri(path);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        send(
            server.addr,
            request
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
    };
    let bearer = format!("Bearer {token}");
    let reply = owner("GET", "/__space/v0/base/o/items/a", "", Some(&bearer)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&reply.text()).unwrap(),
        json!({"key": "a", "v": 1})
    );
    let reply = owner(
        "POST",
        "/__space/v0/base/o/query",
        r#"{"query":[{"v":1}]}"#,
        Some(&bearer),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply.text()).unwrap(),
        json!({"paging": {"size": 1}, "items": [{"key": "a", "v": 1}]})
    );
    // The largest put Deta allowed (25 items of just under 400 KiB) fits in a request; a
    // request past the limit is refused before it is parsed.
    let big = "x".repeat(micros::data::MAX_ITEM_BYTES - 100);
    let items: Vec<Value> = (0..micros::data::MAX_PUT_ITEMS)
        .map(|i| json!({"key": i.to_string(), "v": big}))
        .collect();
    let reply = owner(
        "PUT",
        "/__space/v0/base/o/items",
        &json!({ "items": items }).to_string(),
        Some(&bearer),
    )
    .await;
    assert_eq!(reply.status, 207);
    let huge = "x".repeat(micros::data::MAX_REQUEST_BYTES + 1);
    let reply = owner("PUT", "/__space/v0/base/o/items", &huge, Some(&bearer)).await;
    assert_eq!(reply.status, 413);
    assert_eq!(
        serde_json::from_str::<Value>(&reply.text()).unwrap(),
        json!({"errors": [format!("the request body is past the limit of {} bytes", micros::data::MAX_REQUEST_BYTES)]})
    );
    // Without the owner's token, or with a wrong one: 401, and nothing about the data.
    for auth in [None, Some("Bearer wrong")] {
        let reply = owner("GET", "/__space/v0/base/o/items/a", "", auth).await;
        assert_eq!(reply.status, 401, "{auth:?}");
        assert!(!reply.text().contains("\"v\""), "{}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn base_keeps_every_acknowledged_write_across_sigkill() {
    const ROUNDS: usize = 5;
    const WRITERS: usize = 8;
    let (dir, _) = crate::support::write_app(&app());
    let folder = dir.path().to_str().unwrap().to_string();
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let up = crate::cli::up(&[&folder]).await;
        let addr = up.addr;
        // Writers insert keys one after another until the runtime dies under them.
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                tokio::spawn(async move {
                    let mut written = Vec::new();
                    for i in 0.. {
                        let key = format!("r{round}-w{writer}-{i:05}");
                        let body = json!({"item": {"key": key, "round": round}}).to_string();
                        let request = http::Request::post("/d/items")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        match crate::support::try_send(addr, request).await {
                            Ok(reply) if reply.status == 201 => written.push(key),
                            Ok(reply) => panic!("insert of {key}: {reply:?}"),
                            Err(_) => return written,
                        }
                    }
                    written
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(400 + 150 * round as u64)).await;
        crate::cli::kill(up).await;
        for writer in writers {
            acknowledged.extend(writer.await.unwrap());
        }
    }
    assert!(
        acknowledged.len() > ROUNDS * WRITERS,
        "too few writes to prove anything: {}",
        acknowledged.len()
    );
    // After the last crash, every acknowledged key is there.
    let up = crate::cli::up(&[&folder]).await;
    let server_addr = up.addr;
    let mut stored = std::collections::HashSet::new();
    let mut last: Option<String> = None;
    loop {
        let body = json!({"limit": 1000, "last": last}).to_string();
        let reply = send(
            server_addr,
            http::Request::post("/d/query")
                .body(Full::new(Bytes::from(body)))
                .unwrap(),
        )
        .await;
        let page: Value = serde_json::from_str(&reply.text()).unwrap();
        for item in page["items"].as_array().unwrap() {
            stored.insert(item["key"].as_str().unwrap().to_string());
        }
        match page["paging"]["last"].as_str() {
            Some(key) => last = Some(key.to_string()),
            None => break,
        }
    }
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|k| !stored.contains(*k))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    crate::cli::kill(up).await;
}

/// Runs `micros data ARGS...`; its exit status and stderr.
pub(crate) async fn data_command(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_micros"))
        .arg("data")
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn data_export_and_import_round_trip() {
    let first = serve(&app()).await;
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let items = json!({"items": [
        {"key": "a/b c", "n": 1, "nested": {"list": [1, "two", null]}},
        {"key": "ttl", "__expires": later}
    ]});
    assert_eq!(
        base(&first, "PUT", "/notes/items", Some(items)).await.0,
        207
    );
    assert_eq!(
        base(
            &first,
            "PUT",
            "/other/items",
            Some(json!({"items": [{"key": "x"}]}))
        )
        .await
        .0,
        207
    );
    let binary: Vec<u8> = (0..=255).collect();
    for (name, body, content_type) in [
        ("folder/a.txt", Bytes::from_static(b"text"), "text/plain"),
        (
            "../../escape",
            Bytes::from(binary.clone()),
            "application/x-bin",
        ),
    ] {
        let reply = send(
            first.addr,
            http::Request::post(format!(
                "/drive/files/files?name={}",
                percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
            ))
            .header("content-type", content_type)
            .body(Full::new(body))
            .unwrap(),
        )
        .await;
        assert_eq!(reply.status, 201, "{name}: {reply:?}");
    }
    let out = tempfile::tempdir().unwrap();
    let export = out.path().join("export");
    let app_dir = first.dir.path().to_str().unwrap().to_string();
    // Exported while the app is running.
    let (ok, stderr) = data_command(&["export", "--to", export.to_str().unwrap(), &app_dir]).await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("exported 3 item(s) and 2 file(s)"),
        "{stderr}"
    );
    assert!(export.join("base/notes.jsonl").is_file());
    assert!(export.join("drive/files/index.jsonl").is_file());
    // Nothing is written where the name points, whatever a file's name: `../../escape` from
    // the drive's folder would be `export/escape`.
    assert!(!export.join("escape").exists());
    assert!(!out.path().join("escape").exists());
    // An export never overwrites.
    let (ok, stderr) = data_command(&["export", "--to", export.to_str().unwrap(), &app_dir]).await;
    assert!(!ok);
    assert!(
        stderr.contains("already exists: export into a new folder"),
        "{stderr}"
    );

    // Into another app, before it starts.
    let (dir, _) = crate::support::write_app(&app());
    let (ok, stderr) = data_command(&[
        "import",
        "--from",
        export.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("imported 3 item(s) and 2 file(s)"),
        "{stderr}"
    );
    let up = crate::cli::up(&[dir.path().to_str().unwrap()]).await;
    let second = |path: &str| {
        send(
            up.addr,
            http::Request::get(path)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    };
    let reply = second("/notes/items/a%2Fb%20c").await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply.text()).unwrap(),
        json!({"key": "a/b c", "n": 1, "nested": {"list": [1, "two", null]}})
    );
    let reply = second("/notes/items/ttl").await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply.text()).unwrap(),
        json!({"key": "ttl", "__expires": later})
    );
    assert_eq!(second("/other/items/x").await.status, 200);
    let reply = second("/drive/files/files/download?name=..%2F..%2Fescape").await;
    assert_eq!(reply.body.as_deref().unwrap(), binary.as_slice());
    assert_eq!(reply.header("content-type"), Some("application/x-bin"));
    let reply = second("/drive/files/files/download?name=folder%2Fa.txt").await;
    assert_eq!(reply.text(), "text");
    crate::cli::kill(up).await;

    // A damaged export changes nothing: the import is one transaction.
    let damaged = out.path().join("damaged");
    let import_damaged = async || {
        data_command(&[
            "import",
            "--from",
            damaged.to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ])
        .await
    };
    std::fs::create_dir_all(damaged.join("base")).unwrap();
    std::fs::write(
        damaged.join("base/fresh.jsonl"),
        "{\"key\": \"ok\"}\nnot json\n",
    )
    .unwrap();
    let (ok, stderr) = import_damaged().await;
    assert!(!ok);
    assert!(
        stderr.contains("fresh.jsonl` line 2: not a JSON object"),
        "{stderr}"
    );
    // An export edited by hand is held to what a put and an upload are held to.
    let big = format!(
        "{{\"key\":\"big\",\"v\":\"{}\"}}",
        "x".repeat(micros::data::MAX_ITEM_BYTES)
    );
    for (line, refusal) in [
        (
            "{\"key\": \"\"}".to_string(),
            "the key must not be empty".to_string(),
        ),
        (
            "{\"key\": \"t\", \"__expires\": \"soon\"}".to_string(),
            "`__expires` must be a Unix timestamp in seconds".to_string(),
        ),
        (
            big.clone(),
            format!(
                "the item is {} bytes, past the limit of {}",
                big.len(),
                micros::data::MAX_ITEM_BYTES
            ),
        ),
    ] {
        std::fs::write(
            damaged.join("base/fresh.jsonl"),
            format!("{{\"key\": \"ok\"}}\n{line}\n"),
        )
        .unwrap();
        let (ok, stderr) = import_damaged().await;
        assert!(!ok);
        assert!(
            stderr.contains(&format!(
                "fresh.jsonl` line 2: {refusal}; fix or remove the item"
            )),
            "{stderr}"
        );
    }
    // A file named as no upload may name one (a folder's name) is refused too.
    std::fs::remove_file(damaged.join("base/fresh.jsonl")).unwrap();
    let files = damaged.join("drive/files");
    std::fs::create_dir_all(&files).unwrap();
    // An export names each file by the SHA-256 of its name.
    let file_of = |name: &str| -> String {
        sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            name.as_bytes(),
        ))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
    };
    let hashed = file_of("folder/");
    std::fs::write(files.join(&hashed), "x").unwrap();
    std::fs::write(
        files.join("index.jsonl"),
        format!(
            "{{\"name\": \"folder/\", \"content_type\": \"text/plain\", \"file\": \"{hashed}\"}}\n"
        ),
    )
    .unwrap();
    let (ok, stderr) = import_damaged().await;
    assert!(!ok);
    assert!(
        stderr.contains(
            "index.jsonl` line 1: `folder/` ends with `/`: a file's name cannot be a folder"
        ),
        "{stderr}"
    );
    // A file past a Drive file's limit is refused by its size, before it is read (sparse here,
    // so the test writes no 100 MiB).
    let hashed = file_of("big.bin");
    std::fs::File::create(files.join(&hashed))
        .unwrap()
        .set_len(micros::data::MAX_FILE_BYTES + 1)
        .unwrap();
    std::fs::write(
        files.join("index.jsonl"),
        format!(
            "{{\"name\": \"big.bin\", \"content_type\": \"application/octet-stream\", \"file\": \"{hashed}\"}}\n"
        ),
    )
    .unwrap();
    let (ok, stderr) = import_damaged().await;
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "index.jsonl` line 1: the file `{hashed}` is {} bytes, past the limit of {} for a Drive file",
            micros::data::MAX_FILE_BYTES + 1,
            micros::data::MAX_FILE_BYTES
        )),
        "{stderr}"
    );
    let up = crate::cli::up(&[dir.path().to_str().unwrap()]).await;
    let reply = send(
        up.addr,
        http::Request::get("/fresh/items/ok")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 404);
    crate::cli::kill(up).await;
}
