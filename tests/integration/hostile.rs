//! Hostile components no compiler would emit (`guests/artifacts/wat.rs`): too many memories,
//! tables or instances for one store, a start function that never returns, an import the runtime
//! does not provide. Each is contained, and the benign Micro beside it keeps answering.

use micros::{App, Config, Limits, Manifest};
use micros_guests as guests;

use crate::limits::{assert_error, assert_healthy, limited};
use crate::support::{micro, write_app};

/// The hostile components answer nothing once they run: reaching the handler is what obeying
/// the limit looks like.
const NO_RESPONSE: &str = "micro `web`: the Micro returned without a response\n";

#[tokio::test(flavor = "multi_thread")]
async fn store_counts_obeyed() {
    let limits = Limits {
        max_memories: 40,
        max_tables: 300,
        max_instances: 310,
        ..Limits::default()
    };
    for guest in [
        guests::MANY_MEMORIES,
        guests::MANY_TABLES,
        guests::MANY_INSTANCES,
    ] {
        let server = limited(guest, limits.clone()).await;
        assert_error(&server.get("/").await, 500, NO_RESPONSE);
    }
}

/// With the pool (the default), a module declaring more memories than an execution may have can
/// never run: it is refused at load, naming the limit. Tables and instances made one module
/// instance at a time are counted as they are made: past the limit, the execution fails.
#[tokio::test(flavor = "multi_thread")]
async fn store_counts_violated_at_their_defaults() {
    let (_dir, manifest) = write_app(&[micro("web", guests::MANY_MEMORIES).primary()]);
    let Err(error) = App::load(Manifest::load(&manifest).unwrap(), &Config::default()) else {
        panic!("a component past the memory count loaded");
    };
    let error = format!("{error:#}");
    assert!(
        error.contains("micro `web`")
            && error.contains("defined memories count of 40 exceeds the per-instance limit of 32"),
        "{error}"
    );
    for (guest, text) in [
        (
            guests::MANY_TABLES,
            "micro `web`: limit of 256 tables per execution exceeded\n",
        ),
        (
            guests::MANY_INSTANCES,
            "micro `web`: limit of 256 instances per execution exceeded\n",
        ),
    ] {
        let server = limited(guest, Limits::default()).await;
        assert_error(&server.get("/").await, 500, text);
        assert_healthy(&server).await;
    }
}

/// Without the pool, every count is checked as the execution makes things: past a limit, 500.
#[tokio::test(flavor = "multi_thread")]
async fn store_counts_violated_without_the_pool() {
    for (guest, text) in [
        (
            guests::MANY_MEMORIES,
            "micro `web`: limit of 32 memories per execution exceeded\n",
        ),
        (
            guests::MANY_TABLES,
            "micro `web`: limit of 256 tables per execution exceeded\n",
        ),
    ] {
        let server = crate::support::serve_config(
            &crate::limits::with_hello(micro("web", guest)),
            |config| config.pooling = false,
        )
        .await;
        assert_error(&server.get("/").await, 500, text);
        assert_healthy(&server).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_function_that_never_returns_is_stopped() {
    let limits = Limits {
        execution_time: std::time::Duration::from_secs(1),
        ..Limits::default()
    };
    let server = limited(guests::LOOPING_START, limits).await;
    let started = std::time::Instant::now();
    assert_error(
        &server.get("/").await,
        504,
        "micro `web`: execution time limit of 1s exceeded\n",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_looping_start_stops_when_its_client_goes_away() {
    // One slot: if the abandoned instantiation ran on to its 2 s limit, the next request would
    // find the slot taken (503) instead of getting its own turn (504 after 2 s).
    let limits = Limits {
        execution_time: std::time::Duration::from_secs(2),
        max_in_flight: 1,
        ..Limits::default()
    };
    let server = limited(guests::LOOPING_START, limits).await;
    let gone = crate::support::raw(
        server.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
        std::time::Duration::from_millis(300),
    )
    .await;
    assert_eq!(gone, "", "no answer within 300 ms");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_error(
        &server.get("/").await,
        504,
        "micro `web`: execution time limit of 2s exceeded\n",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_limit_holds_during_instantiation() {
    let server = limited(guests::GROWING_START, Limits::default()).await;
    assert_error(
        &server.get("/").await,
        500,
        "micro `web`: memory limit of 536870912 bytes exceeded\n",
    );
    assert_healthy(&server).await;
}

#[test]
fn an_import_the_runtime_lacks_is_refused_at_load() {
    let (_dir, manifest) = write_app(&[micro("web", guests::UNKNOWN_IMPORT).primary()]);
    let error = App::check(&Manifest::load(&manifest).unwrap()).unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.starts_with(
            "micro `web` imports something outside the Micro world (wit/micro.wit): \
             component imports instance `acme:backdoor/shell@1.0.0`, but a matching \
             implementation was not found in the linker"
        ),
        "{text}"
    );
    // Loading to serve refuses it the same way, before anything listens.
    let config = Config {
        state_dir: Some(_dir.path().join("state")),
        ..Config::default()
    };
    let Err(error) = App::load(Manifest::load(&manifest).unwrap(), &config) else {
        panic!("a component importing an unknown interface loaded");
    };
    assert!(format!("{error:#}").contains("acme:backdoor/shell@1.0.0"));
}

/// The pool holds every execution the limits allow, two memories each: a component that needs
/// more than its share can exhaust it, and then gets 503 (retry), never a crash or a hang.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_pool_gets_503_and_the_server_stays_fine() {
    let limits = Limits {
        max_memories: 40,
        // Two Micros, one execution each: a pool of 2 executions, 4 memories.
        max_in_flight: 1,
        ..Limits::default()
    };
    let server = limited(guests::MANY_MEMORIES, limits).await;
    let reply = server.get("/").await;
    assert_error(
        &reply,
        503,
        "micro `web`: the runtime's pool of memories is in use; retry shortly\n",
    );
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_healthy(&server).await;
}
