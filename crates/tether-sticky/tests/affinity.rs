//! Request cookies as the router reads and forwards them: byte for byte, so a neighbour that is
//! not UTF-8 neither hides the affinity cookie or the session id nor gets lost on the way to the
//! backend.

use std::convert::Infallible;

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response};
use tether_core::Id;
use tether_core::placement::rendezvous_order;
use tether_sticky::{KeyRing, Pinning, Sticky, StickyConfig, backends, cookie::Key};
use tower::{ServiceExt as _, service_fn};

/// Header in which a test backend echoes every `Cookie` header it received, in order.
const SEEN: &str = "x-seen-cookie";

const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

type Backend = tower::util::BoxCloneSyncService<Request<String>, Response<String>, Infallible>;

/// A backend that answers its name and echoes the request's `Cookie` headers in [`SEEN`].
fn backend(name: &'static str) -> Backend {
    tower::util::BoxCloneSyncService::new(service_fn(move |request: Request<String>| async move {
        let mut response = Response::new(name.to_owned());
        for value in request.headers().get_all(COOKIE) {
            response.headers_mut().append(SEEN, value.clone());
        }
        Ok::<_, Infallible>(response)
    }))
}

fn router(layer: &StickyConfig) -> Sticky<tether_sticky::Backends<&'static str, Backend>> {
    Sticky::new(layer, backends(NAMES.map(|name| (name, backend(name)))))
}

fn layer() -> StickyConfig {
    StickyConfig::new(KeyRing::new(Key::from(&[3; 64]))).with_secure(false)
}

struct Answer {
    backend: String,
    /// The `name=value` part of the response's `Set-Cookie`, if any.
    set_cookie: Option<String>,
    /// The `Cookie` headers the backend received, as bytes.
    seen: Vec<Vec<u8>>,
}

async fn send(
    router: &Sticky<tether_sticky::Backends<&'static str, Backend>>,
    cookies: &[&[u8]],
) -> Answer {
    let mut request = Request::new(String::new());
    for cookie in cookies {
        let value = HeaderValue::from_bytes(cookie).unwrap();
        request.headers_mut().append(COOKIE, value);
    }
    let response = router.clone().oneshot(request).await.unwrap();
    let set_cookie = response.headers().get(SET_COOKIE).map(|v| {
        let line = v.to_str().unwrap();
        line.split(';').next().unwrap().to_owned()
    });
    let seen = response
        .headers()
        .get_all(SEEN)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    Answer {
        backend: response.into_body(),
        set_cookie,
        seen,
    }
}

/// A new client's pin and the backend it names.
async fn pin(router: &Sticky<tether_sticky::Backends<&'static str, Backend>>) -> (String, String) {
    let first = send(router, &[]).await;
    (first.set_cookie.unwrap(), first.backend)
}

#[tokio::test]
async fn a_cookie_that_is_not_utf8_does_not_hide_the_pin() {
    let router = router(&layer());
    let (pin, backend) = pin(&router).await;
    // `\xe9` is `é` in Latin-1: allowed in a header, not UTF-8.
    for header in [
        [b"junk=\xe9; ".as_slice(), pin.as_bytes()].concat(),
        [pin.as_bytes(), b"; junk=\xe9"].concat(),
    ] {
        let answer = send(&router, &[&header]).await;
        assert_eq!(answer.backend, backend, "{header:?}");
        assert_eq!(
            answer.set_cookie, None,
            "{header:?}: still pinned, no new pin"
        );
    }
}

#[tokio::test]
async fn a_cookie_that_is_not_utf8_does_not_hide_the_session_id() {
    let router = router(
        &layer()
            .with_pinning(Pinning::SessionId)
            .with_session_cookie("sid"),
    );
    for seed in 0..8u8 {
        let id = Id::from_bytes([seed; 16]);
        let owner = rendezvous_order(&id, &NAMES)[0];
        let header = [b"junk=\xe9; sid=".as_slice(), id.to_string().as_bytes()].concat();
        let answer = send(&router, &[&header]).await;
        assert_eq!(answer.backend, owner, "routed by the session id");
        assert_eq!(
            answer.set_cookie, None,
            "no affinity pin for a session route"
        );
    }
}

#[tokio::test]
async fn a_bad_affinity_cookie_does_not_hide_a_good_one() {
    let router = router(&layer());
    let (pin, backend) = pin(&router).await;
    // A stale or planted cookie of the same name (for a parent domain, say) comes first.
    let header = format!("tether-route=planted; {pin}");
    let answer = send(&router, &[header.as_bytes()]).await;
    assert_eq!(answer.backend, backend);
    assert_eq!(answer.set_cookie, None, "still pinned, no new pin");
    assert!(answer.seen.is_empty(), "both affinity cookies are removed");
}

#[tokio::test]
async fn removing_the_affinity_cookie_keeps_its_neighbours_that_are_not_utf8() {
    let router = router(&layer());
    let (pin, _) = pin(&router).await;
    let header = [pin.as_bytes(), b"; app=\xe9t\xe9; theme=dark"].concat();
    let answer = send(&router, &[&header]).await;
    assert_eq!(answer.seen, [b"app=\xe9t\xe9; theme=dark".to_vec()]);
}

#[tokio::test]
async fn removing_the_affinity_cookie_keeps_other_headers_that_are_not_utf8() {
    let router = router(&layer());
    let (pin, _) = pin(&router).await;
    let answer = send(&router, &[b"app=\xe9", pin.as_bytes()]).await;
    assert_eq!(answer.seen, [b"app=\xe9".to_vec()]);
    // A header that held only the affinity cookie is gone.
    let answer = send(&router, &[pin.as_bytes()]).await;
    assert!(answer.seen.is_empty(), "{:?}", answer.seen);
}

#[tokio::test]
async fn cookie_headers_without_the_affinity_cookie_pass_byte_for_byte() {
    let router = router(&layer());
    let (pin, _) = pin(&router).await;
    let answer = send(&router, &[pin.as_bytes(), b"a=1;b=2 ;; c"]).await;
    assert_eq!(answer.seen, [b"a=1;b=2 ;; c".to_vec()]);
}
