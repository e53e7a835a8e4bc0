//! Turning the columns of a session row into a [`Record`], refusing what no write produces.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tether_core::{Expiry, Id, Record, Timestamp};

use crate::error::{BadValue, Error};

/// How far a deadline may lie beyond `now + idle timeout`: the clocks of the servers that wrote
/// it and of the one reading it may disagree by this much.
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// The metadata columns of a session row, as read.
#[derive(Debug)]
pub(crate) struct Meta {
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) idle_timeout_ms: i64,
    pub(crate) absolute_deadline: Option<i64>,
}

fn corrupt(column: &'static str, bad: BadValue) -> Error {
    Error::CorruptRow {
        column,
        source: Box::new(bad),
    }
}

fn non_negative(column: &'static str, value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| corrupt(column, BadValue::Negative(value)))
}

/// Milliseconds as stored: Unix milliseconds fit an `i64` until the year 292 million.
pub(crate) fn millis(timestamp: Timestamp) -> i64 {
    i64::try_from(timestamp.as_millis()).unwrap_or(i64::MAX)
}

/// A duration as stored, in milliseconds.
pub(crate) fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Meta {
    /// The metadata of a record about to be written.
    pub(crate) fn of(created_at: Timestamp, expiry: &Expiry) -> Self {
        Self {
            created_at: millis(created_at),
            expires_at: millis(expiry.expires_at()),
            idle_timeout_ms: duration_millis(expiry.idle_timeout()),
            absolute_deadline: expiry.absolute_deadline().map(millis),
        }
    }

    /// The record these columns describe, read at `now`, or the reason they describe none.
    pub(crate) fn into_record(
        self,
        id: Id,
        data: HashMap<String, Bytes>,
        now: Timestamp,
    ) -> Result<Record, Error> {
        let created_at = non_negative("created_at", self.created_at)?;
        let expires_at = non_negative("expires_at", self.expires_at)?;
        let idle = Duration::from_millis(non_negative("idle_timeout_ms", self.idle_timeout_ms)?);
        let absolute = match self.absolute_deadline {
            Some(abs) => {
                let millis = non_negative("absolute_deadline", abs)?;
                if expires_at > millis {
                    return Err(corrupt(
                        "expires_at",
                        BadValue::PastAbsolute {
                            expires_at: self.expires_at,
                            absolute_deadline: abs,
                        },
                    ));
                }
                Some(Timestamp::from_millis(millis))
            }
            None => None,
        };
        let expires = Timestamp::from_millis(expires_at);
        if expires > now + idle + CLOCK_SKEW {
            return Err(corrupt(
                "expires_at",
                BadValue::TooFarAhead {
                    expires_at: self.expires_at,
                    idle_timeout_ms: self.idle_timeout_ms,
                },
            ));
        }
        let expiry = Expiry::from_parts(expires, idle, absolute);
        Ok(Record::new(id, expiry, Timestamp::from_millis(created_at)).with_data(data))
    }
}

/// The rows of the load query (one per key, or one with `NULL` key and value when the session
/// has no keys) as a record; `None` when there are none.
pub(crate) fn decode_rows<R>(id: Id, rows: &[R], now: Timestamp) -> Result<Option<Record>, Error>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let meta = Meta {
        created_at: column(first, "created_at")?,
        expires_at: column(first, "expires_at")?,
        idle_timeout_ms: column(first, "idle_timeout_ms")?,
        absolute_deadline: column(first, "absolute_deadline")?,
    };
    let mut data = HashMap::with_capacity(rows.len());
    for row in rows {
        let key: Option<Vec<u8>> = column(row, "key")?;
        let value: Option<Vec<u8>> = column(row, "value")?;
        match (key, value) {
            (Some(key), Some(value)) => {
                let key = String::from_utf8(key).map_err(|e| Error::CorruptRow {
                    column: "key",
                    source: Box::new(e),
                })?;
                data.insert(key, Bytes::from(value));
            }
            // The outer join's row of a session without keys.
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::CorruptRow {
                    column: "value",
                    source: Box::new(BadValue::Null),
                });
            }
        }
    }
    meta.into_record(id, data, now).map(Some)
}

fn column<R, T>(row: &R, name: &'static str) -> Result<T, Error>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    T: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    row.try_get(name).map_err(|e| Error::CorruptRow {
        column: name,
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(created_at: i64, expires_at: i64, idle: i64, abs: Option<i64>) -> Meta {
        Meta {
            created_at,
            expires_at,
            idle_timeout_ms: idle,
            absolute_deadline: abs,
        }
    }

    #[test]
    fn refuses_what_no_write_produces() {
        let id = Id::from_bytes([7; 16]);
        let now = Timestamp::from_millis(1_000_000);
        let ok = meta(900_000, 1_500_000, 600_000, Some(2_000_000));
        let record = ok.into_record(id, HashMap::new(), now).unwrap();
        assert_eq!(
            record.expiry.expires_at(),
            Timestamp::from_millis(1_500_000)
        );
        assert_eq!(record.created_at, Timestamp::from_millis(900_000));
        for bad in [
            meta(-1, 1_500_000, 600_000, None),
            meta(0, -5, 600_000, None),
            meta(0, 1_500_000, -1, None),
            meta(0, 1_500_000, 600_000, Some(-1)),
            meta(0, 1_500_000, 600_000, Some(1_400_000)),
            meta(0, i64::MAX, 600_000, None),
        ] {
            let error = bad.into_record(id, HashMap::new(), now).unwrap_err();
            assert!(matches!(error, Error::CorruptRow { .. }), "{error:?}");
        }
    }
}
