//! A backend's share of new sessions, set by an operator.

/// A backend's weight, 0 to 256 as in HAProxy: it takes new sessions in proportion to it
/// (cookie and source pinning; session-id pinning follows the session store's placement and
/// ignores it). 0 takes no new session but keeps serving the ones pinned to it, like
/// [`BackendState::Drain`](crate::BackendState::Drain). The default is 1.
///
/// ```
/// use tether_sticky::Weight;
///
/// let heavy: Weight = "3".parse()?;
/// assert_eq!(heavy.get(), 3);
/// assert_eq!(Weight::default().to_string(), "1");
/// assert!("257".parse::<Weight>().is_err());
/// # Ok::<(), tether_sticky::InvalidWeight>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Weight(u16);

/// A weight outside 0 to 256, or not a number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("backend weight {0:?}: expected a whole number from 0 to 256")]
pub struct InvalidWeight(String);

impl Weight {
    /// The highest weight.
    pub const MAX: u16 = 256;

    /// `weight` if it is at most [`Weight::MAX`].
    ///
    /// # Errors
    ///
    /// [`InvalidWeight`] above it.
    pub fn new(weight: u16) -> Result<Self, InvalidWeight> {
        if weight > Self::MAX {
            return Err(InvalidWeight(weight.to_string()));
        }
        Ok(Self(weight))
    }

    /// The weight as a number.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl Default for Weight {
    fn default() -> Self {
        Self(1)
    }
}

impl std::fmt::Display for Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Weight {
    type Err = InvalidWeight;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let weight = s.trim().parse().map_err(|_| InvalidWeight(s.to_owned()))?;
        Self::new(weight).map_err(|_| InvalidWeight(s.to_owned()))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Weight {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Weight {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let weight = u16::deserialize(deserializer)?;
        Self::new(weight).map_err(serde::de::Error::custom)
    }
}
