//! The layer through a real axum router: laziness, deltas, saving, cookie options, expiry.

mod common;

use std::time::Duration;

use common::*;
use tether_core::SessionStore as _;
use tether_sessions::cookie::Key;
use tether_sessions::{KeyRing, SessionLayer};
use tether_testkit::Failure;

#[tokio::test]
async fn untouched_session_costs_nothing() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    let first = ok(&app, get("/incr", None)).await;
    let cookie = first.cookie();
    let before = store.calls();

    let answer = ok(&app, get("/untouched", Some(&cookie))).await;
    assert!(answer.set_cookies().is_empty());
    assert_eq!(
        store.calls(),
        before,
        "a handler that ignores its session costs no store call"
    );
}

#[tokio::test]
async fn anonymous_reads_store_nothing_and_set_no_cookie() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    for _ in 0..10 {
        let answer = ok(&app, get("/count", None)).await;
        assert_eq!(answer.body, "0");
        assert!(answer.set_cookies().is_empty());
    }
    assert_eq!(store.calls().total(), 0);
}

#[tokio::test]
async fn first_insert_creates_and_sets_a_safe_cookie() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    let answer = ok(&app, get("/incr", None)).await;
    assert_eq!(answer.body, "1");
    let set = answer.set_cookies();
    assert_eq!(set.len(), 1);
    let cookie = &set[0];
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(
        !cookie.contains("Max-Age"),
        "browser-session cookie by default: {cookie}"
    );
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert!(cookie.starts_with("sid="));
    assert_eq!(store.calls().create, 1);
    assert_eq!(store.calls().load, 0, "a new visitor has nothing to load");
}

#[tokio::test]
async fn later_requests_load_once_and_apply_only_changes() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    let cookie = ok(&app, get("/incr", None)).await.cookie();

    let answer = ok(&app, get("/incr", Some(&cookie))).await;
    assert_eq!(answer.body, "2");
    assert!(answer.set_cookies().is_empty(), "same id: no Set-Cookie");
    let calls = store.calls();
    assert_eq!((calls.load, calls.apply, calls.create), (1, 1, 1));

    let answer = ok(&app, get("/count", Some(&cookie))).await;
    assert_eq!(answer.body, "2");
    let calls = store.calls();
    assert_eq!(calls.load, 2);
    assert_eq!(calls.writes(), 2, "a read-only request writes nothing");
}

#[tokio::test]
async fn concurrent_requests_changing_different_keys_all_survive() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    let cookie = ok(&app, get("/set/seed/1", None)).await.cookie();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (app, cookie) = (app.clone(), cookie.clone());
        tasks.spawn(async move { ok(&app, get(&format!("/set/k{i}/v{i}"), Some(&cookie))).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    for i in 0..50 {
        let answer = ok(&app, get(&format!("/get/k{i}"), Some(&cookie))).await;
        assert_eq!(answer.body, format!("v{i}"), "key k{i} was lost");
    }
}

#[tokio::test]
async fn failed_save_answers_503_and_recovers() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    let cookie = ok(&app, get("/incr", None)).await.cookie();

    // The store goes away: a write must not pretend it happened.
    store.fail_with(Some(Failure::Unavailable));
    let answer = send(&app, get("/incr", Some(&cookie))).await;
    assert_eq!(answer.status, 503);
    // Said in a few plain words, never an empty page (nor internal detail).
    assert_eq!(answer.body, tether_sessions::UNAVAILABLE_MESSAGE);
    assert_eq!(answer.body, "session store unavailable");
    assert_eq!(
        answer.headers[http::header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    let answer = send(&app, get("/incr", None)).await;
    assert_eq!(answer.status, 503, "creating a session fails the same way");
    assert_eq!(answer.body, tether_sessions::UNAVAILABLE_MESSAGE);
    assert!(
        answer.set_cookies().is_empty(),
        "no cookie for a session that was not stored"
    );
    let answer = send(&app, get("/untouched", Some(&cookie))).await;
    assert_eq!(
        answer.status, 200,
        "routes without session use are unaffected"
    );

    store.fail_with(None);
    assert_eq!(ok(&app, get("/incr", Some(&cookie))).await.body, "2");
}

#[tokio::test]
async fn server_errors_discard_changes_unless_configured() {
    let store = spy();
    let app_default = app(SessionLayer::new(store.clone()));
    let cookie = ok(&app_default, get("/incr", None)).await.cookie();
    assert_eq!(
        send(&app_default, get("/fail", Some(&cookie))).await.status,
        500
    );
    assert_eq!(
        ok(&app_default, get("/count", Some(&cookie))).await.body,
        "1"
    );

    let app_saving = app(SessionLayer::new(store.clone()).with_save_on_server_error(true));
    assert_eq!(
        send(&app_saving, get("/fail", Some(&cookie))).await.status,
        500
    );
    assert_eq!(
        ok(&app_saving, get("/count", Some(&cookie))).await.body,
        "2"
    );
}

#[tokio::test]
async fn cycle_id_moves_the_session_and_kills_the_old_id() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    let old = ok(&app, get("/incr", None)).await.cookie();
    let new = ok(&app, get("/cycle", Some(&old))).await.cookie();
    assert_ne!(old, new);
    assert_eq!(
        ok(&app, get("/count", Some(&new))).await.body,
        "1",
        "data moved"
    );
    let stale = ok(&app, get("/count", Some(&old))).await;
    assert_eq!(stale.body, "0", "the old id names nothing");
    assert!(
        stale.set_cookies()[0].contains("Max-Age=0"),
        "and the client is told to drop it"
    );
}

#[tokio::test]
async fn cycle_with_changes_in_the_same_request() {
    // A login handler cycles and then writes; both land under the new id.
    let router = app(SessionLayer::new(spy()));
    let old = ok(&router, get("/incr", None)).await.cookie();
    let new = ok(&router, get("/login", Some(&old))).await.cookie();
    assert_eq!(
        ok(&router, get("/get/user", Some(&new))).await.body,
        "alice"
    );
    assert_eq!(ok(&router, get("/count", Some(&new))).await.body, "1");
}

#[tokio::test]
async fn a_cycle_whose_delta_fails_still_hands_out_the_new_id() {
    // The store moves the session, then fails the request's own changes: the answer is 503,
    // and it must carry the new id, the only one that still names the session.
    let store = spy();
    let router = app(SessionLayer::new(store.clone()));
    let old = ok(&router, get("/incr", None)).await.cookie();
    store.fail_with(Some(Failure::Applies));
    let failed = send(&router, get("/login", Some(&old))).await;
    store.fail_with(None);
    assert_eq!(failed.status, 503);
    let new = failed.cookie();
    assert_ne!(new, old);
    assert_eq!(
        ok(&router, get("/count", Some(&new))).await.body,
        "1",
        "the session lives on under the new id"
    );
}

#[tokio::test]
async fn flush_deletes_and_expires_the_cookie() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    let cookie = ok(&app, get("/incr", None)).await.cookie();
    let answer = ok(&app, get("/flush", Some(&cookie))).await;
    let set = answer.set_cookies();
    assert_eq!(set.len(), 1);
    assert!(set[0].starts_with("sid=;"), "{set:?}");
    assert!(set[0].contains("Max-Age=0"), "{set:?}");
    assert_eq!(store.calls().delete, 1);
    assert_eq!(ok(&app, get("/count", Some(&cookie))).await.body, "0");
}

#[tokio::test]
async fn remove_and_clear_are_deltas_too() {
    let app = app(SessionLayer::new(spy()));
    let cookie = ok(&app, get("/set/a/1", None)).await.cookie();
    ok(&app, get("/set/b/2", Some(&cookie))).await;
    ok(&app, get("/remove/a", Some(&cookie))).await;
    assert_eq!(ok(&app, get("/get/a", Some(&cookie))).await.body, "<none>");
    assert_eq!(ok(&app, get("/get/b", Some(&cookie))).await.body, "2");
    ok(&app, get("/clear", Some(&cookie))).await;
    assert_eq!(ok(&app, get("/get/b", Some(&cookie))).await.body, "<none>");
}

#[tokio::test]
async fn oversized_insert_is_refused_and_leaves_the_session_unchanged() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()).with_max_size(1_000));
    let cookie = ok(&app, get("/big/100", None)).await.cookie();
    let writes = store.calls().writes();
    let answer = send(&app, get("/big/2000", Some(&cookie))).await;
    assert_eq!(answer.status, 413);
    assert_eq!(store.calls().writes(), writes, "nothing written");
    let id = cookie.trim_start_matches("sid=").parse().unwrap();
    let stored = store.inner().load(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.data["big"].len(),
        tether_core::Codec::default()
            .encode(&"x".repeat(100))
            .unwrap()
            .len()
    );
}

fn ring(seed: u8) -> KeyRing {
    KeyRing::new(Key::from(&[seed; 64]))
}

#[tokio::test]
async fn signed_and_private_cookies_rotate_keys() {
    for private in [false, true] {
        let store = spy();
        let with = |keys: KeyRing| {
            let layer = SessionLayer::new(store.clone());
            app(if private {
                layer.with_private(keys)
            } else {
                layer.with_signed(keys)
            })
        };
        let old_app = with(ring(1));
        let cookie = ok(&old_app, get("/incr", None)).await.cookie();
        let value = cookie.trim_start_matches("sid=");
        assert!(
            value.parse::<tether_core::Id>().is_err(),
            "the cookie is not the bare id"
        );

        // Rotation: the new key signs, the old one still verifies.
        let rotated = with(ring(2).with_retired(Key::from(&[1; 64])));
        assert_eq!(
            ok(&rotated, get("/incr", Some(&cookie))).await.body,
            "2",
            "private={private}"
        );

        // Old key removed: the cookie counts as no cookie.
        let retired = with(ring(2));
        assert_eq!(
            ok(&retired, get("/count", Some(&cookie))).await.body,
            "0",
            "private={private}"
        );
    }
}

#[tokio::test]
async fn header_transport_for_api_clients() {
    let store = spy();
    let name = axum::http::HeaderName::from_static("x-session-id");
    let app = app(SessionLayer::new(store.clone()).with_header(name));
    let answer = ok(&app, get("/incr", None)).await;
    assert!(answer.set_cookies().is_empty(), "no cookie in header mode");
    let id = answer.headers["x-session-id"].to_str().unwrap().to_owned();
    let again = ok(&app, get_with("/incr", &[("x-session-id", id.as_bytes())])).await;
    assert_eq!(again.body, "2");
    assert!(
        again.headers.get("x-session-id").is_none(),
        "only new ids are sent"
    );
    // A cookie is ignored in header mode.
    let cookie = format!("sid={id}");
    assert_eq!(ok(&app, get("/count", Some(&cookie))).await.body, "0");
}

#[tokio::test]
async fn cookie_options() {
    let layer = SessionLayer::new(spy())
        .with_cookie_name("app")
        .with_same_site(tether_sessions::cookie::SameSite::Strict)
        .with_path("/shop")
        .with_domain("example.com")
        .with_partitioned(true)
        .with_http_only(false)
        .with_persistent_cookie(true)
        .with_idle_timeout(Duration::from_secs(600));
    let set = ok(&app(layer), get("/incr", None)).await.set_cookies();
    let cookie = &set[0];
    assert!(cookie.starts_with("app="), "{cookie}");
    for attribute in [
        "SameSite=Strict",
        "Path=/shop",
        "Domain=example.com",
        "Partitioned",
        "Secure",
        "Max-Age=600",
    ] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("HttpOnly"), "{cookie}");

    let prefixed = SessionLayer::new(spy())
        .with_host_prefix(true)
        .with_secure(false)
        .with_domain("example.com")
        .with_path("/shop");
    let app = app(prefixed);
    let answer = ok(&app, get("/incr", None)).await;
    let cookie = &answer.set_cookies()[0];
    assert!(cookie.starts_with("__Host-sid="), "{cookie}");
    assert!(
        cookie.contains("Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Domain") && !cookie.contains("/shop"),
        "{cookie}"
    );
    let pair = answer.cookie();
    assert_eq!(ok(&app, get("/count", Some(&pair))).await.body, "1");
    let unprefixed = pair.replace("__Host-sid", "sid");
    assert_eq!(ok(&app, get("/count", Some(&unprefixed))).await.body, "0");
}

#[tokio::test]
async fn persistent_cookie_is_reissued_when_renewed() {
    let layer = SessionLayer::new(spy())
        .with_persistent_cookie(true)
        .with_touch_threshold(0.0);
    let app = app(layer);
    let cookie = ok(&app, get("/incr", None)).await.cookie();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let answer = ok(&app, get("/count", Some(&cookie))).await;
    assert_eq!(answer.cookie(), cookie, "same id, new Max-Age");
}

#[tokio::test]
async fn touch_threshold_limits_writes_of_read_only_requests() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone())
        .with_idle_timeout(Duration::from_millis(1_000))
        .with_touch_threshold(0.3));
    let cookie = ok(&app, get("/incr", None)).await.cookie();
    for _ in 0..5 {
        ok(&app, get("/count", Some(&cookie))).await;
    }
    assert_eq!(
        store.calls().touch,
        0,
        "within the threshold reads write nothing"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    ok(&app, get("/count", Some(&cookie))).await;
    ok(&app, get("/count", Some(&cookie))).await;
    assert_eq!(
        store.calls().touch,
        1,
        "past the threshold one read renews, the next does not"
    );
    // Renewed: the session outlives its first idle deadline.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(ok(&app, get("/count", Some(&cookie))).await.body, "1");
}

#[tokio::test]
async fn writes_move_the_deadline_only_past_the_touch_threshold() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone())
        .with_idle_timeout(Duration::from_millis(1_000))
        .with_touch_threshold(0.3));
    let cookie = ok(&app, get("/incr", None)).await.cookie();
    let id: tether_core::Id = cookie
        .strip_prefix("sid=")
        .and_then(|id| id.parse().ok())
        .expect("the cookie holds the id");
    let deadline = || async {
        let stored = store.inner().load(&id).await.unwrap();
        stored.expect("the session is stored").expiry.expires_at()
    };
    let created = deadline().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(ok(&app, get("/incr", Some(&cookie))).await.body, "2");
    assert_eq!(store.calls().apply, 1, "the write was saved");
    assert_eq!(
        deadline().await,
        created,
        "within the threshold a write keeps the deadline"
    );
    tokio::time::sleep(Duration::from_millis(330)).await;
    assert_eq!(ok(&app, get("/incr", Some(&cookie))).await.body, "3");
    assert!(
        deadline().await > created,
        "past the threshold a write renews"
    );
}

#[tokio::test]
async fn idle_timeout_and_absolute_lifetime_both_end_sessions() {
    let idle = app(SessionLayer::new(spy()).with_idle_timeout(Duration::from_millis(300)));
    let cookie = ok(&idle, get("/incr", None)).await.cookie();
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        ok(&idle, get("/count", Some(&cookie))).await.body,
        "0",
        "idle session ended"
    );

    let absolute = app(SessionLayer::new(spy())
        .with_idle_timeout(Duration::from_secs(60))
        .with_touch_threshold(0.0)
        .with_absolute_lifetime(Some(Duration::from_millis(500))));
    let cookie = ok(&absolute, get("/incr", None)).await.cookie();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !ok(&absolute, get("/incr", Some(&cookie)))
                .await
                .body
                .is_empty()
        );
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        ok(&absolute, get("/count", Some(&cookie))).await.body,
        "0",
        "activity does not extend past the absolute lifetime"
    );
}

#[tokio::test]
async fn per_session_idle_timeout_is_stored() {
    let store = spy();
    let app = routes()
        .route(
            "/remember",
            axum::routing::get(|s: tether_sessions::Session| async move {
                s.insert("user", "alice").await?;
                s.set_idle_timeout(Duration::from_secs(3 * 24 * 3600)).await
            }),
        )
        .layer(SessionLayer::new(store.clone()));
    let cookie = ok(&app, get("/remember", None)).await.cookie();
    let id = cookie.trim_start_matches("sid=").parse().unwrap();
    let record = store.inner().load(&id).await.unwrap().unwrap();
    assert_eq!(
        record.expiry.idle_timeout(),
        Duration::from_secs(3 * 24 * 3600)
    );
}

#[tokio::test]
async fn load_failure_is_503_and_corrupt_data_is_a_new_session() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    let cookie = ok(&app, get("/incr", None)).await.cookie();

    store.fail_with(Some(Failure::Unavailable));
    assert_eq!(send(&app, get("/count", Some(&cookie))).await.status, 503);

    store.fail_with(Some(Failure::CorruptLoads));
    let answer = send(&app, get("/count", Some(&cookie))).await;
    assert_eq!(
        answer.status, 200,
        "corrupt stored data is no session, not an error"
    );
    assert_eq!(answer.body, "0");
    store.fail_with(None);
    assert_eq!(ok(&app, get("/count", Some(&cookie))).await.body, "1");
}

#[tokio::test]
async fn missing_layer_is_a_clear_500() {
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(|_: tether_sessions::Session| async { "unreachable" }),
    );
    let answer = send(&router, get("/", None)).await;
    assert_eq!(answer.status, 500);
    assert!(answer.body.contains("SessionLayer"), "{}", answer.body);
}
