//! Errors: setting the store up, and sorting sqlx errors into tether's kinds.

use std::time::Duration;

/// What went wrong in the SQL store.
///
/// Building, connecting and [`migrate`](crate::PostgresStore::migrate) return it directly. Session
/// operations return a [`tether_core::Error`] whose kind says what the layer does about it, with
/// this error as its source (see [`into_store_error`](Self::into_store_error)).
///
/// # Example
///
/// ```
/// use tether_sql::Error;
///
/// let error = Error::InvalidName { what: "table prefix", name: "drop table;".into() };
/// assert!(!error.into_store_error().is_transient());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A schema name or table prefix is not a plain SQL identifier (ASCII letters, digits and
    /// `_`, not starting with a digit, at most [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) bytes).
    #[error(
        "invalid {what} {name:?}: use ASCII letters, digits and `_`, not starting with a digit"
    )]
    InvalidName {
        /// `schema` or `table prefix`.
        what: &'static str,
        /// The name as given.
        name: String,
    },
    /// The database could not be reached, or refused the connection.
    #[error("could not connect to the session database")]
    Connect(#[source] sqlx::Error),
    /// Creating the session tables failed.
    #[error("could not create the session tables")]
    Migrate(#[source] sqlx::Error),
    /// A statement of a session operation failed.
    #[error("session {operation} failed")]
    Query {
        /// `load`, `create`, `apply`, `touch`, `update_key`, `delete`, `cycle`, `sessions_of`,
        /// `revoke`, `revoke_all`, `sweep`, `trim` (deleting events past the retention) or
        /// `events` (a consumer reading them).
        operation: &'static str,
        /// What sqlx reported.
        #[source]
        source: sqlx::Error,
    },
    /// A stored row does not decode into a session: a column of the wrong type, a negative
    /// timestamp, a deadline past the absolute deadline or further ahead than its idle timeout
    /// allows, a principal [`Principal::new`](tether_core::Principal::new) refuses, an address
    /// that does not parse. The session is treated as absent (the layer starts a new one);
    /// `sessions_of` leaves it out of its listing.
    #[error("stored session row is corrupt: {column}")]
    CorruptRow {
        /// The column that does not decode.
        column: &'static str,
        /// What is wrong with it: sqlx's decode error, a [`BadValue`], the
        /// [`InvalidPrincipal`](tether_core::InvalidPrincipal) of a principal, or the
        /// [`AddrParseError`](std::net::AddrParseError) of an address.
        #[source]
        source: tether_core::BoxError,
    },
    /// A row of the events table is not an event this version writes: an unknown kind, a
    /// handle that is not 16 bytes, a principal [`Principal::new`](tether_core::Principal::new)
    /// refuses, a time that does not decode. The consumer reports it once as
    /// [`tether_core::Error::Corrupt`], logs it, and goes on with the next event.
    #[error("stored session event {id} is corrupt: {column}")]
    CorruptEvent {
        /// The event's `id` column.
        id: i64,
        /// The column that does not decode.
        column: &'static str,
        /// What is wrong with it, as for [`CorruptRow`](Self::CorruptRow).
        #[source]
        source: tether_core::BoxError,
    },
    /// An operation took longer than the operation timeout.
    #[error("session {operation} took longer than {timeout:?}")]
    Timeout {
        /// The operation.
        operation: &'static str,
        /// The operation timeout.
        timeout: Duration,
    },
}

/// Why a stored value that sqlx decoded is still not a valid part of a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BadValue {
    /// A timestamp or duration column holds a negative number.
    #[error("negative value {0}")]
    Negative(i64),
    /// The deadline lies after the absolute deadline, which no write produces.
    #[error("deadline {expires_at} is after the absolute deadline {absolute_deadline}")]
    PastAbsolute {
        /// The deadline, Unix milliseconds.
        expires_at: i64,
        /// The absolute deadline, Unix milliseconds.
        absolute_deadline: i64,
    },
    /// A key without a value, or a value without a key; a session handle that is `NULL`.
    #[error("a column that must hold a value is NULL")]
    Null,
    /// A session handle that is not 16 bytes long.
    #[error("a session handle is 16 bytes, not {0}")]
    HandleLength(usize),
    /// A device or address recorded without the time of the use (`last_seen`).
    #[error("a device or address without last_seen")]
    SeenWithoutTime,
    /// An event kind this version does not write.
    #[error("unknown session event kind {0:?}")]
    EventKind(String),
    /// The deadline lies further ahead than the idle timeout (plus clock skew) allows.
    #[error("deadline {expires_at} is more than the idle timeout of {idle_timeout_ms} ms ahead")]
    TooFarAhead {
        /// The deadline, Unix milliseconds.
        expires_at: i64,
        /// The idle timeout, milliseconds.
        idle_timeout_ms: i64,
    },
}

impl Error {
    /// This error as a [`tether_core::Error`], of the kind that says what the layer does:
    ///
    /// | cause | kind |
    /// |---|---|
    /// | connection lost or refused, pool exhausted or closed, I/O, server shutting down, too many connections, disk full, read-only transaction, statement or lock timeout, serialization failure, deadlock detected, `SQLITE_BUSY`/`LOCKED`/`FULL`/`READONLY`/`IOERR` | [`Unavailable`](tether_core::Error::Unavailable) (transient: `503`, the next request tries again) |
    /// | the operation timeout | [`Timeout`](tether_core::Error::Timeout) (transient) |
    /// | a row that does not decode | [`Corrupt`](tether_core::Error::Corrupt) (the session is treated as absent; an event is skipped) |
    /// | anything else (a missing table, a bad name, a permission) | [`Backend`](tether_core::Error::Backend) |
    pub fn into_store_error(self) -> tether_core::Error {
        match &self {
            Self::Timeout { timeout, .. } => tether_core::Error::Timeout(*timeout),
            Self::CorruptRow { .. } | Self::CorruptEvent { .. } => {
                tether_core::Error::Corrupt(Box::new(self))
            }
            Self::Connect(source) | Self::Migrate(source) | Self::Query { source, .. } => {
                if is_corrupt(source) {
                    tether_core::Error::Corrupt(Box::new(self))
                } else if is_transient(source) {
                    tether_core::Error::Unavailable(Box::new(self))
                } else {
                    tether_core::Error::Backend(Box::new(self))
                }
            }
            Self::InvalidName { .. } => tether_core::Error::Backend(Box::new(self)),
        }
    }

    pub(crate) fn query(operation: &'static str) -> impl Fn(sqlx::Error) -> Self + Copy {
        move |source| Self::Query { operation, source }
    }
}

/// Whether a retry (on another connection, a moment later) can succeed.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_code(&code)),
        _ => false,
    }
}

/// SQLSTATEs (PostgreSQL) and primary result codes (SQLite) of passing conditions.
fn transient_code(code: &str) -> bool {
    // PostgreSQL: 08 connection exception, 53 insufficient resources (disk full, out of memory,
    // too many connections), 57P01-57P05 shutdown, crash and idle-session termination, 57014 a
    // statement cancelled (by `statement_timeout`), 55P03 a lock not obtained in time, 25006
    // read-only transaction (a standby, or a primary demoted by a failover), 40001
    // serialization failure, 40P01 deadlock.
    if code.len() == 5 && (code.starts_with("08") || code.starts_with("53")) {
        return true;
    }
    if matches!(
        code,
        "57P01" | "57P02" | "57P03" | "57P05" | "57014" | "55P03" | "25006" | "40001" | "40P01"
    ) {
        return true;
    }
    // SQLite extended result codes (at most four digits, so never a SQLSTATE): the low byte is
    // the primary code. 5 BUSY, 6 LOCKED, 8 READONLY, 10 IOERR, 13 FULL.
    code.len() < 5
        && code
            .parse::<u32>()
            .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 8 | 10 | 13))
}

fn is_corrupt(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_errors() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(Error::query("load")(io).into_store_error().is_transient());
        let pool = Error::query("load")(sqlx::Error::PoolTimedOut);
        assert!(pool.into_store_error().is_transient());
        let missing = Error::query("load")(sqlx::Error::RowNotFound);
        assert_eq!(
            missing.into_store_error().kind(),
            tether_core::ErrorKind::Backend
        );
        let decode = Error::query("load")(sqlx::Error::Decode("bad".into()));
        assert_eq!(
            decode.into_store_error().kind(),
            tether_core::ErrorKind::Corrupt
        );
        let timeout = Error::Timeout {
            operation: "load",
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            timeout.into_store_error().kind(),
            tether_core::ErrorKind::Timeout
        );
    }

    #[test]
    fn sorts_codes() {
        for code in [
            "08006", "57P01", "57014", "53100", "25006", "40P01", "5", "517", "13", "8",
        ] {
            assert!(transient_code(code), "{code}");
        }
        for code in ["42P01", "23505", "42501", "1", "19", "2067"] {
            assert!(!transient_code(code), "{code}");
        }
    }
}
