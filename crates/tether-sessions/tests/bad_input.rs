//! Hostile and broken session ids: every one counts as "no session", never an error response,
//! never a store call for a value that cannot be an id.

mod common;

use common::*;
use tether_sessions::cookie::Key;
use tether_sessions::{KeyRing, SessionLayer};

/// Cookie headers that carry no usable session id.
fn bad_cookie_headers(valid_other_key: &str) -> Vec<Vec<u8>> {
    let mut cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"sid".to_vec(),
        b"sid=".to_vec(),
        b"sid=;".to_vec(),
        b"=".to_vec(),
        b";;;".to_vec(),
        b"sid=not-an-id".to_vec(),
        b"sid=AAAAAAAAAAAAAAAAAAAAAB".to_vec(),
        b"sid=AAAAAAAAAAAAAAAAAAAA==".to_vec(),
        b"sid=\"AAAAAAAAAAAAAAAAAAAAAA\"".to_vec(),
        b"sid=%41%41%41".to_vec(),
        format!("sid={}", "A".repeat(100_000)).into_bytes(),
        format!("sid={}", "\u{1F36A}".repeat(30)).into_bytes(),
        b"sid=\xff\xfe\xfd".to_vec(),
        b"\xc3\x28=\xa0\xa1".to_vec(),
        format!("sid={valid_other_key}").into_bytes(),
    ];
    // Many cookies, none of them ours.
    cases.push(
        (0..500)
            .map(|i| format!("c{i}=v{i}"))
            .collect::<Vec<_>>()
            .join("; ")
            .into_bytes(),
    );
    cases
}

async fn assert_no_session(app: &axum::Router, store: &Spy, headers: &[(&str, &[u8])]) {
    let loads = store.calls().load;
    let answer = ok(app, get_with("/count", headers)).await;
    assert_eq!(answer.body, "0", "{headers:?}");
    // At most a removal of a well-formed id that names no session; never a new session.
    let set = answer.set_cookies();
    assert!(
        set.iter().all(|c| c.contains("Max-Age=0")),
        "{headers:?}: {set:?}"
    );
    let answer = ok(app, get_with("/untouched", headers)).await;
    assert!(answer.set_cookies().is_empty());
    assert!(
        store.calls().load - loads <= 1,
        "at most one lookup: {headers:?}"
    );
    assert_eq!(
        store.calls().writes(),
        0,
        "bad input must never write: {headers:?}"
    );
}

#[tokio::test]
async fn malformed_cookies_are_no_session() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    let unknown = tether_core::Id::random().unwrap().to_string();
    for header in bad_cookie_headers(&unknown) {
        assert_no_session(&app, &store, &[("cookie", &header)]).await;
    }
}

#[tokio::test]
async fn malformed_cookies_with_signed_and_private_cookies() {
    for private in [false, true] {
        let store = spy();
        let keys = KeyRing::new(Key::from(&[9; 64]));
        let layer = SessionLayer::new(store.clone());
        let layer = if private {
            layer.with_private(keys)
        } else {
            layer.with_signed(keys)
        };
        let app = app(layer);
        // A bare, well-formed id is not accepted when cookies are protected.
        let bare = tether_core::Id::random().unwrap().to_string();
        for header in bad_cookie_headers(&bare) {
            let loads = store.calls().load;
            assert_no_session(&app, &store, &[("cookie", &header)]).await;
            assert_eq!(
                store.calls().load,
                loads,
                "unverified values cost no lookup"
            );
        }
    }
}

#[tokio::test]
async fn wrongly_signed_cookie_is_no_session() {
    let store = spy();
    let signer =
        app(SessionLayer::new(store.clone()).with_signed(KeyRing::new(Key::from(&[1; 64]))));
    let cookie = ok(&signer, get("/incr", None)).await.cookie();
    let verifier =
        app(SessionLayer::new(store.clone()).with_signed(KeyRing::new(Key::from(&[2; 64]))));
    let writes = store.calls().writes();
    let answer = ok(&verifier, get("/count", Some(&cookie))).await;
    assert_eq!(answer.body, "0");
    assert_eq!(store.calls().writes(), writes);

    // Tampering with one character of a valid signed cookie.
    let (name, value) = cookie.split_once('=').unwrap();
    let mut chars: Vec<char> = value.chars().collect();
    let last = chars.len() - 1;
    chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
    let forged = format!("{name}={}", chars.into_iter().collect::<String>());
    assert_eq!(ok(&signer, get("/count", Some(&forged))).await.body, "0");
}

#[tokio::test]
async fn a_bad_cookie_does_not_hide_a_good_one() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    let cookie = ok(&app, get("/incr", None)).await.cookie();
    let header = format!("sid=garbage; other=1; {cookie}");
    assert_eq!(ok(&app, get("/count", Some(&header))).await.body, "1");
    // Also when split over two Cookie headers, as HTTP/2 clients send them.
    let answer = ok(
        &app,
        get_with(
            "/count",
            &[("cookie", b"sid=zzz"), ("cookie", cookie.as_bytes())],
        ),
    )
    .await;
    assert_eq!(answer.body, "1");
}

#[tokio::test]
async fn unknown_ids_are_never_adopted() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    // An attacker plants a well-formed id; the victim's first write must get a fresh one.
    let planted = tether_core::Id::random().unwrap().to_string();
    let answer = ok(&app, get("/incr", Some(&format!("sid={planted}")))).await;
    let issued = answer.cookie();
    assert_ne!(issued, format!("sid={planted}"));
    assert_eq!(
        ok(&app, get("/count", Some(&format!("sid={planted}"))))
            .await
            .body,
        "0"
    );
    assert_eq!(ok(&app, get("/count", Some(&issued))).await.body, "1");
}

#[tokio::test]
async fn stale_cookie_of_an_ended_session_is_revoked_once_read() {
    let app = app(SessionLayer::new(spy()));
    let unknown = format!("sid={}", tether_core::Id::random().unwrap());
    let answer = ok(&app, get("/count", Some(&unknown))).await;
    let set = answer.set_cookies();
    assert_eq!(set.len(), 1);
    assert!(set[0].contains("Max-Age=0"), "{set:?}");
}

#[tokio::test]
async fn malformed_session_headers_are_no_session() {
    let store = spy();
    let name = axum::http::HeaderName::from_static("x-session-id");
    let app = app(SessionLayer::new(store.clone()).with_header(name));
    let long = "A".repeat(8_000);
    let cases: [&[u8]; 6] = [
        b"",
        b"   ",
        b"not-an-id",
        b"\xff\xfe",
        long.as_bytes(),
        b"AAAAAAAAAAAAAAAAAAAAAB",
    ];
    for value in cases {
        let answer = ok(&app, get_with("/count", &[("x-session-id", value)])).await;
        assert_eq!(answer.body, "0");
        assert!(answer.headers.get("x-session-id").is_none());
    }
    assert_eq!(store.calls().total(), 0);
}
