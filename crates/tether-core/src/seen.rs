//! Where and when a session was last used.

use std::net::IpAddr;

use crate::Timestamp;

/// The longest device label kept, in bytes; longer labels are cut at a character boundary.
pub const MAX_DEVICE_LEN: usize = 160;

/// When a session was last used, and optionally from which device and address: what a "your
/// devices" page shows. The session layer records it when it writes the session anyway (so it
/// is as fresh as the touch threshold allows, and costs no write of its own), and only when the
/// application turned it on.
///
/// The device label is cleaned when a `Seen` is made or read back: control characters become
/// spaces, surrounding space is trimmed, and it is cut to [`MAX_DEVICE_LEN`] bytes; an empty
/// label is none.
///
/// # Example
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use tether_core::{Seen, Timestamp};
///
/// let seen = Seen::new(Timestamp::from_millis(1_700_000_000_000))
///     .with_device("Mozilla/5.0 (X11; Linux x86_64)\r\n")
///     .with_address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
/// assert_eq!(seen.device(), Some("Mozilla/5.0 (X11; Linux x86_64)"));
/// assert_eq!(seen.address(), Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Parts", into = "Parts")]
pub struct Seen {
    at: Timestamp,
    device: Option<Box<str>>,
    address: Option<IpAddr>,
}

impl Seen {
    /// Last used at `at`, device and address unknown.
    pub const fn new(at: Timestamp) -> Self {
        Self {
            at,
            device: None,
            address: None,
        }
    }

    /// With a device label (typically the `User-Agent`), cleaned as the type's docs say.
    #[must_use]
    pub fn with_device(mut self, label: &str) -> Self {
        self.device = clean_label(label);
        self
    }

    /// With the client's address.
    #[must_use]
    pub const fn with_address(mut self, address: IpAddr) -> Self {
        self.address = Some(address);
        self
    }

    /// When the session was last used.
    pub const fn at(&self) -> Timestamp {
        self.at
    }

    /// The device label, if one was recorded.
    pub fn device(&self) -> Option<&str> {
        self.device.as_deref()
    }

    /// The client's address, if it was recorded.
    pub const fn address(&self) -> Option<IpAddr> {
        self.address
    }
}

fn clean_label(label: &str) -> Option<Box<str>> {
    let mut cleaned = String::with_capacity(label.len().min(MAX_DEVICE_LEN));
    for c in label.trim().chars() {
        let c = if c.is_control() { ' ' } else { c };
        if cleaned.len() + c.len_utf8() > MAX_DEVICE_LEN {
            break;
        }
        cleaned.push(c);
    }
    let cleaned = cleaned.trim_end();
    (!cleaned.is_empty()).then(|| Box::from(cleaned))
}

/// How a [`Seen`] is serialized; reading one back cleans the label again, so stored data
/// cannot bring in a label the constructor would refuse.
#[derive(serde::Serialize, serde::Deserialize)]
struct Parts {
    at: Timestamp,
    device: Option<String>,
    address: Option<IpAddr>,
}

impl From<Parts> for Seen {
    fn from(parts: Parts) -> Self {
        Self {
            at: parts.at,
            device: parts.device.as_deref().and_then(clean_label),
            address: parts.address,
        }
    }
}

impl From<Seen> for Parts {
    fn from(seen: Seen) -> Self {
        Self {
            at: seen.at,
            device: seen.device.map(String::from),
            address: seen.address,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_cleaned_and_bounded() {
        let at = Timestamp::from_millis(1);
        assert_eq!(Seen::new(at).with_device("  \t ").device(), None);
        assert_eq!(Seen::new(at).with_device("a\0b\nc").device(), Some("a b c"));
        let long = "é".repeat(MAX_DEVICE_LEN);
        let device = Seen::new(at).with_device(&long);
        let kept = device.device().unwrap();
        assert!(kept.len() <= MAX_DEVICE_LEN);
        assert_eq!(kept.len(), MAX_DEVICE_LEN);
        assert!(long.starts_with(kept));
    }

    #[test]
    fn reading_back_cleans_again() {
        let json = format!(
            r#"{{"at":5,"device":"{}\u0007","address":"::1"}}"#,
            "x".repeat(1000)
        );
        let seen: Seen = serde_json::from_str(&json).unwrap();
        assert_eq!(seen.device().unwrap().len(), MAX_DEVICE_LEN);
        assert_eq!(seen.address(), Some("::1".parse().unwrap()));
        let packed = rmp_serde::to_vec(&seen).unwrap();
        assert_eq!(rmp_serde::from_slice::<Seen>(&packed).unwrap(), seen);
    }
}
