//! The replication protocol: length-delimited frames, each a postcard-encoded envelope that
//! starts with the protocol version.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tether_core::{Expiry, Id, Principal, Seen, Timestamp};

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
pub(crate) const PROTOCOL_VERSION: u16 = 4;

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
}

impl Op {
    pub(crate) fn id(&self) -> &Id {
        match self {
            Self::Create { id, .. }
            | Self::Apply { id, .. }
            | Self::Delete { id }
            | Self::Revoke { id, .. } => id,
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
