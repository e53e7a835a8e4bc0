//! Setting values that are more than their type: durations written the human way (`500ms`, `2s`,
//! `1m 30s`), timeouts that must be above zero, the bounded-load epsilon. Each reads itself from
//! a flag (`FromStr`, which clap uses) and from the TOML file (`Deserialize`) with the same rules,
//! so a bad value is refused when the settings are read, naming the flag or the key.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Why a setting's value was refused. Each message carries its cause in its own text, because
/// clap and serde show only an error's `Display`, never its sources.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InvalidValue {
    /// Not a duration humantime reads.
    #[error("{text:?} is not a duration ({cause}); write it like 500ms, 2s or 1m 30s")]
    Duration {
        text: String,
        cause: humantime::DurationError,
    },
    /// A timeout of zero.
    #[error("{text:?} leaves no time at all: give a duration above 0")]
    ZeroTimeout { text: String },
    /// Not a number.
    #[error("{text:?} is not a number ({cause})")]
    Number {
        text: String,
        cause: std::num::ParseFloatError,
    },
    /// An epsilon of zero or less, or one that is not finite.
    #[error("{value} is not a finite number above 0")]
    NotPositive { value: f64 },
    /// A health-check path that is not an absolute path (and query).
    #[error("{text:?} is not a path: write it like /health or /status?full=1")]
    Path { text: String },
    /// Not a network or an address.
    #[error("{text:?} is not a network or an address: write it like 10.0.0.0/8 or 192.0.2.7")]
    Network { text: String },
    /// Not an HTTP status code.
    #[error("{text:?} is not an HTTP status code (100 to 599)")]
    Status { text: String },
}

fn duration(text: &str) -> Result<Duration, InvalidValue> {
    humantime::parse_duration(text).map_err(|cause| InvalidValue::Duration {
        text: text.to_owned(),
        cause,
    })
}

/// A duration, zero allowed (`0s`: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AnyDuration(pub(crate) Duration);

impl FromStr for AnyDuration {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        duration(text).map(Self)
    }
}

/// A duration above zero: a bound that would end everything at once otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timeout(pub(crate) Duration);

impl FromStr for Timeout {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match duration(text)? {
            Duration::ZERO => Err(InvalidValue::ZeroTimeout {
                text: text.to_owned(),
            }),
            timeout => Ok(Self(timeout)),
        }
    }
}

/// How far above the average load a backend may go under source pinning: finite, above zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Epsilon(pub(crate) f64);

impl Epsilon {
    fn new(value: f64) -> Result<Self, InvalidValue> {
        if value.is_finite() && value > 0.0 {
            Ok(Self(value))
        } else {
            Err(InvalidValue::NotPositive { value })
        }
    }
}

impl FromStr for Epsilon {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let value = text
            .trim()
            .parse::<f64>()
            .map_err(|cause| InvalidValue::Number {
                text: text.to_owned(),
                cause,
            })?;
        Self::new(value)
    }
}

impl<'de> Deserialize<'de> for Epsilon {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(f64::deserialize(deserializer)?).map_err(de::Error::custom)
    }
}

/// The path (and query) an active health check requests: absolute, as `/health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckPath(pub(crate) http::uri::PathAndQuery);

impl FromStr for CheckPath {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refused = || InvalidValue::Path {
            text: text.to_owned(),
        };
        if !text.starts_with('/') {
            return Err(refused());
        }
        text.parse().map(Self).map_err(|_| refused())
    }
}

impl<'de> Deserialize<'de> for CheckPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// The status an active health check expects, 100 to 599.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CheckStatus(pub(crate) http::StatusCode);

impl FromStr for CheckStatus {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.trim()
            .parse::<u16>()
            .ok()
            .and_then(|code| http::StatusCode::from_u16(code).ok())
            .filter(|status| (100..600).contains(&status.as_u16()))
            .map(Self)
            .ok_or_else(|| InvalidValue::Status {
                text: text.to_owned(),
            })
    }
}

impl<'de> Deserialize<'de> for CheckStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u16::deserialize(deserializer)?
            .to_string()
            .parse()
            .map_err(de::Error::custom)
    }
}

/// A network (`10.0.0.0/8`, `2001:db8::/32`) or one address (`192.0.2.7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr(ipnet::IpNet);

impl Cidr {
    /// Whether `ip` is in it; an IPv4 address seen as IPv4-mapped IPv6 (a dual-stack listener)
    /// counts as IPv4.
    pub(crate) fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        text.parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(Self)
            .map_err(|_| InvalidValue::Network {
                text: text.to_owned(),
            })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// Reads a TOML string with `T`'s `FromStr`; anything but a string is refused by name.
struct Words<T>(PhantomData<T>);

impl<T> Visitor<'_> for Words<T>
where
    T: FromStr<Err = InvalidValue>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a duration in a string, such as "500ms" or "2s""#)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        text.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for AnyDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(Words(PhantomData))
    }
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(Words(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_the_human_way() {
        assert_eq!(
            "500ms".parse::<Timeout>().unwrap(),
            Timeout(Duration::from_millis(500))
        );
        assert_eq!(
            "1m 30s".parse::<Timeout>().unwrap(),
            Timeout(Duration::from_secs(90))
        );
        assert_eq!(
            "0s".parse::<AnyDuration>().unwrap(),
            AnyDuration(Duration::ZERO)
        );
        let zero = "0ms".parse::<Timeout>().unwrap_err().to_string();
        assert!(zero.contains("above 0"), "{zero}");
        let bare = "500".parse::<Timeout>().unwrap_err().to_string();
        assert!(bare.contains(r#""500""#) && bare.contains("2s"), "{bare}");
    }

    #[test]
    fn check_paths_are_absolute_and_statuses_real() {
        assert_eq!(
            "/health?deep=1".parse::<CheckPath>().unwrap().0,
            "/health?deep=1"
        );
        for bad in ["health", "", "http://a/health", "/he alth"] {
            let error = bad.parse::<CheckPath>().unwrap_err().to_string();
            assert!(error.contains("is not a path"), "{bad}: {error}");
        }
        assert_eq!(
            "204".parse::<CheckStatus>().unwrap().0,
            http::StatusCode::NO_CONTENT
        );
        for bad in ["99", "600", "ok", "1000"] {
            assert!(bad.parse::<CheckStatus>().is_err(), "{bad}");
        }
    }

    #[test]
    fn networks_and_single_addresses() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.2.3".parse().unwrap()),
            "IPv4-mapped"
        );
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let one: Cidr = "2001:db8::7".parse().unwrap();
        assert!(one.contains("2001:db8::7".parse().unwrap()));
        assert!(!one.contains("2001:db8::8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "ten", ""] {
            let error = bad.parse::<Cidr>().unwrap_err().to_string();
            assert!(error.contains("not a network"), "{bad}: {error}");
        }
    }

    #[test]
    fn epsilon_is_finite_and_above_zero() {
        assert_eq!("0.5".parse::<Epsilon>().unwrap(), Epsilon(0.5));
        for bad in ["0", "-1", "NaN", "inf", "lots"] {
            let error = bad.parse::<Epsilon>().unwrap_err().to_string();
            assert!(
                error.contains("above 0") || error.contains("not a number"),
                "{bad}: {error}"
            );
        }
    }
}
