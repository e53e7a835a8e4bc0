//! How session values become bytes.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// The encoding of session values.
///
/// Each value a handler inserts is encoded on its own, so stores can change one key without
/// touching the others. Every server of one application must use the same codec.
///
/// # Example
///
/// ```
/// use tether_core::Codec;
///
/// let codec = Codec::default();
/// let bytes = codec.encode(&vec![1u32, 2, 3])?;
/// let back: Vec<u32> = codec.decode(&bytes)?;
/// assert_eq!(back, [1, 2, 3]);
///
/// // Bytes that are not a value of the asked type give a typed error, never a panic.
/// assert!(codec.decode::<String>(&[0xc1]).is_err());
/// # Ok::<(), tether_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// MessagePack through `rmp-serde`, with struct fields named so structs can gain fields
    /// without breaking stored sessions. Compact and fast; the default.
    #[default]
    MessagePack,
    /// JSON through `serde_json`: readable in `redis-cli`, larger and slower.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    Json,
}

impl Codec {
    /// Encodes `value`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when `value`'s `Serialize` implementation fails (for instance a map with
    /// non-string keys under JSON).
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, Error> {
        match self {
            Self::MessagePack => rmp_serde::to_vec_named(value)
                .map(Bytes::from)
                .map_err(|e| Error::Encode(Box::new(e))),
            #[cfg(feature = "json")]
            Self::Json => serde_json::to_vec(value)
                .map(Bytes::from)
                .map_err(|e| Error::Encode(Box::new(e))),
        }
    }

    /// Decodes a value of type `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when `bytes` is not an encoded `T`.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, Error> {
        match self {
            Self::MessagePack => {
                rmp_serde::from_slice(bytes).map_err(|e| Error::Decode(Box::new(e)))
            }
            #[cfg(feature = "json")]
            Self::Json => serde_json::from_slice(bytes).map_err(|e| Error::Decode(Box::new(e))),
        }
    }

    /// A stable short name of the encoding, `"msgpack"` or `"json"`, for stores that must
    /// tell another process (a Redis script, a peer) which one a value uses.
    ///
    /// ```
    /// assert_eq!(tether_core::Codec::MessagePack.name(), "msgpack");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Self::MessagePack => "msgpack",
            #[cfg(feature = "json")]
            Self::Json => "json",
        }
    }

    /// The integer `bytes` encodes, and nothing more: a counter of
    /// [`KeyUpdate::Increment`](crate::KeyUpdate::Increment). Stricter than
    /// [`decode`](Self::decode), which MessagePack lets ignore trailing bytes: a text that
    /// happens to start with a small integer's byte is no counter.
    pub(crate) fn decode_counter(&self, bytes: &[u8]) -> Option<i64> {
        match self {
            Self::MessagePack => {
                let mut rest = bytes;
                let n = <i64 as serde::Deserialize>::deserialize(
                    &mut rmp_serde::Deserializer::new(&mut rest),
                )
                .ok()?;
                rest.is_empty().then_some(n)
            }
            #[cfg(feature = "json")]
            Self::Json => serde_json::from_slice(bytes).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct User {
        name: String,
        admin: bool,
    }

    fn round_trip(codec: Codec) {
        let user = User {
            name: "alice".into(),
            admin: false,
        };
        let bytes = codec.encode(&user).unwrap();
        assert_eq!(codec.decode::<User>(&bytes).unwrap(), user);
        assert!(matches!(
            codec.decode::<User>(b"\xff\x00garbage"),
            Err(Error::Decode(_))
        ));
        assert!(matches!(
            codec.decode::<u8>(&codec.encode("x").unwrap()),
            Err(Error::Decode(_))
        ));
    }

    #[test]
    fn message_pack_round_trips() {
        round_trip(Codec::MessagePack);
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_round_trips() {
        round_trip(Codec::Json);
    }

    #[test]
    fn message_pack_tolerates_new_fields() {
        #[derive(serde::Serialize)]
        struct UserV2 {
            name: &'static str,
            admin: bool,
            locale: &'static str,
        }
        let codec = Codec::MessagePack;
        let bytes = codec
            .encode(&UserV2 {
                name: "bob",
                admin: true,
                locale: "de",
            })
            .unwrap();
        let old: User = codec.decode(&bytes).unwrap();
        assert_eq!(old.name, "bob");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Arbitrary bytes decode to a typed error or a value, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let codec = Codec::default();
            let _ = codec.decode::<u64>(&bytes);
            let _ = codec.decode::<String>(&bytes);
            let _ = codec.decode::<Vec<std::collections::HashMap<String, Vec<u8>>>>(&bytes);
        }
    }
}
