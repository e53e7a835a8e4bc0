//! The replication protocol: length-delimited frames, each a postcard-encoded envelope that
//! starts with the protocol version.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tether_core::{Codec, Expiry, Id, KeyUpdate, KeyUpdated, Principal, Seen, Timestamp};

use crate::error::unexpected;
use crate::hlc::Hlc;
use crate::state::{ApplyOutcome, Delta, Entry, Listed};
use crate::write_id::WriteId;

/// Version of the frame format. A peer speaking another version is dropped at the handshake.
/// Version 2: writes carry their write id, and sessions the ids of their latest writes; copies
/// from a node outside the receiver's view are fenced; a leaving node says so.
/// Version 3: sessions carry their principal and last use (registers of their own, in whole
/// copies and in deltas); a node asks the others for the sessions of a principal
/// ([`Request::SessionsOf`]); a revoke is a deletion on condition of the principal
/// ([`Op::Revoke`]).
/// Version 4: the primary answers a deletion with whether it ended a live session, and whose
/// ([`Response::Deleted`]), so the node that took the call can report it.
/// Version 5: a key update is forwarded to the primary ([`Op::UpdateKey`], answered
/// [`Response::KeyUpdated`]); a delta may leave the expiry alone and say it is a key update,
/// and sessions remember what their latest key updates wrote.
pub(crate) const PROTOCOL_VERSION: u16 = 5;

/// One frame on a replication connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Frame {
    /// Server to client, first: a nonce to prove knowledge of the key on.
    Challenge {
        nonce: [u8; 32],
    },
    /// Client to server: who it is, its own nonce, and its proof.
    Hello {
        node: String,
        nonce: [u8; 32],
        mac: [u8; 32],
    },
    /// Server to client: the server's proof; the connection is authenticated both ways.
    Welcome {
        node: String,
        mac: [u8; 32],
    },
    Request {
        id: u64,
        clock: Hlc,
        body: Request,
    },
    Response {
        id: u64,
        clock: Hlc,
        body: Response,
    },
}

/// What one node asks another.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Heartbeat.
    Ping,
    /// The session's current state, if the receiver holds it.
    Fetch { id: Id },
    /// Store a new session (from its primary), created by the store call `write`.
    Create {
        id: Id,
        write: WriteId,
        /// Boxed: an entry is far larger than the other requests (the wire format is the same).
        entry: Box<Entry>,
    },
    /// Apply a delta stamped by the session's primary (it names its store call).
    Apply { id: Id, delta: Delta },
    /// Delete, stamped by the primary, by the store call `write`.
    Delete { id: Id, at: Hlc, write: WriteId },
    /// Merge these copies (re-replication, repair, state transfer).
    Push { entries: Vec<(Id, Entry)> },
    /// A page of the sessions `for_node` must hold, in id order after `after`.
    Transfer { for_node: String, after: Option<Id> },
    /// Perform an operation as the session's primary (sent by a node that is not), for the
    /// store call `write`: the same id on every retry and forward of that call.
    Forward { write: WriteId, op: Op },
    /// The sender leaves the cluster (it handed its sessions over): stop counting it a member.
    Leave,
    /// A page of the sessions bound to `principal` that the receiver holds (live, or deleted
    /// and still remembered), in id order after `after`.
    SessionsOf {
        principal: Principal,
        after: Option<Id>,
    },
}

/// An operation a coordinator forwards to a session's primary.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Create {
        id: Id,
        created_at: Timestamp,
        expiry: Expiry,
        data: Vec<(String, Bytes)>,
        principal: Option<Principal>,
        seen: Option<Seen>,
    },
    Apply {
        id: Id,
        clear: bool,
        removed: Vec<String>,
        set: Vec<(String, Bytes)>,
        expiry: Expiry,
        principal: Option<Principal>,
        seen: Option<Seen>,
    },
    /// Delete the session; answered [`Response::Deleted`]. Its backups get a plain `Delete`.
    Delete { id: Id },
    /// Delete the session only if it is live and bound to `principal` when the primary
    /// applies it; answered [`Response::Revoked`]. Its backups get a plain `Delete`.
    Revoke { id: Id, principal: Principal },
    /// Change `key` of the session atomically, evaluated against the primary's copy;
    /// answered [`Response::KeyUpdated`]. Its backups get a plain `Apply` of the key.
    UpdateKey {
        id: Id,
        key: String,
        change: KeyChange,
    },
}

/// A [`KeyUpdate`] on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum KeyChange {
    /// [`KeyUpdate::Swap`].
    Swap {
        expected: Option<Bytes>,
        new: Option<Bytes>,
    },
    /// [`KeyUpdate::Increment`].
    Increment { by: i64, codec: ValueCodec },
}

/// A [`Codec`] on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ValueCodec {
    MessagePack,
    Json,
}

/// The name [`tether_core::Error::Unsupported`] gives a key update this protocol cannot carry.
const UNCARRIED: &str = "this kind of key update, or its codec, on the replication protocol";

impl KeyChange {
    /// `update` on the wire.
    ///
    /// # Errors
    ///
    /// [`tether_core::Error::Unsupported`] for a kind of update or a codec newer than this
    /// protocol.
    pub(crate) fn new(update: &KeyUpdate) -> Result<Self, tether_core::Error> {
        match update {
            KeyUpdate::Swap { expected, new } => Ok(Self::Swap {
                expected: expected.clone(),
                new: new.clone(),
            }),
            KeyUpdate::Increment { by, codec } => Ok(Self::Increment {
                by: *by,
                codec: match codec {
                    Codec::MessagePack => ValueCodec::MessagePack,
                    Codec::Json => ValueCodec::Json,
                    _ => return Err(tether_core::Error::Unsupported(UNCARRIED)),
                },
            }),
            _ => Err(tether_core::Error::Unsupported(UNCARRIED)),
        }
    }

    /// The update it carries.
    pub(crate) fn update(&self) -> KeyUpdate {
        match self {
            Self::Swap { expected, new } => KeyUpdate::Swap {
                expected: expected.clone(),
                new: new.clone(),
            },
            Self::Increment { by, codec } => KeyUpdate::Increment {
                by: *by,
                codec: match codec {
                    ValueCodec::MessagePack => Codec::MessagePack,
                    ValueCodec::Json => Codec::Json,
                },
            },
        }
    }
}

/// The answer to [`Op::UpdateKey`]: a [`KeyUpdated`], or the update's own error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum KeyAnswer {
    /// [`KeyUpdated::Updated`].
    Updated(Option<Bytes>),
    /// [`KeyUpdated::Conflict`].
    Conflict(Option<Bytes>),
    /// [`KeyUpdated::Missing`].
    Missing,
    /// [`tether_core::Error::NotACounter`]: the increment found no counter, or would leave
    /// the counter range; nothing was written. The caller knows the key and the amount.
    NotACounter,
}

impl KeyAnswer {
    /// `outcome` on the wire.
    pub(crate) fn new(outcome: KeyUpdated) -> Self {
        match outcome {
            KeyUpdated::Updated(value) => Self::Updated(value),
            KeyUpdated::Conflict(value) => Self::Conflict(value),
            KeyUpdated::Missing => Self::Missing,
        }
    }

    /// The answer to the caller that asked for `update` of `key`.
    ///
    /// # Errors
    ///
    /// [`tether_core::Error::NotACounter`] for [`KeyAnswer::NotACounter`] to an increment; a
    /// backend error if a swap got that answer (no primary gives it).
    pub(crate) fn outcome(
        self,
        key: &str,
        update: &KeyUpdate,
    ) -> Result<KeyUpdated, tether_core::Error> {
        match self {
            Self::Updated(value) => Ok(KeyUpdated::Updated(value)),
            Self::Conflict(value) => Ok(KeyUpdated::Conflict(value)),
            Self::Missing => Ok(KeyUpdated::Missing),
            Self::NotACounter => match update {
                KeyUpdate::Increment { by, .. } => Err(tether_core::Error::NotACounter {
                    key: key.to_owned(),
                    by: *by,
                }),
                _ => Err(unexpected(&Response::KeyUpdated(self))),
            },
        }
    }
}

impl Op {
    pub(crate) fn id(&self) -> &Id {
        match self {
            Self::Create { id, .. }
            | Self::Apply { id, .. }
            | Self::Delete { id }
            | Self::Revoke { id, .. }
            | Self::UpdateKey { id, .. } => id,
        }
    }
}

/// An answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    Pong {
        ready: bool,
    },
    /// Boxed: an entry is far larger than the other answers (the wire format is the same).
    Entry(Option<Box<Entry>>),
    Created(bool),
    Applied(ApplyOutcome),
    Done,
    Page {
        entries: Vec<(Id, Entry)>,
        next: Option<Id>,
    },
    /// The receiver could not do it; `transient` when a retry may succeed.
    Failed {
        transient: bool,
        reason: String,
    },
    /// A copy refused because its sender is not a member of the receiver's view: the cluster
    /// declared the sender dead (it stood still, or was cut off) and moved on without it.
    Fenced,
    /// A page of the answer to [`Request::SessionsOf`]; `next` is the id to ask after for the
    /// next page, none on the last.
    Sessions {
        sessions: Vec<Listed>,
        next: Option<Id>,
    },
    /// The answer to [`Op::Revoke`]: whether the session was deleted.
    Revoked(bool),
    /// The answer to [`Op::Delete`]: whether this deletion ended a session that was live at
    /// its primary, and the principal it was bound to (none when it ended nothing, or when the
    /// deletion came again: whether its first time ended a live session is not remembered).
    Deleted {
        ended: bool,
        principal: Option<Principal>,
    },
    /// The answer to [`Op::UpdateKey`].
    KeyUpdated(KeyAnswer),
}

impl Response {
    /// A response saying the request could not be served.
    pub(crate) fn failed(transient: bool, reason: impl Into<String>) -> Self {
        Self::Failed {
            transient,
            reason: reason.into(),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("peer speaks protocol version {0}, this node {PROTOCOL_VERSION}")]
    Version(u16),
    #[error("malformed frame")]
    Malformed(#[source] postcard::Error),
}

pub(crate) fn encode(frame: &Frame) -> Result<Bytes, postcard::Error> {
    let mut out = postcard::to_stdvec(&PROTOCOL_VERSION)?;
    postcard::to_io(frame, &mut out).map_err(|_| postcard::Error::SerializeBufferFull)?;
    Ok(Bytes::from(out))
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
    let (version, rest) =
        postcard::take_from_bytes::<u16>(bytes).map_err(DecodeError::Malformed)?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::Version(version));
    }
    let (frame, rest) = postcard::take_from_bytes::<Frame>(rest).map_err(DecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(
            postcard::Error::DeserializeBadEncoding,
        ));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frame = Frame::Request {
            id: 7,
            clock: Hlc::default(),
            body: Request::Fetch {
                id: Id::random().unwrap(),
            },
        };
        let bytes = encode(&frame).unwrap();
        assert!(matches!(decode(&bytes), Ok(Frame::Request { id: 7, .. })));
    }

    /// The index request and its answer travel; a principal that breaks the rules (here
    /// empty) or a seen with a garbage address is a malformed frame, not a panic or a bad
    /// value.
    #[test]
    fn index_frames_round_trip_and_bad_principals_are_malformed() {
        let principal = Principal::new("user:1042").unwrap();
        let request = Frame::Request {
            id: 9,
            clock: Hlc::default(),
            body: Request::SessionsOf {
                principal: principal.clone(),
                after: None,
            },
        };
        let bytes = encode(&request).unwrap();
        assert!(matches!(
            decode(&bytes),
            Ok(Frame::Request { body: Request::SessionsOf { principal: p, after: None }, .. }) if p == principal
        ));
        let listed = Listed {
            id: Id::from_bytes([3; 16]),
            created_at: Timestamp::from_millis(1),
            expires_at: Timestamp::from_millis(2),
            seen: Some(
                Seen::new(Timestamp::from_millis(1))
                    .with_device("Firefox")
                    .with_address(std::net::IpAddr::from([192, 0, 2, 1])),
            ),
            deleted: false,
        };
        let answer = Frame::Response {
            id: 9,
            clock: Hlc::default(),
            body: Response::Sessions {
                sessions: vec![listed.clone()],
                next: None,
            },
        };
        let bytes = encode(&answer).unwrap();
        match decode(&bytes) {
            Ok(Frame::Response {
                body:
                    Response::Sessions {
                        sessions,
                        next: None,
                    },
                ..
            }) => assert_eq!(sessions, [listed]),
            other => panic!("{other:?}"),
        }

        // The principal's bytes start after version, variant, id, clock, body variant and its
        // length: an empty one, or one with a control character, does not decode.
        let mut empty = postcard::to_stdvec(&PROTOCOL_VERSION).unwrap();
        empty.extend_from_slice(&[3, 9, 0, 0, 0, 9, 0, 0]);
        assert!(matches!(decode(&empty), Err(DecodeError::Malformed(_))));
        let mut control = postcard::to_stdvec(&PROTOCOL_VERSION).unwrap();
        control.extend_from_slice(&[3, 9, 0, 0, 0, 9, 3, b'a', 0, b'b', 0]);
        assert!(matches!(decode(&control), Err(DecodeError::Malformed(_))));
        let mut fine = postcard::to_stdvec(&PROTOCOL_VERSION).unwrap();
        fine.extend_from_slice(&[3, 9, 0, 0, 0, 9, 3, b'a', b'-', b'b', 0]);
        assert!(
            decode(&fine).is_ok(),
            "the same frame with a valid principal decodes"
        );
    }

    /// Every handshake frame fits the limit in force before authentication, with the longest
    /// accepted node name; the sizes measured here are the ones documented on the limit.
    #[test]
    fn handshake_frames_fit_the_unauthenticated_limit() {
        let name = "n".repeat(crate::MAX_NAME_LEN);
        let challenge = encode(&Frame::Challenge { nonce: [0xff; 32] }).unwrap();
        let hello = encode(&Frame::Hello {
            node: name.clone(),
            nonce: [0xff; 32],
            mac: [0xff; 32],
        })
        .unwrap();
        let welcome = encode(&Frame::Welcome {
            node: name,
            mac: [0xff; 32],
        })
        .unwrap();
        assert_eq!(challenge.len(), 34);
        // Version, variant, the name's length in two bytes, the name, nonce and proof.
        assert_eq!(hello.len(), 2 + 2 + crate::MAX_NAME_LEN + 64);
        assert_eq!(hello.len(), 323);
        assert_eq!(welcome.len(), 2 + 2 + crate::MAX_NAME_LEN + 32);
        for frame in [&challenge, &hello, &welcome] {
            assert!(
                frame.len() <= crate::handshake::HANDSHAKE_MAX_FRAME / 3 * 2,
                "{}",
                frame.len()
            );
        }
    }

    /// Every prefix of `bytes` shorter than the whole is a malformed frame.
    fn prefixes_are_malformed(bytes: &[u8]) {
        for end in 0..bytes.len() {
            assert!(
                matches!(decode(&bytes[..end]), Err(DecodeError::Malformed(_))),
                "{} of {} bytes",
                end,
                bytes.len()
            );
        }
    }

    /// The seeds of the `replication_frame` fuzz target (fuzz/corpus/replication_frame) are
    /// frames of this protocol version, so the fuzzer starts past the version check. After a
    /// change of the format, `TETHER_WRITE_FUZZ_SEEDS=1 cargo test -p tether-replicated
    /// fuzz_seeds` writes them anew.
    #[test]
    fn fuzz_seeds_are_frames_of_this_version() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/replication_frame");
        let seeds = [
            ("challenge", Frame::Challenge { nonce: [7; 32] }),
            (
                "hello",
                Frame::Hello {
                    node: "node-a".into(),
                    nonce: [1; 32],
                    mac: [2; 32],
                },
            ),
            (
                "request",
                Frame::Request {
                    id: 3,
                    clock: Hlc::default(),
                    body: Request::Fetch {
                        id: Id::from_bytes([4; 16]),
                    },
                },
            ),
            (
                "forward",
                forward(KeyChange::Increment {
                    by: 2,
                    codec: ValueCodec::MessagePack,
                }),
            ),
        ];
        for (name, frame) in seeds {
            let path = dir.join(name);
            if std::env::var_os("TETHER_WRITE_FUZZ_SEEDS").is_some() {
                std::fs::write(&path, encode(&frame).unwrap()).unwrap();
            }
            let seed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                decode(&seed).is_ok(),
                "{} is not a frame of protocol version {PROTOCOL_VERSION}: write the seeds anew \
                 (TETHER_WRITE_FUZZ_SEEDS=1)",
                path.display()
            );
        }
    }

    fn forward(change: KeyChange) -> Frame {
        Frame::Request {
            id: 11,
            clock: Hlc::default(),
            body: Request::Forward {
                write: WriteId::from_bytes([6; 16]),
                op: Op::UpdateKey {
                    id: Id::from_bytes([5; 16]),
                    key: "cart".into(),
                    change,
                },
            },
        }
    }

    fn answer(answer: KeyAnswer) -> Frame {
        Frame::Response {
            id: 11,
            clock: Hlc::default(),
            body: Response::KeyUpdated(answer),
        }
    }

    /// A forwarded key update and its answers travel; cut short, or with an unknown variant of
    /// the operation, the update, the codec or the answer, or a bad option tag, they are
    /// malformed frames, never a panic.
    #[test]
    fn key_update_frames_round_trip_and_garbage_is_malformed() {
        let changes = [
            KeyChange::Swap {
                expected: None,
                new: Some(Bytes::from_static(b"\x01")),
            },
            KeyChange::Swap {
                expected: Some(Bytes::from_static(b"old")),
                new: None,
            },
            KeyChange::Increment {
                by: -3,
                codec: ValueCodec::MessagePack,
            },
            KeyChange::Increment {
                by: i64::MAX,
                codec: ValueCodec::Json,
            },
        ];
        for change in changes {
            let bytes = encode(&forward(change.clone())).unwrap();
            match decode(&bytes) {
                Ok(Frame::Request {
                    id: 11,
                    body:
                        Request::Forward {
                            write,
                            op: Op::UpdateKey { id, key, change: c },
                        },
                    ..
                }) => {
                    assert_eq!(write, WriteId::from_bytes([6; 16]));
                    assert_eq!(id, Id::from_bytes([5; 16]));
                    assert_eq!((key.as_str(), c), ("cart", change));
                }
                other => panic!("{other:?}"),
            }
            prefixes_are_malformed(&bytes);
        }
        let answers = [
            KeyAnswer::Updated(Some(Bytes::from_static(b"\x02"))),
            KeyAnswer::Updated(None),
            KeyAnswer::Conflict(Some(Bytes::from_static(b"now"))),
            KeyAnswer::Conflict(None),
            KeyAnswer::Missing,
            KeyAnswer::NotACounter,
        ];
        for sent in answers {
            let bytes = encode(&answer(sent.clone())).unwrap();
            match decode(&bytes) {
                Ok(Frame::Response {
                    id: 11,
                    body: Response::KeyUpdated(got),
                    ..
                }) => assert_eq!(got, sent),
                other => panic!("{other:?}"),
            }
            prefixes_are_malformed(&bytes);
        }

        // Version, frame variant, request id, clock (3 bytes), `Forward`, the write id (16
        // bytes), then the operation's variant: 4, `UpdateKey`.
        let increment = encode(&forward(KeyChange::Increment {
            by: 1,
            codec: ValueCodec::MessagePack,
        }))
        .unwrap()
        .to_vec();
        assert_eq!(increment[23], 4, "the operation's variant");
        // The end: the update's variant (1, `Increment`), `by` (zigzag: 2), the codec (0).
        assert_eq!(increment[increment.len() - 3..], [1, 2, 0]);
        let with = |at: usize, byte: u8| {
            let mut bytes = increment.clone();
            bytes[at] = byte;
            bytes
        };
        let last = increment.len() - 1;
        assert!(
            matches!(
                decode(&with(last, 1)),
                Ok(Frame::Request {
                    body: Request::Forward {
                        op: Op::UpdateKey {
                            change: KeyChange::Increment {
                                codec: ValueCodec::Json,
                                ..
                            },
                            ..
                        },
                        ..
                    },
                    ..
                })
            ),
            "codec 1 is JSON"
        );
        for (what, garbage) in [
            ("an unknown codec", with(last, 2)),
            ("an unknown update", with(last - 2, 2)),
            ("an unknown operation", with(23, 5)),
        ] {
            assert!(
                matches!(decode(&garbage), Err(DecodeError::Malformed(_))),
                "{what}"
            );
        }
        // `Swap { expected: None, new: None }` ends in its variant and two option tags.
        let swap = encode(&forward(KeyChange::Swap {
            expected: None,
            new: None,
        }))
        .unwrap()
        .to_vec();
        assert_eq!(swap[swap.len() - 3..], [0, 0, 0]);
        let mut bad_tag = swap.clone();
        bad_tag[swap.len() - 2] = 2;
        assert!(matches!(decode(&bad_tag), Err(DecodeError::Malformed(_))));
        // An answer ends in its variant (2, `Missing`); the last variant is 3.
        let mut missing = encode(&answer(KeyAnswer::Missing)).unwrap().to_vec();
        assert_eq!(missing.last(), Some(&2));
        if let Some(last) = missing.last_mut() {
            *last = 4;
        }
        assert!(matches!(decode(&missing), Err(DecodeError::Malformed(_))));
    }

    /// A key update goes on the wire and comes back the same, either codec; a primary's
    /// "not a counter" reaches the caller as `Error::NotACounter` with the key and amount.
    #[test]
    fn key_updates_and_answers_convert() {
        let updates = [
            KeyUpdate::Swap {
                expected: Some(Bytes::from_static(b"a")),
                new: None,
            },
            KeyUpdate::Increment {
                by: 7,
                codec: Codec::MessagePack,
            },
            KeyUpdate::Increment {
                by: -7,
                codec: Codec::Json,
            },
        ];
        for update in &updates {
            assert_eq!(&KeyChange::new(update).unwrap().update(), update);
        }
        for outcome in [
            KeyUpdated::Updated(Some(Bytes::from_static(b"v"))),
            KeyUpdated::Conflict(None),
            KeyUpdated::Missing,
        ] {
            assert_eq!(
                KeyAnswer::new(outcome.clone())
                    .outcome("k", &updates[0])
                    .unwrap(),
                outcome
            );
        }
        match KeyAnswer::NotACounter.outcome("hits", &updates[2]) {
            Err(tether_core::Error::NotACounter { key, by: -7 }) => assert_eq!(key, "hits"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            KeyAnswer::NotACounter.outcome("k", &updates[0]),
            Err(tether_core::Error::Backend(_))
        ));
    }

    #[test]
    fn garbage_and_other_versions_are_errors() {
        assert!(matches!(decode(&[]), Err(DecodeError::Malformed(_))));
        assert!(matches!(
            decode(&[0xff; 64]),
            Err(DecodeError::Malformed(_))
        ));
        let mut other = postcard::to_stdvec(&(PROTOCOL_VERSION + 1)).unwrap();
        other.extend_from_slice(&[0, 1, 2]);
        assert!(
            matches!(decode(&other), Err(DecodeError::Version(v)) if v == PROTOCOL_VERSION + 1)
        );
        let mut trailing = encode(&Frame::Challenge { nonce: [1; 32] })
            .unwrap()
            .to_vec();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        // Every prefix of a valid frame is rejected, never a panic.
        let valid = encode(&Frame::Welcome {
            node: "a".into(),
            mac: [2; 32],
        })
        .unwrap();
        for end in 0..valid.len() {
            assert!(decode(&valid[..end]).is_err());
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any bytes a peer sends decode to a frame or a typed error, never a panic.
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        /// Valid version prefix, arbitrary body: still no panic.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = postcard::to_stdvec(&PROTOCOL_VERSION).unwrap();
            bytes.extend_from_slice(&body);
            let _ = decode(&bytes);
        }
    }
}
