//! Settings written as words: how [`Pinning`](crate::Pinning), [`Failover`](crate::Failover) and
//! [`BackendState`](crate::BackendState) read and print themselves, and the error when a word is
//! not one of theirs.

/// A word that names no [`Pinning`](crate::Pinning), [`Failover`](crate::Failover) or
/// [`BackendState`](crate::BackendState): it says what was given and what is accepted.
///
/// # Example
///
/// ```
/// use tether_sticky::Pinning;
///
/// let error = "random".parse::<Pinning>().unwrap_err();
/// assert_eq!(error.input(), "random");
/// assert_eq!(error.expected(), ["cookie", "session-id", "source"]);
/// assert_eq!(
///     error.to_string(),
///     r#"unknown pinning "random"; expected cookie, session-id or source"#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {input:?}; expected {}", one_of(.expected))]
pub struct ParseError {
    what: &'static str,
    input: String,
    expected: &'static [&'static str],
}

impl ParseError {
    pub(crate) fn new(what: &'static str, input: &str, expected: &'static [&'static str]) -> Self {
        Self {
            what,
            input: input.to_owned(),
            expected,
        }
    }

    /// The text that was given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The words that are accepted, as [`Display`](std::fmt::Display) prints them.
    pub fn expected(&self) -> &'static [&'static str] {
        self.expected
    }
}

/// `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Gives a fieldless enum `Display`, `FromStr` (error [`ParseError`]) and, with the `serde`
/// feature, `Serialize`/`Deserialize` as the same words. Each variant has one name it prints and
/// reads, and may have aliases it reads too.
macro_rules! words {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal $(| $alias:literal)*),+ $(,)? }) => {
        impl $ty {
            /// The words [`FromStr`](std::str::FromStr) reads and
            /// [`Display`](std::fmt::Display) prints, one per value.
            pub const NAMES: &'static [&'static str] = &[$($name),+];
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $name,)+
                })
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::parse::ParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name $(| $alias)* => Ok(Self::$variant),)+
                    other => Err($crate::parse::ParseError::new($what, other, Self::NAMES)),
                }
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use words;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackendState, Failover, Pinning};

    #[test]
    fn every_name_reads_back_as_what_printed_it() {
        for pinning in [Pinning::Cookie, Pinning::SessionId, Pinning::Source] {
            assert_eq!(pinning.to_string().parse::<Pinning>(), Ok(pinning));
        }
        for failover in [Failover::Redistribute, Failover::Strict, Failover::Persist] {
            assert_eq!(failover.to_string().parse::<Failover>(), Ok(failover));
        }
        for state in [
            BackendState::Ready,
            BackendState::Drain,
            BackendState::Maintenance,
        ] {
            assert_eq!(state.to_string().parse::<BackendState>(), Ok(state));
        }
        assert_eq!(
            "maint".parse::<BackendState>(),
            Ok(BackendState::Maintenance)
        );
        assert_eq!(Pinning::SessionId.to_string(), "session-id");
    }

    #[test]
    fn unknown_words_name_the_input_and_the_choices() {
        assert_eq!(
            "sticky".parse::<Failover>().unwrap_err().to_string(),
            r#"unknown failover policy "sticky"; expected redistribute, strict or persist"#
        );
        let error = "off".parse::<BackendState>().unwrap_err();
        assert_eq!(error.input(), "off");
        assert_eq!(
            error.to_string(),
            r#"unknown backend state "off"; expected ready, drain or maintenance"#
        );
        assert_eq!(one_of(&["a"]), "a");
        assert_eq!(one_of(&[]), "");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_uses_the_same_words() {
        assert_eq!(
            serde_json::to_string(&Pinning::SessionId).unwrap(),
            r#""session-id""#
        );
        assert_eq!(
            serde_json::from_str::<BackendState>(r#""drain""#).unwrap(),
            BackendState::Drain
        );
        let error = serde_json::from_str::<Failover>(r#""later""#).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("expected redistribute, strict or persist"),
            "{error}"
        );
    }
}
