//! Running active health checks against a router's backends.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use http::{Method, Request, Response};
use tower::ServiceExt as _;
use tower::discover::Discover;
use tower_service::Service;

use tether_core::{BoxError, error_chain};

use crate::HealthCheck;
use crate::service::{Shared, Sticky};

/// The active health checks of one [`Sticky`] router: [`HealthChecks::round`] checks every
/// backend once, [`HealthChecks::run`] goes on at the check's interval. Each check is sent
/// through the backend's own service (the one requests go through), counts in none of its
/// counters, and marks the backend up or down for the router (see [`HealthCheck`]).
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response, StatusCode};
/// use tether_sticky::{HealthCheck, KeyRing, Sticky, StickyConfig, backends, cookie::Key};
/// use tower::{ServiceExt as _, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let backend = |status: StatusCode| {
///     service_fn(move |_: Request<String>| async move {
///         let mut response = Response::new(String::new());
///         *response.status_mut() = status;
///         Ok::<_, Infallible>(response)
///     })
/// };
/// let layer = StickyConfig::new(KeyRing::new(Key::generate()));
/// let router = Sticky::new(
///     &layer,
///     backends([("good", backend(StatusCode::OK)), ("broken", backend(StatusCode::INTERNAL_SERVER_ERROR))]),
/// );
/// router.clone().ready().await.unwrap(); // takes in the backends
/// let checks = router.health_checks::<String>(HealthCheck::new("/health".parse().unwrap()));
/// checks.round().await;
/// let broken = router.handle().backends().into_iter().find(|b| b.name == "broken").unwrap();
/// assert!(broken.checked.unwrap().is_down());
/// // then: tokio::spawn(checks.run());
/// # }
/// ```
pub struct HealthChecks<S, B> {
    services: Arc<RwLock<HashMap<String, S>>>,
    shared: Arc<Shared>,
    check: HealthCheck,
    body: PhantomData<fn() -> B>,
}

impl<S, B> std::fmt::Debug for HealthChecks<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecks")
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

impl<D: Discover> Sticky<D> {
    /// Active health checks of this router's backends, with requests of body type `B` (the
    /// router's request body). Backends are those the router has taken in when a round starts,
    /// so make the router ready once before the first round.
    pub fn health_checks<B>(&self, check: HealthCheck) -> HealthChecks<D::Service, B> {
        HealthChecks {
            services: Arc::clone(&self.services),
            shared: Arc::clone(&self.shared),
            check,
            body: PhantomData,
        }
    }
}

impl<S, B, RB> HealthChecks<S, B>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Default + Send + 'static,
{
    /// Checks every backend once, all at the same time, and waits for the outcomes.
    pub async fn round(&self) {
        let services: Vec<(String, S)> = self
            .services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, service)| (name.clone(), service.clone()))
            .collect();
        let checks = services.into_iter().map(|(name, service)| async move {
            let (passed, outcome) = self.check_one(service).await;
            if let Some(backend) = self.shared.roster.get(&name) {
                backend.record_check(passed, outcome, &self.check);
            }
        });
        futures_util::future::join_all(checks).await;
    }

    /// Checks every backend at the check's interval, forever, starting one interval from now
    /// (call [`HealthChecks::round`] first for a round at once). Spawn it; drop it to stop.
    pub async fn run(self) {
        loop {
            tokio::time::sleep(self.check.interval).await;
            self.round().await;
        }
    }

    /// One check of one backend: whether it passed, and what it found.
    async fn check_one(&self, service: S) -> (bool, String) {
        let mut request = Request::new(B::default());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = self.check.path.clone().into();
        match tokio::time::timeout(self.check.timeout, service.oneshot(request)).await {
            Err(_) => (false, format!("timed out after {:?}", self.check.timeout)),
            Ok(Err(error)) => {
                let error: BoxError = error.into();
                (false, error_chain(&*error).to_string())
            }
            Ok(Ok(response)) => {
                let status = response.status();
                (
                    self.check.passes(status),
                    format!("status {}", status.as_u16()),
                )
            }
        }
    }
}
