//! How a session is laid out in Redis: one hash per session, fields `:<key>` for data, `@m`
//! for metadata, `@p` for the principal and `@s` for the last use. The layout is documented
//! once, in the crate docs ("How a session is stored"); this module reads and writes it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use tether_core::{
    Changes, Error, Expiry, Id, KeyUpdate, KeyUpdated, Principal, Record, Seen, Timestamp,
};

pub(crate) const DATA: u8 = b':';
pub(crate) const META: &[u8] = b"@m";
pub(crate) const PRINCIPAL: &[u8] = b"@p";
pub(crate) const SEEN: &[u8] = b"@s";

/// Redis field name of session key `key`.
pub(crate) fn data_field(key: &str) -> Vec<u8> {
    let mut field = Vec::with_capacity(key.len() + 1);
    field.push(DATA);
    field.extend_from_slice(key.as_bytes());
    field
}

/// The arguments of `update_key.lua` after the session hash, for `update` of `key`; `None`
/// for a kind of update this version does not know.
pub(crate) fn update_key_args(key: &str, update: &KeyUpdate) -> Option<Vec<Vec<u8>>> {
    let optional = |value: &Option<Bytes>| match value {
        Some(value) => [b"1".to_vec(), value.to_vec()],
        None => [b"0".to_vec(), Vec::new()],
    };
    let mut args = vec![data_field(key)];
    match update {
        KeyUpdate::Swap { expected, new } => {
            args.push(b"swap".to_vec());
            args.extend(optional(expected));
            args.extend(optional(new));
        }
        KeyUpdate::Increment { by, codec } => {
            args.push(codec.name().as_bytes().to_vec());
            args.push(by.to_string().into_bytes());
        }
        _ => return None,
    }
    Some(args)
}

/// Every field of `record`, as pairs: the tail of `create.lua`'s arguments.
pub(crate) fn record_fields(record: &Record) -> Vec<Vec<u8>> {
    let mut args = Vec::with_capacity(2 * record.data.len() + 6);
    for (key, value) in &record.data {
        args.push(data_field(key));
        args.push(value.to_vec());
    }
    args.push(META.to_vec());
    let meta = format!(
        "{}:{}",
        record.created_at.as_millis(),
        meta_tail(&record.expiry)
    );
    args.push(meta.into_bytes());
    if let Some(principal) = &record.principal {
        args.push(PRINCIPAL.to_vec());
        args.push(principal.as_str().as_bytes().to_vec());
    }
    if let Some(seen) = &record.seen {
        args.push(SEEN.to_vec());
        args.push(seen_value(seen));
    }
    args
}

/// The `@s` field: `<at>\n<address>\n<device>`, Unix milliseconds and the two texts, each empty
/// when unknown. A cleaned device label holds no control character, so no newline.
pub(crate) fn seen_value(seen: &Seen) -> Vec<u8> {
    let address = seen.address().map(|a| a.to_string()).unwrap_or_default();
    format!(
        "{}\n{address}\n{}",
        seen.at().as_millis(),
        seen.device().unwrap_or_default()
    )
    .into_bytes()
}

/// Reads an `@s` field back.
pub(crate) fn decode_seen(value: &[u8]) -> Result<Seen, Malformed> {
    let text = std::str::from_utf8(value).map_err(|_| Malformed::BadSeen)?;
    let mut parts = text.splitn(3, '\n');
    let (Some(at), Some(address), Some(device)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Malformed::BadSeen);
    };
    let at = number((at.as_bytes(), "last use"))?;
    let mut seen = Seen::new(Timestamp::from_millis(at)).with_device(device);
    if !address.is_empty() {
        let address: IpAddr = address.parse().map_err(|_| Malformed::BadSeen)?;
        seen = seen.with_address(address);
    }
    Ok(seen)
}

/// The metadata after the creation time: `deadline:idle:absolute`.
fn meta_tail(expiry: &Expiry) -> String {
    let absolute = expiry
        .absolute_deadline()
        .map(|abs| abs.as_millis().to_string())
        .unwrap_or_default();
    format!(
        "{}:{}:{absolute}",
        expiry.expires_at().as_millis(),
        millis(expiry.idle_timeout())
    )
}

/// Arguments of `apply.lua`: deadline, metadata tail, clear flag, then `index` (the principal
/// index's arguments, ARGV[4..=10]), the principal to bind, the last use, the data fields to
/// delete, and the pairs to set. With empty `changes`, this is a touch.
pub(crate) fn apply_args(
    changes: &Changes,
    expiry: &Expiry,
    index: impl IntoIterator<Item = Vec<u8>>,
) -> Vec<Vec<u8>> {
    let removed = changes.removed().len();
    let mut args = Vec::with_capacity(13 + removed + 2 * changes.inserted().len());
    args.push(expiry.expires_at().as_millis().to_string().into_bytes());
    args.push(meta_tail(expiry).into_bytes());
    args.push(if changes.is_clear() {
        b"1".to_vec()
    } else {
        b"0".to_vec()
    });
    args.extend(index);
    args.push(
        changes
            .principal()
            .map(|p| p.as_str().as_bytes().to_vec())
            .unwrap_or_default(),
    );
    args.push(changes.seen().map(seen_value).unwrap_or_default());
    args.push(removed.to_string().into_bytes());
    args.extend(changes.removed().map(data_field));
    for (key, value) in changes.inserted() {
        args.push(data_field(key));
        args.push(value.to_vec());
    }
    args
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What was wrong with a stored hash.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Malformed {
    #[error("Redis answered with {0}, not a hash")]
    NotAHash(&'static str),
    #[error("field {0:?} is neither a session key (':') nor known metadata ('@')")]
    UnknownField(String),
    #[error("session key field is not UTF-8")]
    KeyNotUtf8,
    #[error("metadata part {part} is not a decimal number")]
    BadNumber { part: &'static str },
    #[error("the metadata field @m is missing")]
    MissingMeta,
    #[error("the principal field @p is not a principal: {0}")]
    BadPrincipal(tether_core::InvalidPrincipal),
    #[error("a principal index field is not a session handle")]
    BadHandle,
    #[error("the last-use field @s is not '<ms>\\n<address>\\n<device>'")]
    BadSeen,
}

/// Reads `load_renewing.lua`'s reply: whether it renewed the session, and the session as it
/// is after the call (`None` when there is none).
pub(crate) fn renewing_reply(id: Id, reply: Value) -> Result<(bool, Option<Record>), Error> {
    let Value::Array(mut items) = reply else {
        return Err(Error::Backend(
            "load_renewing.lua answered something other than an array".into(),
        ));
    };
    let renewed = match items.first() {
        Some(Value::Int(flag)) => *flag == 1,
        _ => {
            return Err(Error::Backend("load_renewing.lua answered no flag".into()));
        }
    };
    items.remove(0);
    Ok((renewed, decode(id, Value::Array(items))?))
}

/// Decodes `apply.lua`'s reply: whether the session existed, and its principal before and
/// after the write.
pub(crate) fn applied_reply(
    reply: Value,
) -> Result<(bool, Option<Principal>, Option<Principal>), Error> {
    let corrupt = |what: &'static str| Error::Backend(format!("apply.lua answered {what}").into());
    let Value::Array(items) = reply else {
        return Err(corrupt("something other than an array"));
    };
    let mut items = items.into_iter();
    let applied = match items.next() {
        Some(Value::Int(flag)) => flag == 1,
        _ => return Err(corrupt("no flag")),
    };
    let mut principal = || -> Result<Option<Principal>, Error> {
        match items.next().map(bulk) {
            Some(Ok(bytes)) if bytes.is_empty() => Ok(None),
            Some(Ok(bytes)) => Principal::from_utf8(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt(Box::new(Malformed::BadPrincipal(e)))),
            _ => Err(corrupt("no principals")),
        }
    };
    let before = principal()?;
    let after = principal()?;
    Ok((applied, before, after))
}

/// Decodes `update_key.lua`'s reply.
pub(crate) fn key_updated_reply(key: &str, by: i64, reply: Value) -> Result<KeyUpdated, Error> {
    let corrupt =
        |what: &'static str| Error::Backend(format!("update_key.lua answered {what}").into());
    let Value::Array(items) = reply else {
        return Err(corrupt("something other than an array"));
    };
    let mut items = items.into_iter();
    let status = match items.next() {
        Some(Value::Int(status)) => status,
        _ => return Err(corrupt("no status")),
    };
    let value = match items.next().map(bulk) {
        None => None,
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(_)) => return Err(corrupt("a value that is no string")),
    };
    match status {
        0 => Ok(KeyUpdated::Missing),
        1 => Ok(KeyUpdated::Updated(value)),
        2 => Ok(KeyUpdated::Conflict(value)),
        3 => Err(Error::NotACounter {
            key: key.to_owned(),
            by,
        }),
        _ => Err(corrupt("an unknown status")),
    }
}

/// Decodes an `HGETALL` reply. An empty reply is no session; anything that is not a session
/// this version wrote is [`Error::Corrupt`].
pub(crate) fn decode(id: Id, reply: Value) -> Result<Option<Record>, Error> {
    decode_fields(id, reply).map_err(|e| Error::Corrupt(Box::new(e)))
}

fn decode_fields(id: Id, reply: Value) -> Result<Option<Record>, Malformed> {
    let pairs = pairs(reply)?;
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut data = HashMap::with_capacity(pairs.len());
    let mut meta = None;
    let mut principal = None;
    let mut seen = None;
    for (field, value) in pairs {
        match field.first() {
            Some(&DATA) => {
                let key = std::str::from_utf8(field.get(1..).unwrap_or_default())
                    .map_err(|_| Malformed::KeyNotUtf8)?;
                data.insert(key.to_owned(), value);
            }
            _ if field == META => meta = Some(value),
            _ if field == PRINCIPAL => {
                principal = Some(Principal::from_utf8(&value).map_err(Malformed::BadPrincipal)?);
            }
            _ if field == SEEN => seen = Some(decode_seen(&value)?),
            _ => {
                return Err(Malformed::UnknownField(
                    String::from_utf8_lossy(&field).into_owned(),
                ));
            }
        }
    }
    let meta = meta.ok_or(Malformed::MissingMeta)?;
    let (created, expiry) = decode_meta(&meta)?;
    Ok(Some(
        Record::new(id, expiry, created)
            .with_data(data)
            .with_principal(principal)
            .with_seen(seen),
    ))
}

/// The creation time and expiry in an `@m` field.
pub(crate) fn decode_meta(meta: &[u8]) -> Result<(Timestamp, Expiry), Malformed> {
    let mut parts = meta.split(|&b| b == b':');
    let mut next = |part: &'static str| {
        let text = parts.next().ok_or(Malformed::BadNumber { part })?;
        Ok::<_, Malformed>((text, part))
    };
    let created = number(next("created")?)?;
    let expires = number(next("deadline")?)?;
    let idle = number(next("idle")?)?;
    let (absolute, _) = next("absolute")?;
    let absolute = if absolute.is_empty() {
        None
    } else {
        Some(number((absolute, "absolute"))?)
    };
    let expiry = Expiry::from_parts(
        Timestamp::from_millis(expires),
        Duration::from_millis(idle),
        absolute.map(Timestamp::from_millis),
    );
    Ok((Timestamp::from_millis(created), expiry))
}

/// `record` as a load would read it back after `apply.lua` wrote `changes` and `expiry` to it:
/// the expiry and last use go through their stored forms. `None` when those do not read back
/// (never for values this store wrote).
pub(crate) fn as_applied(record: &Record, changes: &Changes, expiry: &Expiry) -> Option<Record> {
    let mut applied = record.clone();
    changes.apply_to(&mut applied.data);
    let meta = format!("{}:{}", record.created_at.as_millis(), meta_tail(expiry));
    applied.expiry = decode_meta(meta.as_bytes()).ok()?.1;
    if let Some(seen) = changes.seen() {
        applied.seen = Some(Box::new(decode_seen(&seen_value(seen)).ok()?));
    }
    if let Some(principal) = changes.principal() {
        applied.principal = Some(principal.clone());
    }
    Some(applied)
}

fn number((text, part): (&[u8], &'static str)) -> Result<u64, Malformed> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Malformed::BadNumber { part })
}

/// Field/value pairs of a hash reply: a flat array in RESP2, a map in RESP3.
pub(crate) fn pairs(reply: Value) -> Result<Vec<(Bytes, Bytes)>, Malformed> {
    let flat = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(Malformed::NotAHash("an array of odd length"));
            }
            let mut items = items.into_iter();
            let mut pairs = Vec::with_capacity(items.len() / 2);
            while let (Some(field), Some(value)) = (items.next(), items.next()) {
                pairs.push((bulk(field)?, bulk(value)?));
            }
            return Ok(pairs);
        }
        Value::Map(pairs) => pairs,
        _ => return Err(Malformed::NotAHash("a scalar")),
    };
    flat.into_iter()
        .map(|(field, value)| Ok((bulk(field)?, bulk(value)?)))
        .collect()
}

fn bulk(value: Value) -> Result<Bytes, Malformed> {
    match value {
        Value::BulkString(bytes) => Ok(Bytes::from(bytes)),
        Value::SimpleString(s) => Ok(Bytes::from(s)),
        _ => Err(Malformed::NotAHash("a non-string field or value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn reply(fields: &[(&[u8], &[u8])]) -> Value {
        Value::Array(
            fields
                .iter()
                .flat_map(|(f, v)| [bulk(f), bulk(v)])
                .collect(),
        )
    }

    fn id() -> Id {
        Id::random().unwrap()
    }

    #[test]
    fn round_trips_a_record() {
        let now = Timestamp::from_millis(1_700_000_000_000);
        let mut record = Record::new(
            id(),
            Expiry::new(
                now,
                Duration::from_secs(60),
                Some(now + Duration::from_secs(3600)),
            ),
            now,
        );
        record
            .data
            .insert(String::new(), Bytes::from_static(b"empty key"));
        record.data.insert(
            "@m".into(),
            Bytes::from_static(b"user key that looks like meta"),
        );
        let record = record
            .with_principal(Some(Principal::new("user:7 Zoë").unwrap()))
            .with_seen(Some(
                Seen::new(now)
                    .with_device("Mozilla/5.0 (X11; Linux x86_64)")
                    .with_address("2001:db8::7".parse().unwrap()),
            ));
        let fields = record_fields(&record);
        let pairs: Vec<(&[u8], &[u8])> = fields
            .chunks(2)
            .map(|pair| (pair[0].as_slice(), pair[1].as_slice()))
            .collect();
        let decoded = decode(record.id, reply(&pairs)).unwrap().unwrap();
        assert_eq!(decoded, record);
    }

    #[test]
    fn a_last_use_without_device_or_address_round_trips() {
        let seen = Seen::new(Timestamp::from_millis(42));
        assert_eq!(decode_seen(&seen_value(&seen)).unwrap(), seen);
        let seen = seen.with_address("192.0.2.1".parse().unwrap());
        assert_eq!(decode_seen(&seen_value(&seen)).unwrap(), seen);
    }

    #[test]
    fn empty_reply_is_no_session() {
        assert!(decode(id(), Value::Array(vec![])).unwrap().is_none());
        assert!(decode(id(), Value::Nil).unwrap().is_none());
    }

    #[test]
    fn corrupt_hashes_are_typed_errors() {
        let ok: (&[u8], &[u8]) = (b"@m", b"1:2:3:");
        assert!(decode(id(), reply(&[ok])).unwrap().is_some());
        let cases: Vec<Value> = vec![
            reply(&[(b"garbage", b"x")]),
            reply(&[(b":k", b"v")]),
            reply(&[(b"@m", b"x:2:3:")]),
            reply(&[(b"@m", b"1:2")]),
            reply(&[(b"@m", b"1:2:3")]),
            reply(&[(b"@m", b"1:2:3:x")]),
            reply(&[(b"@m", b"-1:2:3:")]),
            reply(&[(b"@m", b"")]),
            reply(&[ok, (b":\xff\xfe", b"v")]),
            reply(&[ok, (b"@p", b"")]),
            reply(&[ok, (b"@p", b"a\x00b")]),
            reply(&[ok, (b"@p", b"\xff")]),
            reply(&[ok, (b"@s", b"1\n")]),
            reply(&[ok, (b"@s", b"x\n\n")]),
            reply(&[ok, (b"@s", b"1\n1.2.3\n")]),
            reply(&[ok, (b"", b"v")]),
            Value::Array(vec![bulk(b"odd")]),
            Value::Int(7),
            Value::Array(vec![Value::Int(1), Value::Int(2)]),
        ];
        for case in cases {
            let err = decode(id(), case.clone()).unwrap_err();
            assert_eq!(err.kind(), tether_core::ErrorKind::Corrupt, "{case:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use redis::Value;

    use super::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::BulkString),
            "\\PC{0,20}".prop_map(Value::SimpleString),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|mut v| {
                v.insert(0, b':');
                Value::BulkString(v)
            }),
            "[0-9:]{0,30}".prop_map(|s| Value::BulkString(s.into_bytes())),
            Just(Value::BulkString(b"@m".to_vec())),
        ];
        leaf.prop_recursive(2, 32, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        /// Whatever a Redis key holds, loading it is a record, no session, or Corrupt: never a
        /// panic, never another error kind.
        #[test]
        fn arbitrary_replies_never_panic(reply in value()) {
            match decode(Id::from_bytes([1; 16]), reply) {
                Ok(_) => {}
                Err(e) => prop_assert_eq!(e.kind(), tether_core::ErrorKind::Corrupt),
            }
        }
    }
}
