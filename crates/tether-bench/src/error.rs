//! Errors of the bench: what it was doing when something failed, over the cause.

use tether_core::BoxError;

/// What the bench was doing when an error happened, with the error as its source.
#[derive(Debug, thiserror::Error)]
#[error("{doing}")]
pub(crate) struct Failed {
    doing: String,
    #[source]
    source: BoxError,
}

/// Says what was being done when a `Result` failed.
pub(crate) trait Doing<T> {
    /// Wraps the error in [`Failed`], `what` saying what was being done (and on what).
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, BoxError>;
}

impl<T, E: Into<BoxError>> Doing<T> for Result<T, E> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, BoxError> {
        self.map_err(|source| {
            Failed {
                doing: what(),
                source: source.into(),
            }
            .into()
        })
    }
}

/// The error and its sources, `error: source: source of source`, each as it displays itself
/// (a source that the message before it already ends with is left out).
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some errors repeat their source in their own message: say it once.
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_what_was_done_and_why_it_failed() {
        let failed: Result<(), BoxError> = Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
            .doing(|| "binding 127.0.0.1:80".to_owned());
        let error = failed.unwrap_err();
        assert_eq!(
            chain(&*error),
            format!(
                "binding 127.0.0.1:80: {}",
                std::io::Error::from(std::io::ErrorKind::AddrInUse)
            )
        );
    }

    #[test]
    fn a_source_the_message_repeats_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("refused: {0}")]
        struct Repeats(#[source] std::io::Error);
        let io = std::io::Error::other("no");
        let failed: Result<(), BoxError> = Err(Repeats(io)).doing(|| "connecting".to_owned());
        assert_eq!(chain(&*failed.unwrap_err()), "connecting: refused: no");
    }
}
