//! Active health checks move the `tether_sticky_backend_check_down` gauge (features `metrics`,
//! `active-health`).
#![cfg(all(feature = "metrics", feature = "active-health"))]

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Request, Response, StatusCode};
use metrics_util::debugging::DebuggingRecorder;
use tether_sticky::{HealthCheck, KeyRing, Sticky, StickyConfig, backends, cookie::Key};
use tether_testkit::MetricsSnapshot;
use tower::{ServiceExt as _, service_fn};

#[tokio::test(flavor = "current_thread")]
async fn a_backend_failing_its_checks_shows_down_then_up_again() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The router registers a backend's handles when it takes the backend in (the first
    // `ready`), on this thread: the local recorder gets them.
    let _recording = metrics::set_default_local_recorder(&recorder);

    let broken = Arc::new(AtomicBool::new(true));
    let backend = {
        let broken = Arc::clone(&broken);
        service_fn(move |_: Request<String>| {
            let status = if broken.load(Ordering::Relaxed) {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            async move {
                let mut response = Response::new(String::new());
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }
        })
    };
    let layer = StickyConfig::new(KeyRing::new(Key::generate()));
    let router = Sticky::new(&layer, backends([("flaky", backend)]));
    router.clone().ready().await.expect("ready");
    let once = NonZeroU32::new(1).expect("non-zero");
    let checks = router.health_checks::<String>(
        HealthCheck::new("/health".parse().expect("path"))
            .with_fall(once)
            .with_rise(once),
    );
    let down = || {
        MetricsSnapshot::take(&snapshotter)
            .gauge("tether_sticky_backend_check_down", &[("backend", "flaky")])
    };

    let checked_down = || {
        router
            .handle()
            .backends()
            .into_iter()
            .find(|b| b.name == "flaky")
            .and_then(|b| b.checked)
            .is_some_and(|c| c.is_down())
    };

    checks.round().await;
    assert!(checked_down());
    assert_eq!(down(), Some(1.0), "a failed check takes it down");
    broken.store(false, Ordering::Relaxed);
    checks.round().await;
    assert!(!checked_down());
    // A snapshot empties the gauge too, so this 0 alone proves little; the next change does.
    assert_eq!(down(), Some(0.0), "a passing check brings it back");
    broken.store(true, Ordering::Relaxed);
    checks.round().await;
    assert_eq!(down(), Some(1.0), "down again at the next failed check");
}
