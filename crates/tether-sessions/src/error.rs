//! Errors of session operations.

/// Why a session operation failed.
///
/// # Example
///
/// ```
/// use tether_sessions::Error;
///
/// let err = Error::TooLarge { size: 70_000, limit: 65_536 };
/// assert!(!err.is_transient());
/// assert_eq!(
///     err.to_string(),
///     "the session would grow to 70000 encoded bytes, past its limit of 65536",
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed, or a value could not be encoded or decoded.
    #[error(transparent)]
    Core(#[from] tether_core::Error),
    /// The insert would make the session larger than the configured limit; the session is
    /// unchanged.
    #[error("the session would grow to {size} encoded bytes, past its limit of {limit}")]
    TooLarge {
        /// Encoded size the session would have had.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The change came after the response was produced, when the session had been saved
    /// already; it was not applied.
    #[error("the response was already produced; a session change now would be lost")]
    Finished,
}

impl Error {
    /// Whether retrying later may succeed: the store was unreachable or slow.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_transient())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
