//! Request deadlines: the moment after which the client no longer waits for an answer.
//!
//! A balancer that gives up on a request after a timeout and tells the user it failed must not
//! find it applied later: a server that was frozen (a long GC-like stall, a VM migration) reads
//! the request from its socket only after it resumes, when the user has long seen the error
//! and sent the next request. Only the sender knows when it stops waiting, so it writes that
//! moment into the request; the layer drops what the request would change once it has passed.

use http::{HeaderMap, HeaderName, HeaderValue};
use tether_core::Timestamp;

/// A request's deadline, read from the header the layer was configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadline(Timestamp);

impl Deadline {
    /// The deadline in `headers`, if `name` is set and its value is a Unix time in
    /// milliseconds. A malformed value is no deadline: it is logged, and the request is served
    /// as if it had none.
    pub(crate) fn read(headers: &HeaderMap, name: Option<&HeaderName>) -> Option<Self> {
        let name = name?;
        let value = headers.get(name)?;
        match value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(millis) => Some(Self(Timestamp::from_millis(millis))),
            None => {
                tracing::debug!(header = %name, "the request deadline is not a Unix time in milliseconds; ignored");
                None
            }
        }
    }

    /// Whether the client has stopped waiting at `now`.
    pub(crate) fn passed(self, now: Timestamp) -> bool {
        now > self.0
    }
}

/// The header value that sets a request's deadline to `deadline`, for a balancer or client
/// that sends requests to a layer configured with
/// [`SessionLayer::with_deadline_header`](crate::SessionLayer::with_deadline_header): the Unix
/// time in milliseconds, in decimal.
pub fn deadline_header_value(deadline: std::time::SystemTime) -> HeaderValue {
    let since_epoch = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    HeaderValue::from(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-deadline", HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn reads_unix_milliseconds_and_ignores_anything_else() {
        let name = HeaderName::from_static("x-deadline");
        let read = |value| Deadline::read(&headers(value), Some(&name));
        assert_eq!(read("1500"), Some(Deadline(Timestamp::from_millis(1500))));
        assert_eq!(read(" 1500 "), Some(Deadline(Timestamp::from_millis(1500))));
        for garbage in ["", "-1", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(read(garbage), None, "{garbage:?}");
        }
        assert_eq!(Deadline::read(&headers("1500"), None), None);
        let other = HeaderName::from_static("x-other");
        assert_eq!(Deadline::read(&headers("1500"), Some(&other)), None);
    }

    #[test]
    fn passes_after_its_moment_not_at_it() {
        let deadline = Deadline(Timestamp::from_millis(1500));
        assert!(!deadline.passed(Timestamp::from_millis(1499)));
        assert!(!deadline.passed(Timestamp::from_millis(1500)));
        assert!(deadline.passed(Timestamp::from_millis(1501)));
    }

    #[test]
    fn the_header_value_round_trips() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_633_600_123);
        let mut headers = HeaderMap::new();
        let name = HeaderName::from_static("x-deadline");
        headers.insert(name.clone(), deadline_header_value(at));
        assert_eq!(
            Deadline::read(&headers, Some(&name)),
            Some(Deadline(Timestamp::from_millis(1_764_633_600_123)))
        );
    }
}
