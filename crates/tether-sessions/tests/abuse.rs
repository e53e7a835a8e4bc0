//! Abuse through a real axum app: floods of anonymous and forged requests store nothing.

mod common;

use common::*;
use tether_sessions::cookie::Key;
use tether_sessions::{KeyRing, SessionLayer};

/// A cheap deterministic pseudo-random generator (xorshift), so the test needs no extra crate.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A cookie value of 0 to 120 printable ASCII characters.
    fn value(&mut self) -> String {
        let len = (self.next() % 121) as usize;
        (0..len)
            .map(|_| char::from(b'!' + (self.next() % 94) as u8))
            .filter(|c| *c != ';' && *c != ',')
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_anonymous_and_random_cookies_store_nothing() {
    for protection in ["plain", "signed", "private"] {
        let store = spy();
        let layer = SessionLayer::new(store.clone());
        let layer = match protection {
            "signed" => layer.with_signed(KeyRing::new(Key::from(&[3; 64]))),
            "private" => layer.with_private(KeyRing::new(Key::from(&[3; 64]))),
            _ => layer,
        };
        let app = app(layer);
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        for i in 0..10_000 {
            let answer = send(&app, get("/count", None)).await;
            assert_eq!(answer.status, 200, "request {i} without a cookie");
            assert!(answer.set_cookies().is_empty());
        }
        for i in 0..10_000 {
            let cookie = format!("sid={}", noise.value());
            let answer = send(&app, get("/count", Some(&cookie))).await;
            assert_eq!(answer.status, 200, "{protection} request {i}: {cookie}");
            assert_eq!(answer.body, "0", "{protection}: {cookie}");
            let set = answer.set_cookies();
            assert!(
                set.iter().all(|c| c.contains("Max-Age=0")),
                "{protection}: {cookie}: {set:?}"
            );
        }
        let calls = store.calls();
        assert_eq!(
            calls.writes(),
            0,
            "{protection}: no store write for 20,000 anonymous requests"
        );
        assert_eq!(
            store.inner().session_count(),
            0,
            "{protection}: no record created"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_cycles_the_id_and_the_old_one_stops_working() {
    let store = spy();
    let app = app(SessionLayer::new(store.clone()));
    // The attacker gets a session and plants its cookie in the victim's browser.
    let planted = ok(&app, get("/set/cart/1", None)).await.cookie();
    // The victim logs in with the planted cookie: the session moves to a new id.
    let victim = ok(&app, get("/login", Some(&planted))).await.cookie();
    assert_ne!(victim, planted);
    assert_eq!(
        ok(&app, get("/get/user", Some(&victim))).await.body,
        "alice"
    );
    // The attacker's copy of the old id sees nothing of the login.
    assert_eq!(
        ok(&app, get("/get/user", Some(&planted))).await.body,
        "<none>"
    );
    assert_eq!(
        ok(&app, get("/get/cart", Some(&planted))).await.body,
        "<none>"
    );
}
