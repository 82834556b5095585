//! What each request's store call costs before it runs: its future is moved several times
//! on the way to the socket (into the server's per-request state, through the request-id
//! scope and the log span), so it must stay small. Connecting (large: TLS, startup) is
//! boxed off the hot path; this test fails if something large is inlined again.

use peregrine_store::{DatabaseUrl, Page, UserId, UserStore};

/// Above today's sizes (about 1.7 KiB, with no timer inline: a watchdog per connection
/// keeps the deadline), well below the 5 KiB they were with the connect future inline.
const MAX_QUERY_FUTURE_BYTES: usize = 2048;

fn assert_small_futures(url: &str) {
    let url: DatabaseUrl = url.parse().unwrap_or_else(|e| panic!("{e}"));
    let store = UserStore::open(&url, 1).unwrap_or_else(|e| panic!("{e}"));
    let id = UserId::parse("7").unwrap_or_else(|e| panic!("{e}"));
    let get = std::mem::size_of_val(&store.get(id));
    let list = std::mem::size_of_val(&store.list(Page {
        after: None,
        limit: 20,
    }));
    for (call, size) in [("get", get), ("list", list)] {
        assert!(
            size <= MAX_QUERY_FUTURE_BYTES,
            "{url:?}: the {call} future is {size} bytes"
        );
    }
}

#[test]
fn request_futures_stay_small_on_both_backends() {
    // Opening a PostgreSQL store connects lazily: no server is needed to size its futures.
    assert_small_futures("postgres://peregrine@127.0.0.1:9/none");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    assert_small_futures(&format!("sqlite://{}", dir.path().join("f.db").display()));
}
