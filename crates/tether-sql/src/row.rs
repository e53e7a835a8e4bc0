//! Turning the columns of a session row into a [`Record`] or a [`SessionInfo`], refusing what
//! no write produces, and a session's principal and last use into columns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use tether_core::{Expiry, Id, Principal, Record, Seen, SessionHandle, SessionInfo, Timestamp};

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

/// The columns of a session's principal and last use, as written (`principal`, `handle`,
/// `last_seen`, `device`, `address`). `last_seen` is set exactly when a use is recorded; the
/// device and address go with it.
#[derive(Debug)]
pub(crate) struct Binding<'a> {
    pub(crate) principal: Option<&'a str>,
    pub(crate) last_seen: Option<i64>,
    pub(crate) device: Option<&'a str>,
    pub(crate) address: Option<String>,
}

impl<'a> Binding<'a> {
    /// The columns of `principal` and `seen`, either absent.
    pub(crate) fn of(principal: Option<&'a Principal>, seen: Option<&'a Seen>) -> Self {
        Self {
            principal: principal.map(Principal::as_str),
            last_seen: seen.map(|seen| millis(seen.at())),
            device: seen.and_then(Seen::device),
            address: seen
                .and_then(Seen::address)
                .map(|address| address.to_string()),
        }
    }
}

/// The handle column of the session `id`: its [`SessionHandle`], 16 bytes.
///
/// The handle is stored rather than derived from the ids of a principal's rows when a request
/// names one: `revoke` and `revoke_all` then find their rows by principal and handle in the one
/// `DELETE` that also checks principal and deadline (deriving would need a `SELECT` of the ids
/// first, and a second statement), a listing never reads an id out of the database, and the
/// `(principal, handle)` index finds one session of a principal with many. The price: 17 bytes
/// a row, and every write that sets an id (`create`, `cycle`) or binds a principal sets the
/// handle with it.
pub(crate) fn handle_bytes(id: &Id) -> Vec<u8> {
    SessionHandle::of(id).as_bytes().to_vec()
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
        let (created_at, expiry) = self.decode(now)?;
        Ok(Record::new(id, expiry, created_at).with_data(data))
    }

    /// The creation time and expiry these columns describe, read at `now`.
    fn decode(self, now: Timestamp) -> Result<(Timestamp, Expiry), Error> {
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
        Ok((
            Timestamp::from_millis(created_at),
            Expiry::from_parts(expires, idle, absolute),
        ))
    }
}

/// The principal a `principal` column names, refusing text [`Principal::new`] refuses (empty,
/// too long, control characters).
pub(crate) fn decode_principal(text: Option<String>) -> Result<Option<Principal>, Error> {
    text.map(|text| {
        Principal::try_from(text).map_err(|e| Error::CorruptRow {
            column: "principal",
            source: Box::new(e),
        })
    })
    .transpose()
}

/// The last use the `last_seen`, `device` and `address` columns describe: none when
/// `last_seen` is `NULL` (and then so must the others be). The device label is cleaned as
/// [`Seen::with_device`] does.
pub(crate) fn decode_seen(
    last_seen: Option<i64>,
    device: Option<String>,
    address: Option<String>,
) -> Result<Option<Seen>, Error> {
    let Some(at) = last_seen else {
        if device.is_some() || address.is_some() {
            return Err(corrupt("last_seen", BadValue::SeenWithoutTime));
        }
        return Ok(None);
    };
    let mut seen = Seen::new(Timestamp::from_millis(non_negative("last_seen", at)?));
    if let Some(device) = device {
        seen = seen.with_device(&device);
    }
    if let Some(address) = address {
        let address: IpAddr = address.parse().map_err(|e| Error::CorruptRow {
            column: "address",
            source: Box::new(e),
        })?;
        seen = seen.with_address(address);
    }
    Ok(Some(seen))
}

/// The [`SessionHandle`] a `handle` column holds: exactly 16 bytes.
pub(crate) fn decode_handle(bytes: Option<Vec<u8>>) -> Result<SessionHandle, Error> {
    let bytes = bytes.ok_or_else(|| corrupt("handle", BadValue::Null))?;
    let bytes: [u8; 16] = bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| corrupt("handle", BadValue::HandleLength(bytes.len())))?;
    Ok(SessionHandle::from_bytes(bytes))
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
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let meta = meta(first)?;
    let principal = decode_principal(column(first, "principal")?)?;
    let seen = decode_seen(
        column(first, "last_seen")?,
        column(first, "device")?,
        column(first, "address")?,
    )?;
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
    let record = meta
        .into_record(id, data, now)?
        .with_principal(principal)
        .with_seen(seen);
    Ok(Some(record))
}

/// The rows of a `sessions_of` query (`handle`, the metadata and the last-use columns) as
/// [`SessionInfo`]s, in their order. A row that does not decode is left out and logged: one
/// bad row must not hide a user's other sessions from them.
pub(crate) fn decode_infos<R>(rows: &[R], now: Timestamp) -> Vec<SessionInfo>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .filter_map(|row| match decode_info(row, now) {
            Ok(info) => Some(info),
            Err(error) => {
                // The handle names the row without its id (a credential), when it decodes.
                let handle = column(row, "handle")
                    .and_then(decode_handle)
                    .ok()
                    .map(|handle| handle.to_string());
                tracing::warn!(
                    operation = "sessions_of",
                    handle,
                    error = %tether_core::error_chain(&error),
                    "a stored session row does not decode; it is left out of the listing"
                );
                None
            }
        })
        .collect()
}

fn decode_info<R>(row: &R, now: Timestamp) -> Result<SessionInfo, Error>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let handle = decode_handle(column(row, "handle")?)?;
    let (created_at, expiry) = meta(row)?.decode(now)?;
    let seen = decode_seen(
        column(row, "last_seen")?,
        column(row, "device")?,
        column(row, "address")?,
    )?;
    Ok(SessionInfo::new(handle, created_at, expiry.expires_at()).with_seen(seen))
}

fn meta<R>(row: &R) -> Result<Meta, Error>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Meta {
        created_at: column(row, "created_at")?,
        expires_at: column(row, "expires_at")?,
        idle_timeout_ms: column(row, "idle_timeout_ms")?,
        absolute_deadline: column(row, "absolute_deadline")?,
    })
}

pub(crate) fn column<R, T>(row: &R, name: &'static str) -> Result<T, Error>
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

    fn column_of(error: Error) -> &'static str {
        match error {
            Error::CorruptRow { column, .. } => column,
            other => panic!("not a corrupt row: {other:?}"),
        }
    }

    #[test]
    fn principal_and_seen_round_trip_through_their_columns() {
        let alice = Principal::new("alice@example.com").unwrap();
        let seen = Seen::new(Timestamp::from_millis(1_700_000_000_000))
            .with_device("Firefox")
            .with_address("2001:db8::7".parse().unwrap());
        let columns = Binding::of(Some(&alice), Some(&seen));
        assert_eq!(columns.address.as_deref(), Some("2001:db8::7"));
        assert_eq!(
            decode_principal(columns.principal.map(str::to_owned)).unwrap(),
            Some(alice.clone())
        );
        let read = decode_seen(
            columns.last_seen,
            columns.device.map(str::to_owned),
            columns.address,
        )
        .unwrap();
        assert_eq!(read, Some(seen));
        let none = Binding::of(None, None);
        assert_eq!(decode_principal(None).unwrap(), None);
        assert_eq!(
            decode_seen(none.last_seen, None, none.address).unwrap(),
            None
        );
        let bare = decode_seen(Some(5), None, None).unwrap().unwrap();
        assert_eq!((bare.device(), bare.address()), (None, None));
        // A label is cleaned when read back, as when it was made.
        let cleaned = decode_seen(Some(5), Some(" a\u{7}b ".into()), None).unwrap();
        assert_eq!(cleaned.unwrap().device(), Some("a b"));
    }

    #[test]
    fn refuses_principals_and_uses_no_write_produces() {
        for bad in ["", "a\nb", "\u{85}", &"x".repeat(257)] {
            let error = decode_principal(Some(bad.to_owned())).unwrap_err();
            assert_eq!(column_of(error), "principal", "{bad:?}");
        }
        for (last_seen, device, address, column) in [
            (Some(-1), None, None, "last_seen"),
            (None, Some("Firefox"), None, "last_seen"),
            (None, None, Some("::1"), "last_seen"),
            (Some(5), None, Some("not an address"), "address"),
            (Some(5), None, Some("10.0.0.300"), "address"),
            (Some(5), None, Some(""), "address"),
        ] {
            let error = decode_seen(
                last_seen,
                device.map(str::to_owned),
                address.map(str::to_owned),
            )
            .unwrap_err();
            assert_eq!(column_of(error), column);
        }
    }

    #[test]
    fn a_handle_is_sixteen_bytes() {
        let id = Id::from_bytes([3; 16]);
        assert_eq!(
            decode_handle(Some(handle_bytes(&id))).unwrap(),
            SessionHandle::of(&id)
        );
        for bad in [None, Some(vec![]), Some(vec![1; 15]), Some(vec![1; 17])] {
            assert_eq!(column_of(decode_handle(bad).unwrap_err()), "handle");
        }
    }
}
