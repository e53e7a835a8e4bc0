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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_what_was_done_and_why_it_failed() {
        let failed: Result<(), BoxError> = Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
            .doing(|| "binding 127.0.0.1:80".to_owned());
        let error = failed.unwrap_err();
        assert_eq!(
            tether_core::error_chain(&*error).to_string(),
            format!(
                "binding 127.0.0.1:80: {}",
                std::io::Error::from(std::io::ErrorKind::AddrInUse)
            )
        );
    }
}
