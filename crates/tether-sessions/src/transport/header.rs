//! The session id in a request/response header, for API clients that do not keep cookies.

use http::{HeaderMap, HeaderName, HeaderValue};
use tether_core::Id;

use super::{Delivery, Protection};

pub(super) fn read(name: &HeaderName, headers: &HeaderMap, protection: &Protection) -> Option<Id> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| protection.open(name.as_str(), value.trim()))
}

/// Only a new id is sent; the client keeps using the one it has until told otherwise. A revoked
/// session is announced with an empty value.
pub(super) fn deliver(
    name: &HeaderName,
    headers: &mut HeaderMap,
    protection: &Protection,
    delivery: Delivery,
) {
    let value = match delivery {
        Delivery::Issue(id, _) => protection.seal(name.as_str(), id),
        Delivery::Revoke => String::new(),
        Delivery::Nothing | Delivery::Renew(..) => return,
    };
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name.clone(), value);
    }
}
