//! An axum-login app whose sessions live in Redis through `tether-tower-sessions`: log in on
//! one instance, and every instance on the same Redis knows who you are.
//!
//! - `POST /login` with the form fields `username` and `password`: logs in (`401` if wrong);
//! - `GET /me`: the protected route, `hello, <name>` when logged in, else `401`;
//! - `POST /logout`: logs out, on every instance at once.
//!
//! Run with `cargo run -p example-axum-login` (Redis from `REDIS_URL`, default
//! `redis://127.0.0.1:6379`; listens on 127.0.0.1:3000, or `--addr HOST:PORT`). The users are
//! `ferris` (password `crab`) and `corro` (password `unsafe`).

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_login::tower_sessions::{Expiry, SessionManagerLayer};
use axum_login::{AuthManagerLayerBuilder, AuthUser, AuthnBackend, UserId, login_required};
use clap::Parser;
use serde::Deserialize;
use tether_redis::RedisStore;
use tether_tower_sessions::TetherStore;
use tracing_subscriber::EnvFilter;

/// A user of the app.
#[derive(Clone)]
struct User {
    id: u64,
    name: String,
    /// A demo keeps passwords in the clear; a real app stores a password hash (argon2) and
    /// uses it here, so that changing the password ends every session of the user.
    password: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AuthUser for User {
    type Id = u64;

    fn id(&self) -> u64 {
        self.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        self.password.as_bytes()
    }
}

/// What the login form sends.
#[derive(Clone, Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// The users, in memory.
#[derive(Clone, Debug)]
struct Users {
    by_id: Arc<HashMap<u64, User>>,
}

/// The in-memory user list never fails; axum-login asks for an error type anyway.
#[derive(Debug, thiserror::Error)]
#[error("the user list failed")]
struct UsersError;

impl Users {
    fn demo() -> Self {
        let users = [(1, "ferris", "crab"), (2, "corro", "unsafe")];
        let by_id = users
            .into_iter()
            .map(|(id, name, password)| {
                let user = User {
                    id,
                    name: name.to_owned(),
                    password: password.to_owned(),
                };
                (id, user)
            })
            .collect();
        Self {
            by_id: Arc::new(by_id),
        }
    }
}

impl AuthnBackend for Users {
    type User = User;
    type Credentials = Credentials;
    type Error = UsersError;

    async fn authenticate(&self, credentials: Credentials) -> Result<Option<User>, UsersError> {
        Ok(self
            .by_id
            .values()
            .find(|u| u.name == credentials.username && u.password == credentials.password)
            .cloned())
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, UsersError> {
        Ok(self.by_id.get(id).cloned())
    }
}

type AuthSession = axum_login::AuthSession<Users>;

async fn login(mut auth: AuthSession, Form(credentials): Form<Credentials>) -> impl IntoResponse {
    match auth.authenticate(credentials).await {
        Ok(Some(user)) => match auth.login(&user).await {
            Ok(()) => (StatusCode::OK, format!("logged in as {}", user.name)),
            Err(error) => unavailable(&error),
        },
        Ok(None) => (
            StatusCode::UNAUTHORIZED,
            "wrong user name or password".into(),
        ),
        Err(error) => unavailable(&error),
    }
}

async fn logout(mut auth: AuthSession) -> impl IntoResponse {
    match auth.logout().await {
        Ok(_) => (StatusCode::OK, "logged out".to_owned()),
        Err(error) => unavailable(&error),
    }
}

async fn me(auth: AuthSession) -> impl IntoResponse {
    match auth.user {
        Some(user) => (StatusCode::OK, format!("hello, {}", user.name)),
        None => (StatusCode::UNAUTHORIZED, "not logged in".to_owned()),
    }
}

/// The session store failed (Redis is down, say): a short plain answer, the cause in the log.
fn unavailable(error: &axum_login::Error<Users>) -> (StatusCode, String) {
    tracing::error!(%error, "login session failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "sessions are unavailable, try again".to_owned(),
    )
}

fn app(store: RedisStore) -> Router {
    // Plain HTTP demo: browsers and curl drop `Secure` cookies outside localhost. Keep the
    // secure default in production, behind TLS.
    let sessions = SessionManagerLayer::new(TetherStore::new(store))
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(12)));
    let auth = AuthManagerLayerBuilder::new(Users::demo(), sessions).build();
    Router::new()
        .route("/me", get(me))
        .route_layer(login_required!(Users))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(auth)
}

/// An axum-login app on Redis: every instance on the same Redis shares who is logged in.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// The Redis server.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

async fn serve(cli: Cli) -> Result<(), String> {
    let store = RedisStore::connect(&cli.redis_url)
        .await
        .map_err(|e| tether_core::error_chain(&e).to_string())?;
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .map_err(|e| format!("could not listen on {}: {e}", cli.addr))?;
    let addr = listener.local_addr().unwrap_or(cli.addr);
    println!("axum-login on Redis listening on http://{addr}");
    axum::serve(listener, app(store))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("serving on {addr}: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match serve(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("example-axum-login: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tether_testkit::RedisServer;
    use tower::ServiceExt as _;

    use super::*;

    struct Answer {
        status: StatusCode,
        cookie: Option<String>,
        body: String,
    }

    async fn send(app: &Router, request: Request<Body>) -> Answer {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let cookie = response
            .headers()
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        Answer {
            status,
            cookie,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    fn form(path: &str, cookie: Option<&str>, body: &'static str) -> Request<Body> {
        let mut request =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        request.body(Body::from(body)).unwrap()
    }

    fn me(cookie: Option<&str>) -> Request<Body> {
        let mut request = Request::get("/me");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        request.body(Body::empty()).unwrap()
    }

    /// Log in on one instance, reach the protected route on another, log out there: the
    /// first instance no longer lets the cookie in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_login_on_one_instance_opens_the_protected_route_on_another() {
        let redis = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .unwrap()
            .expect("redis-server");
        let a = app(RedisStore::connect(redis.url()).await.unwrap());
        let b = app(RedisStore::connect(redis.url()).await.unwrap());

        assert_eq!(send(&b, me(None)).await.status, StatusCode::UNAUTHORIZED);
        let wrong = send(&a, form("/login", None, "username=ferris&password=shrimp")).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

        let login = send(&a, form("/login", None, "username=ferris&password=crab")).await;
        assert_eq!(
            (login.status, login.body.as_str()),
            (StatusCode::OK, "logged in as ferris")
        );
        let cookie = login.cookie.expect("a session cookie");

        let elsewhere = send(&b, me(Some(&cookie))).await;
        assert_eq!(
            (elsewhere.status, elsewhere.body.as_str()),
            (StatusCode::OK, "hello, ferris")
        );

        let logout = send(&b, form("/logout", Some(&cookie), "")).await;
        assert_eq!(logout.status, StatusCode::OK);
        assert_eq!(
            send(&a, me(Some(&cookie))).await.status,
            StatusCode::UNAUTHORIZED,
            "logged out everywhere"
        );
    }
}
