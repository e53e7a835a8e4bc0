//! Sessions bound to a principal through the layer: login, "your devices", signing out
//! elsewhere, and what the layer records of each session's use.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get as route_get;
use common::*;
use http::StatusCode;
use tether_sessions::{
    Activity, ClientAddress, Error, Principal, Session, SessionHandle, SessionLayer,
};

/// Routes on top of the common app:
/// - `/login/{user}`: cycles the id and binds the session to `user`;
/// - `/whoami`: the bound principal, or `anonymous`;
/// - `/devices`: the principal's sessions as `handle device address` lines, the current one
///   marked with `*`;
/// - `/revoke/{handle}`, `/revoke-others`, `/revoke-all`.
fn principal_app(layer: SessionLayer) -> Router {
    routes()
        .route(
            "/login/{user}",
            route_get(|s: Session, Path(user): Path<String>| async move {
                s.cycle_id().await?;
                s.set_principal(Principal::new(user)?).await
            }),
        )
        .route(
            "/whoami",
            route_get(|s: Session| async move {
                Ok::<_, Error>(match s.principal().await? {
                    Some(p) => p.to_string(),
                    None => "anonymous".into(),
                })
            }),
        )
        .route("/devices", route_get(devices))
        .route(
            "/revoke/{handle}",
            route_get(|s: Session, Path(handle): Path<String>| async move {
                let user = s.principal().await?.expect("signed in");
                let handle: SessionHandle = handle.parse().expect("handle");
                Ok::<_, Error>(format!("{:?}", s.index().revoke(&user, &handle).await?))
            }),
        )
        .route(
            "/revoke-others",
            route_get(|s: Session| async move {
                let user = s.principal().await?.expect("signed in");
                let current = s.handle().expect("stored");
                Ok::<_, Error>(s.index().revoke_others(&user, &current).await?.to_string())
            }),
        )
        .route(
            "/revoke-all",
            route_get(|s: Session| async move {
                let user = s.principal().await?.expect("signed in");
                Ok::<_, Error>(s.index().revoke_all(&user).await?.to_string())
            }),
        )
        .layer(layer)
}

async fn devices(s: Session) -> Result<String, Error> {
    let user = s.principal().await?.expect("signed in");
    let current = s.handle();
    let mut page = String::new();
    for info in s.index().sessions_of(&user).await? {
        let mark = if Some(info.handle) == current {
            "*"
        } else {
            ""
        };
        let address = info.address().map(|a| a.to_string());
        page += &format!(
            "{mark}{} {} {} {}\n",
            info.handle,
            info.device().unwrap_or("-"),
            address.as_deref().unwrap_or("-"),
            info.last_seen().map_or(0, |t| t.as_millis()),
        );
    }
    Ok(page)
}

fn layer(store: &Spy) -> SessionLayer {
    SessionLayer::new(store.clone())
}

async fn login(app: &Router, cookie: Option<&str>, user: &str, agent: &str) -> String {
    let request = match cookie {
        Some(c) => get_with(
            &format!("/login/{user}"),
            &[("cookie", c.as_bytes()), ("user-agent", agent.as_bytes())],
        ),
        None => get_with(
            &format!("/login/{user}"),
            &[("user-agent", agent.as_bytes())],
        ),
    };
    ok(app, request).await.cookie()
}

#[tokio::test]
async fn a_login_binds_in_one_write_and_lists_the_session() {
    let store = spy();
    let app = principal_app(layer(&store));
    // A visitor with a session logs in: load, cycle, apply. The binding rides on the apply.
    let visitor = ok(&app, get("/incr", None)).await.cookie();
    let before = store.calls();
    let alice = login(&app, Some(&visitor), "alice", "Firefox").await;
    let calls = store.calls();
    assert_eq!(
        (
            calls.cycle - before.cycle,
            calls.apply - before.apply,
            calls.create - before.create
        ),
        (1, 1, 0),
        "binding adds no store call to the login"
    );
    assert_ne!(alice, visitor, "the id changes at login");
    assert_eq!(ok(&app, get("/whoami", Some(&alice))).await.body, "alice");
    assert_eq!(
        ok(&app, get("/count", Some(&alice))).await.body,
        "1",
        "data kept"
    );

    // A fresh visitor logging in without any session: one create, bound.
    let before = store.calls();
    let fresh = login(&app, None, "alice", "Safari").await;
    let calls = store.calls();
    assert_eq!(calls.create - before.create, 1);
    assert_eq!(
        calls.writes() - before.writes(),
        1,
        "one write for a fresh login"
    );
    assert_eq!(ok(&app, get("/whoami", Some(&fresh))).await.body, "alice");

    let page = ok(&app, get("/devices", Some(&fresh))).await.body;
    let lines: Vec<&str> = page.lines().collect();
    assert_eq!(lines.len(), 2, "{page}");
    // Both logins may fall in the same instant, so the list's order is not checked here.
    assert_eq!(
        lines.iter().filter(|line| line.starts_with('*')).count(),
        1,
        "the current session, and only it, is marked: {page}"
    );
    assert!(
        !page.contains(alice.split('=').nth(1).unwrap()),
        "ids never listed"
    );
}

#[tokio::test]
async fn signing_out_elsewhere_makes_the_other_device_anonymous() {
    let store = spy();
    let app = principal_app(layer(&store));
    let laptop = login(&app, None, "bob", "laptop").await;
    let phone = login(&app, None, "bob", "phone").await;
    let other_user = login(&app, None, "carol", "tablet").await;

    assert_eq!(
        ok(&app, get("/revoke-others", Some(&laptop))).await.body,
        "1"
    );
    assert_eq!(
        ok(&app, get("/whoami", Some(&phone))).await.body,
        "anonymous"
    );
    assert_eq!(ok(&app, get("/whoami", Some(&laptop))).await.body, "bob");
    assert_eq!(
        ok(&app, get("/whoami", Some(&other_user))).await.body,
        "carol",
        "another user's session is untouched"
    );

    // A handle of carol's session, sent by bob: nothing happens.
    let carol_devices = ok(&app, get("/devices", Some(&other_user))).await.body;
    let carol_handle = carol_devices
        .trim_start_matches('*')
        .split(' ')
        .next()
        .unwrap();
    let answer = ok(&app, get(&format!("/revoke/{carol_handle}"), Some(&laptop))).await;
    assert_eq!(answer.body, "NotFound");
    assert_eq!(
        ok(&app, get("/whoami", Some(&other_user))).await.body,
        "carol"
    );

    assert_eq!(ok(&app, get("/revoke-all", Some(&laptop))).await.body, "1");
    assert_eq!(
        ok(&app, get("/whoami", Some(&laptop))).await.body,
        "anonymous"
    );
}

#[tokio::test]
async fn activity_rides_on_writes_only() {
    let store = spy();
    let layer = layer(&store)
        .with_idle_timeout(Duration::from_secs(3600))
        .with_activity(
            Activity::new()
                .with_user_agent(true)
                .with_client_address(ClientAddress::ForwardedFor),
        );
    let app = principal_app(layer);
    let headers: [(&str, &[u8]); 2] = [
        (
            "user-agent",
            b"Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
        ),
        ("x-forwarded-for", b"203.0.113.9, 192.0.2.44"),
    ];
    let cookie = ok(&app, get_with("/login/dave", &headers)).await.cookie();
    let page = ok(&app, get("/devices", Some(&cookie))).await.body;
    assert!(
        page.contains("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0 192.0.2.44"),
        "device and the nearest proxy's address are recorded: {page}"
    );

    // Reads before the touch threshold write nothing, activity or not.
    let before = store.calls();
    for _ in 0..5 {
        let mut with_cookie = headers.to_vec();
        with_cookie.push(("cookie", cookie.as_bytes()));
        ok(&app, get_with("/whoami", &with_cookie)).await;
    }
    assert_eq!(
        store.calls().writes(),
        before.writes(),
        "reads write nothing"
    );
}

#[tokio::test]
async fn activity_is_off_by_default_and_the_peer_address_is_optional() {
    let store = spy();
    let app = principal_app(layer(&store));
    let cookie = ok(
        &app,
        get_with(
            "/login/erin",
            &[
                ("user-agent", b"Firefox"),
                ("x-forwarded-for", b"192.0.2.1"),
            ],
        ),
    )
    .await
    .cookie();
    let page = ok(&app, get("/devices", Some(&cookie))).await.body;
    assert!(
        page.ends_with(" - - 0\n"),
        "nothing recorded by default: {page}"
    );

    let store = spy();
    let app = principal_app(
        layer(&store).with_activity(Activity::new().with_client_address(
            ClientAddress::extension::<axum::extract::ConnectInfo<SocketAddr>>(),
        )),
    );
    let mut login = get("/login/erin", None);
    login.extensions_mut().insert(axum::extract::ConnectInfo(
        "198.51.100.3:5555".parse::<SocketAddr>().unwrap(),
    ));
    let cookie = ok(&app, login).await.cookie();
    let page = ok(&app, get("/devices", Some(&cookie))).await.body;
    assert!(page.contains(" - 198.51.100.3 "), "{page}");
}

#[tokio::test]
async fn a_bad_principal_is_a_typed_error_and_changes_nothing() {
    let store = spy();
    let app = principal_app(layer(&store));
    // `%0A` is a newline once the path is decoded.
    let answer = send(&app, get("/login/a%0Ab", None)).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(answer.set_cookies().is_empty());
    assert_eq!(
        store.calls().writes(),
        0,
        "nothing stored for a refused principal"
    );
    let long = "x".repeat(300);
    let answer = send(&app, get(&format!("/login/{long}"), None)).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(store.calls().writes(), 0);
}
