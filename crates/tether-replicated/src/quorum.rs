//! How many members a node must see before it takes writes: the guard against a network split
//! in which both sides acknowledge writes.

use std::fmt;
use std::str::FromStr;

/// How many members of the cluster, itself included, a node must see in its view to act as
/// the primary of a write ([`NodeConfig::with_quorum`](crate::NodeConfig::with_quorum)).
///
/// With [`Quorum::Majority`], the side of a network split that holds fewer than half the
/// configured nodes refuses writes (a transient error: the layer answers `503`), so only one
/// side acknowledges writes and nothing it acknowledged is overwritten when the split heals.
/// The price: that side answers no write while the split lasts, and a cluster that lost half
/// its nodes at once stops taking writes. With [`Quorum::Off`] (the default, as in Tomcat's
/// session replication) both sides keep serving, and when the split heals each key of a session
/// written on both sides keeps the value written last (hybrid logical clock): a write made on
/// one side to a key the other side also wrote is lost.
///
/// # Example
///
/// ```
/// use tether_replicated::Quorum;
///
/// let quorum: Quorum = "majority".parse()?;
/// assert_eq!(quorum.required(5), 3);
/// assert_eq!(quorum.required(4), 3);
/// assert_eq!("2".parse::<Quorum>()?, Quorum::AtLeast(2));
/// assert_eq!(Quorum::Off.required(5), 0);
/// assert_eq!(Quorum::AtLeast(2).to_string(), "2");
/// # Ok::<(), tether_replicated::ParseQuorumError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Quorum {
    /// No quorum: every node takes writes, whatever it sees.
    #[default]
    Off,
    /// More than half of the configured nodes (this one and its peers).
    Majority,
    /// At least this many members.
    AtLeast(usize),
}

impl Quorum {
    /// Members needed in a cluster of `configured` nodes (this one included).
    pub fn required(self, configured: usize) -> usize {
        match self {
            Self::Off => 0,
            Self::Majority => configured / 2 + 1,
            Self::AtLeast(n) => n,
        }
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Majority => f.write_str("majority"),
            Self::AtLeast(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Quorum {
    type Err = ParseQuorumError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "off" => Ok(Self::Off),
            "majority" => Ok(Self::Majority),
            number => match number.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Self::AtLeast(n)),
                _ => Err(ParseQuorumError {
                    input: text.to_owned(),
                }),
            },
        }
    }
}

/// A [`Quorum`] that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown quorum {input:?}: expected off, majority or a number of members from 1")]
pub struct ParseQuorumError {
    input: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_prints_and_refuses_the_rest() {
        for quorum in [Quorum::Off, Quorum::Majority, Quorum::AtLeast(3)] {
            assert_eq!(quorum.to_string().parse::<Quorum>(), Ok(quorum));
        }
        for bad in ["", "0", "-1", "half", "Majority", "2.5"] {
            let error = bad.parse::<Quorum>().unwrap_err();
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn a_majority_is_more_than_half() {
        let needed: Vec<usize> = (1..=6).map(|n| Quorum::Majority.required(n)).collect();
        assert_eq!(needed, [1, 2, 2, 3, 3, 4]);
    }
}
