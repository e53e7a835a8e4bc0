//! The routes: a login form, the "your devices" page, signing out.

use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tether_memory::MemoryStore;
use tether_sessions::{
    Activity, ClientAddress, Principal, Result, Session, SessionHandle, SessionLayer,
};

use crate::page;

/// The demo's users: any non-empty password signs them in.
pub(crate) const USERS: [&str; 2] = ["alice", "bob"];

/// The app, its sessions in `store`. `secure` sets the cookie's `Secure` flag: keep it on
/// behind TLS; browsers also accept it on plain `http://localhost`.
pub(crate) fn app(store: MemoryStore, secure: bool) -> Router {
    let sessions = SessionLayer::new(store).with_secure(secure).with_activity(
        Activity::new()
            .with_user_agent(true)
            .with_client_address(ClientAddress::extension::<ConnectInfo<SocketAddr>>()),
    );
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/devices", get(devices))
        .route("/devices/sign-out", post(sign_out_device))
        .route("/devices/sign-out-others", post(sign_out_others))
        .layer(sessions)
}

async fn home(session: Session) -> Result<Response> {
    Ok(match session.principal().await? {
        Some(user) => Html(page::home(user.as_str())).into_response(),
        None => Html(page::login(None)).into_response(),
    })
}

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

async fn login(session: Session, Form(form): Form<Credentials>) -> Result<Response> {
    if !USERS.contains(&form.user.as_str()) || form.password.is_empty() {
        let page = page::login(Some("Unknown user or empty password."));
        return Ok((StatusCode::UNAUTHORIZED, Html(page)).into_response());
    }
    // A new id at login: an id planted in this browser before it is worthless now.
    session.cycle_id().await?;
    session.set_principal(Principal::new(&form.user)?).await?;
    Ok(Redirect::to("/devices").into_response())
}

async fn logout(session: Session) -> Result<Redirect> {
    session.flush().await?;
    Ok(Redirect::to("/"))
}

async fn devices(session: Session) -> Result<Response> {
    let Some(user) = session.principal().await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let sessions = session.index().sessions_of(&user).await?;
    Ok(Html(page::devices(user.as_str(), &sessions, session.handle())).into_response())
}

#[derive(Deserialize)]
struct Device {
    handle: SessionHandle,
}

async fn sign_out_device(session: Session, Form(form): Form<Device>) -> Result<Redirect> {
    if let Some(user) = session.principal().await? {
        // A handle of another user's session (a forged form) signs nothing out.
        let _revoked = session.index().revoke(&user, &form.handle).await?;
    }
    Ok(Redirect::to("/devices"))
}

async fn sign_out_others(session: Session) -> Result<Redirect> {
    if let (Some(user), Some(current)) = (session.principal().await?, session.handle()) {
        session.index().revoke_others(&user, &current).await?;
    }
    Ok(Redirect::to("/devices"))
}
