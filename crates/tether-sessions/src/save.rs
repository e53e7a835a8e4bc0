//! Writing a request's session changes to the store.

use std::collections::HashMap;

use bytes::Bytes;
use tether_core::{
    Applied, Changes, Created, Cycled, Error, Expiry, Id, Principal, Record, Seen, SessionStore,
    Timestamp,
};
use tracing::Instrument as _;

use crate::telemetry::{Operation, Outcome, Telemetry, store_span};
use crate::transport::Delivery;

/// Attempts at finding a free id. Ids are 128 random bits, so a second attempt already means a
/// broken random source or store.
const ID_ATTEMPTS: usize = 3;

/// What the end of a request must write, decided from the session's state.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Nothing changed and no renewal is due.
    Nothing,
    /// A new session: store it (after deleting a flushed one), then issue its id.
    Create {
        ended: Option<Id>,
        data: HashMap<String, Bytes>,
        expiry: Expiry,
        principal: Option<Principal>,
        seen: Option<Seen>,
    },
    /// Apply this request's delta (or a changed expiry) to the stored session.
    Apply {
        id: Id,
        changes: Changes,
        expiry: Expiry,
    },
    /// Only extend the stored session's deadline, and record its use when the layer records
    /// activity.
    Touch {
        id: Id,
        expiry: Expiry,
        seen: Option<Seen>,
    },
    /// The read renewed the stored session already: only the client learns the new expiry.
    Renewed { id: Id, expiry: Expiry },
    /// Move the session to a new id, then apply the delta there.
    Cycle {
        old: Id,
        changes: Changes,
        expiry: Expiry,
    },
    /// The session ended (flushed, or the presented id names nothing): delete it and revoke.
    Revoke { ended: Option<Id> },
}

impl Plan {
    pub(crate) fn is_nothing(&self) -> bool {
        matches!(self, Self::Nothing)
    }

    /// What becomes of the session when the plan succeeds.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Self::Nothing => Outcome::Loaded,
            Self::Create { .. } => Outcome::Created,
            Self::Apply { .. } => Outcome::Changed,
            Self::Touch { .. } | Self::Renewed { .. } => Outcome::Touched,
            Self::Cycle { .. } => Outcome::Cycled,
            Self::Revoke { .. } => Outcome::Revoked,
        }
    }

    /// Performs the plan and says what the client must learn, also when it failed half-way.
    pub(crate) async fn execute(
        self,
        store: &dyn SessionStore,
        telemetry: &Telemetry,
    ) -> Result<Delivery, Failed> {
        match self {
            Self::Nothing => Ok(Delivery::Nothing),
            Self::Create {
                ended,
                data,
                expiry,
                principal,
                seen,
            } => {
                if let Some(id) = ended {
                    delete(store, telemetry, id).await?;
                }
                let record = Record::new(Id::random()?, expiry, Timestamp::now())
                    .with_data(data)
                    .with_principal(principal)
                    .with_seen(seen);
                Ok(create(store, telemetry, record).await?)
            }
            Self::Apply {
                id,
                changes,
                expiry,
            } => {
                let span = store_span!("session.apply", session = ?id);
                let applied = telemetry
                    .store_call(
                        Operation::Apply,
                        store.apply(&id, &changes, &expiry).instrument(span),
                    )
                    .await?;
                Ok(renewed_or_gone(applied, id, expiry))
            }
            Self::Touch { id, expiry, seen } => {
                let span = store_span!("session.touch", session = ?id);
                let touch = async {
                    match seen {
                        // The renewal carries the session's latest use: still one store call.
                        Some(seen) => {
                            let mut changes = Changes::new();
                            changes.set_seen(seen);
                            store.apply(&id, &changes, &expiry).await
                        }
                        None => store.touch(&id, &expiry).await,
                    }
                };
                let applied = telemetry
                    .store_call(Operation::Touch, touch.instrument(span))
                    .await?;
                Ok(renewed_or_gone(applied, id, expiry))
            }
            Self::Renewed { id, expiry } => Ok(Delivery::Renew(id, expiry)),
            Self::Cycle {
                old,
                changes,
                expiry,
            } => cycle(store, telemetry, old, changes, expiry).await,
            Self::Revoke { ended } => {
                if let Some(id) = ended {
                    delete(store, telemetry, id).await?;
                }
                Ok(Delivery::Revoke)
            }
        }
    }
}

/// A save that failed, and what the client must learn all the same.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: Error,
    /// Set when a step that changed which id names the session had succeeded before the
    /// failure: the client must get that id even with the error, or lose its session.
    pub(crate) delivery: Delivery,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Self {
            error,
            delivery: Delivery::Nothing,
        }
    }
}

/// A session that vanished between load and save (deleted by a concurrent logout, or expired)
/// stays gone: this request's changes are dropped rather than resurrecting it.
fn renewed_or_gone(applied: Applied, id: Id, expiry: Expiry) -> Delivery {
    match applied {
        Applied::Applied => Delivery::Renew(id, expiry),
        Applied::Missing => {
            tracing::warn!(session = ?id, "session ended while the request ran; its changes were dropped");
            Delivery::Revoke
        }
    }
}

async fn delete(store: &dyn SessionStore, telemetry: &Telemetry, id: Id) -> Result<(), Error> {
    let span = store_span!("session.delete", session = ?id);
    telemetry
        .store_call(Operation::Delete, store.delete(&id).instrument(span))
        .await
}

async fn create(
    store: &dyn SessionStore,
    telemetry: &Telemetry,
    mut record: Record,
) -> Result<Delivery, Error> {
    let expiry = record.expiry;
    for _ in 0..ID_ATTEMPTS {
        let span = store_span!("session.create", session = ?record.id);
        match telemetry
            .store_call(Operation::Create, store.create(&record).instrument(span))
            .await?
        {
            Created::Created => return Ok(Delivery::Issue(record.id, expiry)),
            Created::IdTaken => record.id = Id::random()?,
        }
    }
    Err(no_free_id())
}

async fn cycle(
    store: &dyn SessionStore,
    telemetry: &Telemetry,
    old: Id,
    changes: Changes,
    expiry: Expiry,
) -> Result<Delivery, Failed> {
    for _ in 0..ID_ATTEMPTS {
        let new = Id::random()?;
        let span = store_span!("session.cycle", session = ?old, new = ?new);
        match telemetry
            .store_call(Operation::Cycle, store.cycle(&old, &new).instrument(span))
            .await?
        {
            Cycled::Moved => {
                let span = store_span!("session.apply", session = ?new);
                // The old id is gone now: whatever happens next, the client needs the new one.
                let applied = telemetry
                    .store_call(
                        Operation::Apply,
                        store.apply(&new, &changes, &expiry).instrument(span),
                    )
                    .await
                    .map_err(|error| Failed {
                        error,
                        delivery: Delivery::Issue(new, expiry),
                    })?;
                return Ok(match renewed_or_gone(applied, new, expiry) {
                    Delivery::Renew(id, expiry) => Delivery::Issue(id, expiry),
                    other => other,
                });
            }
            Cycled::Missing => return Ok(renewed_or_gone(Applied::Missing, old, expiry)),
            Cycled::IdTaken => continue,
        }
    }
    Err(no_free_id().into())
}

fn no_free_id() -> Error {
    Error::Backend(
        format!("the store reported {ID_ATTEMPTS} random session ids in a row as taken").into(),
    )
}
