//! The principal index in Redis: one hash per principal, `<prefix>:principal:<principal>`,
//! whose fields are the handles of the principal's sessions and whose values are
//! `<id>:<Unix ms when listed>`.
//!
//! In standalone Redis (and behind Sentinel) the session's own scripts keep it, so binding,
//! moving and deleting a session change the index in the same round trip, atomically, and
//! listing and revoking are one script each. On Redis Cluster the index hash lives in another
//! slot than the session hashes, so no script reaches both: the store lists a session in the
//! index before the session's write (the index may name a session that is not there, never miss
//! one that is), drops entries whose session ended when it lists them, and checks the
//! principal on the session hash itself before deleting it.
//!
//! The index hash expires with the latest deadline of its sessions, so a principal who never
//! returns leaves nothing behind: in standalone Redis every write of a bound session extends it
//! (inside the script, at no cost); on Cluster that would cost a round trip per write, so the
//! hash is kept until the latest absolute deadline instead, and only sessions without one extend
//! it on their writes.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use redis::Value;
use tether_core::{Error, Expiry, Id, Principal, Revoked, SessionHandle, SessionInfo, Timestamp};

use crate::layout::{self, Malformed};
use crate::store::{NamedScript, RedisStore};

/// How long an index entry whose session is missing is kept on Redis Cluster, where an entry
/// is written before its session: a session may still be on its way.
const CLUSTER_PRUNE_GRACE: Duration = Duration::from_secs(300);

/// Where the principal index lives and who keeps it.
#[derive(Clone, Debug)]
pub(crate) struct IndexKeys {
    /// `<prefix>:`, the start of every session key.
    sessions: Arc<str>,
    /// `<prefix>:principal:`, the start of every index key.
    principals: Arc<str>,
    /// The sessions' scripts keep the index (standalone, Sentinel), or the store does (Cluster).
    in_scripts: bool,
    /// Sessions per principal at most.
    pub(crate) cap: Option<NonZeroUsize>,
}

impl IndexKeys {
    /// The index of sessions whose keys start with `sessions` (in standalone Redis, where the
    /// scripts name them), its hashes under `<prefix>:principal:`.
    pub(crate) fn new(sessions: &str, prefix: &str, in_scripts: bool) -> Self {
        Self {
            sessions: Arc::from(sessions),
            principals: Arc::from(format!("{prefix}:principal:")),
            in_scripts,
            cap: None,
        }
    }

    pub(crate) fn with_cap(mut self, cap: Option<NonZeroUsize>) -> Self {
        self.cap = cap;
        self
    }

    /// The index hash of `principal`.
    pub(crate) fn key(&self, principal: &Principal) -> String {
        format!("{}{principal}", self.principals)
    }

    pub(crate) fn in_scripts(&self) -> bool {
        self.in_scripts
    }

    pub(crate) fn sessions_prefix(&self) -> &str {
        &self.sessions
    }

    fn cap_arg(&self) -> usize {
        self.cap.map_or(0, NonZeroUsize::get)
    }

    /// `apply.lua`'s ARGV[7..=12]: index key prefix (empty when the store keeps the index),
    /// handle, id, cap, keep-until, session key prefix.
    pub(crate) fn apply_args(&self, id: &Id, expiry: &Expiry) -> [Vec<u8>; 6] {
        let principals = if self.in_scripts {
            self.principals.as_bytes().to_vec()
        } else {
            Vec::new()
        };
        [
            principals,
            SessionHandle::of(id).to_string().into_bytes(),
            id.to_string().into_bytes(),
            self.cap_arg().to_string().into_bytes(),
            self.keep_until(expiry).as_millis().to_string().into_bytes(),
            self.sessions.as_bytes().to_vec(),
        ]
    }

    /// `create.lua`'s ARGV[5..=10]: keep-until, handle, id, cap, session key prefix, principal.
    pub(crate) fn create_args(
        &self,
        id: &Id,
        expiry: &Expiry,
        principal: Option<&Principal>,
    ) -> [Vec<u8>; 6] {
        [
            self.keep_until(expiry).as_millis().to_string().into_bytes(),
            SessionHandle::of(id).to_string().into_bytes(),
            id.to_string().into_bytes(),
            self.cap_arg().to_string().into_bytes(),
            self.sessions.as_bytes().to_vec(),
            principal
                .map(|p| p.as_str().as_bytes().to_vec())
                .unwrap_or_default(),
        ]
    }

    /// The index key prefix (empty on Cluster), handle and id: `take.lua`'s and
    /// `delete.lua`'s ARGV[4..=6], `load_renewing.lua`'s ARGV[5..=7].
    pub(crate) fn session_args(&self, id: &Id) -> [Vec<u8>; 3] {
        let principals = if self.in_scripts {
            self.principals.as_bytes().to_vec()
        } else {
            Vec::new()
        };
        [
            principals,
            SessionHandle::of(id).to_string().into_bytes(),
            id.to_string().into_bytes(),
        ]
    }
}

impl IndexKeys {
    /// How long an index hash must last for a session written with this expiry: to its
    /// deadline where each write extends it (standalone), to its absolute deadline where that
    /// would cost a round trip per write (Cluster).
    pub(crate) fn keep_until(&self, expiry: &Expiry) -> Timestamp {
        match expiry.absolute_deadline() {
            Some(absolute) if !self.in_scripts => absolute,
            _ => expiry.expires_at(),
        }
    }
}

/// One field of an index hash: a session's handle and id, and when it was listed.
struct Entry {
    handle: Vec<u8>,
    id: Id,
    listed_at: Timestamp,
}

/// The fields of an index hash. A field that is not an entry this version wrote is logged and
/// left out (it names no session, so nothing can be followed through it).
fn entries(reply: Value) -> Result<Vec<Entry>, Error> {
    let pairs = layout::pairs(reply).map_err(|e| Error::Corrupt(Box::new(e)))?;
    Ok(pairs
        .into_iter()
        .filter_map(|(handle, value)| {
            let entry = std::str::from_utf8(&value).ok().and_then(|text| {
                let (id, listed_at) = text.split_once(':')?;
                Some(Entry {
                    handle: handle.to_vec(),
                    id: id.parse().ok()?,
                    listed_at: Timestamp::from_millis(listed_at.parse().ok()?),
                })
            });
            if entry.is_none() {
                tracing::warn!("a principal index entry is not '<id>:<ms>'; ignored");
            }
            entry
        })
        .collect())
}

/// A listed session: its handle and its `@m` and `@s` fields. Corrupt ones are logged and left
/// out, so one bad hash does not hide the principal's other sessions.
fn session_info(handle: &[u8], meta: &[u8], seen: Option<&[u8]>) -> Option<SessionInfo> {
    let decoded = (|| {
        let handle: SessionHandle = std::str::from_utf8(handle)
            .ok()
            .and_then(|h| h.parse().ok())
            .ok_or(Malformed::BadHandle)?;
        let (created, expiry) = layout::decode_meta(meta)?;
        let seen = seen
            .filter(|s| !s.is_empty())
            .map(layout::decode_seen)
            .transpose()?;
        Ok::<_, Malformed>(SessionInfo::new(handle, created, expiry.expires_at()).with_seen(seen))
    })();
    match decoded {
        Ok(info) => Some(info),
        Err(error) => {
            tracing::warn!(%error, "a session of a principal could not be read; not listed");
            None
        }
    }
}

fn sorted(mut sessions: Vec<SessionInfo>) -> Vec<SessionInfo> {
    sessions.sort_by_key(|info| (info.created_at, info.handle));
    sessions
}

fn bulk(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        _ => None,
    }
}

/// The replies of `HMGET <session> @m @s @p`.
fn hmget_fields(reply: Value) -> [Option<Vec<u8>>; 3] {
    let mut fields = match reply {
        Value::Array(items) => items.into_iter().map(bulk).collect::<Vec<_>>().into_iter(),
        _ => Vec::new().into_iter(),
    };
    [
        fields.next().flatten(),
        fields.next().flatten(),
        fields.next().flatten(),
    ]
}

impl RedisStore {
    /// Lists `id` under `principal` before the session's own write (Cluster).
    pub(crate) async fn list_in_index(
        &self,
        principal: &Principal,
        id: &Id,
        now: Timestamp,
        expiry: &Expiry,
    ) -> Result<(), Error> {
        let mut call = BIND.call(self.index.key(principal));
        call.arg(SessionHandle::of(id).to_string())
            .arg(id.to_string())
            .arg(now.as_millis())
            .arg(self.index.keep_until(expiry).as_millis());
        self.script::<i64>(call).await.map(drop)
    }

    /// Takes `id` off `principal`'s list (Cluster, after a rebinding). A failure is only
    /// logged: the entry then names a session of another principal, which listing drops.
    pub(crate) async fn unlist(&self, principal: &Principal, id: &Id) {
        let mut command = redis::cmd("HDEL");
        command
            .arg(self.index.key(principal))
            .arg(SessionHandle::of(id).to_string());
        if let Err(error) = self.query::<i64>("index", command).await {
            tracing::warn!(error = %tether_core::error_chain(&error), "could not take a rebound session off its former principal's index; listing will drop it");
        }
    }

    /// The entries of `principal`'s index, each with its session's `@m`, `@s` and `@p`
    /// (Cluster: one `HGETALL`, then one `HMGET` per entry, sent together).
    async fn cluster_entries(
        &self,
        principal: &Principal,
    ) -> Result<Vec<(Entry, [Option<Vec<u8>>; 3])>, Error> {
        let mut command = redis::cmd("HGETALL");
        command.arg(self.index.key(principal));
        let entries = entries(self.query("index", command).await?)?;
        let reads = entries.iter().map(|entry| {
            let mut command = redis::cmd("HMGET");
            command
                .arg(self.key(&entry.id))
                .arg("@m")
                .arg("@s")
                .arg("@p");
            self.query::<Value>("index", command)
        });
        let fields = join_all(reads).await;
        entries
            .into_iter()
            .zip(fields)
            .map(|(entry, fields)| Ok((entry, hmget_fields(fields?))))
            .collect()
    }

    /// Drops `handles` from `principal`'s index; a failure is logged (they are dropped again
    /// on a later listing).
    async fn drop_entries(&self, principal: &Principal, handles: Vec<Vec<u8>>) {
        if handles.is_empty() {
            return;
        }
        let mut command = redis::cmd("HDEL");
        command.arg(self.index.key(principal)).arg(handles);
        if let Err(error) = self.query::<i64>("index", command).await {
            tracing::warn!(error = %tether_core::error_chain(&error), "could not drop ended sessions from a principal's index");
        }
    }

    /// Whether an entry whose session is missing or foreign may be dropped now.
    fn stale(entry: &Entry, now: Timestamp) -> bool {
        entry.listed_at + CLUSTER_PRUNE_GRACE < now
    }

    /// Deletes session `id` if it is bound to `principal` (one script on the session's key).
    async fn revoke_session(&self, principal: &Principal, id: &Id) -> Result<bool, Error> {
        let mut call = self.logged_call(&REVOKE_SESSION, id, Timestamp::now(), None);
        call.arg(principal.as_str())
            .arg(SessionHandle::of(id).to_string())
            .arg(id.to_string());
        self.script::<i64>(call).await.map(|n| n == 1)
    }

    /// A call of `revoke.lua` on `principal`'s index (standalone: one shard).
    fn revoke_call(&self, principal: &Principal) -> crate::store::ScriptCall<'static> {
        let shard = self.log.as_ref().map(|_| 0);
        let mut call = self.log_call(
            &REVOKE,
            self.index.key(principal),
            shard,
            Timestamp::now(),
            None,
        );
        call.arg(self.index.sessions_prefix())
            .arg(principal.as_str());
        call
    }

    /// Revokes the oldest sessions of `principal` other than `keep` past the cap (Cluster,
    /// after a binding). Failures are logged: the cap is enforced again at the next binding.
    pub(crate) async fn enforce_cap(&self, principal: &Principal, keep: &Id) {
        let Some(cap) = self.index.cap else {
            return;
        };
        let result = async {
            let mut live = Vec::new();
            for (entry, [meta, _, bound]) in self.cluster_entries(principal).await? {
                let Some(meta) =
                    meta.filter(|_| bound.as_deref() == Some(principal.as_str().as_bytes()))
                else {
                    continue;
                };
                let created = layout::decode_meta(&meta)
                    .map(|(created, _)| created)
                    .unwrap_or(Timestamp::from_millis(0));
                live.push((created, entry));
            }
            let excess = live.len().saturating_sub(cap.get());
            let mut others: Vec<_> = live
                .into_iter()
                .filter(|(_, entry)| entry.id != *keep)
                .collect();
            others.sort_by_key(|(created, entry)| (*created, entry.id));
            let mut dropped = Vec::new();
            for (_, entry) in others.into_iter().take(excess) {
                self.revoke_session(principal, &entry.id).await?;
                dropped.push(entry.handle);
            }
            self.drop_entries(principal, dropped).await;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(error = %tether_core::error_chain(&error), "could not enforce the session cap of a principal; the next binding tries again");
        }
    }

    pub(crate) async fn list_sessions(
        &self,
        principal: &Principal,
    ) -> Result<Vec<SessionInfo>, Error> {
        if self.index.in_scripts() {
            let mut call = LIST.call(self.index.key(principal));
            call.arg(self.index.sessions_prefix())
                .arg(principal.as_str());
            let reply: Value = self.script(call).await?;
            let items = match reply {
                Value::Array(items) => items,
                Value::Nil => Vec::new(),
                _ => return Err(Error::Corrupt(Box::new(Malformed::NotAHash("a scalar")))),
            };
            let mut items = items.into_iter().map(bulk);
            let mut sessions = Vec::new();
            while let (Some(handle), Some(meta), Some(seen)) =
                (items.next(), items.next(), items.next())
            {
                if let (Some(handle), Some(meta)) = (handle, meta) {
                    sessions.extend(session_info(&handle, &meta, seen.as_deref()));
                }
            }
            return Ok(sorted(sessions));
        }
        let now = Timestamp::now();
        let mut sessions = Vec::new();
        let mut dropped = Vec::new();
        for (entry, [meta, seen, bound]) in self.cluster_entries(principal).await? {
            match meta {
                Some(meta) if bound.as_deref() == Some(principal.as_str().as_bytes()) => {
                    sessions.extend(session_info(&entry.handle, &meta, seen.as_deref()));
                }
                _ if Self::stale(&entry, now) => dropped.push(entry.handle),
                _ => {}
            }
        }
        self.drop_entries(principal, dropped).await;
        Ok(sorted(sessions))
    }

    pub(crate) async fn revoke_one(
        &self,
        principal: &Principal,
        handle: &SessionHandle,
    ) -> Result<Revoked, Error> {
        let revoked = if self.index.in_scripts() {
            let mut call = self.revoke_call(principal);
            call.arg(handle.to_string()).arg("");
            self.script::<i64>(call).await? == 1
        } else {
            let mut command = redis::cmd("HGET");
            command
                .arg(self.index.key(principal))
                .arg(handle.to_string());
            let entry: Option<String> = self.query("index", command).await?;
            let Some(id) = entry.and_then(|e| e.split(':').next()?.parse::<Id>().ok()) else {
                return Ok(Revoked::NotFound);
            };
            let revoked = self.revoke_session(principal, &id).await?;
            self.drop_entries(principal, vec![handle.to_string().into_bytes()])
                .await;
            revoked
        };
        Ok(if revoked {
            Revoked::Revoked
        } else {
            Revoked::NotFound
        })
    }

    pub(crate) async fn revoke_every(
        &self,
        principal: &Principal,
        keep: Option<&SessionHandle>,
    ) -> Result<usize, Error> {
        let keep = keep.map(SessionHandle::to_string).unwrap_or_default();
        if self.index.in_scripts() {
            let mut call = self.revoke_call(principal);
            call.arg("").arg(keep);
            let revoked: i64 = self.script(call).await?;
            return Ok(usize::try_from(revoked).unwrap_or(0));
        }
        let mut command = redis::cmd("HGETALL");
        command.arg(self.index.key(principal));
        let doomed: Vec<Entry> = entries(self.query("index", command).await?)?
            .into_iter()
            .filter(|entry| entry.handle != keep.as_bytes())
            .collect();
        let results = join_all(
            doomed
                .iter()
                .map(|entry| self.revoke_session(principal, &entry.id)),
        )
        .await;
        let mut revoked = 0;
        let mut dropped = Vec::new();
        for (entry, result) in doomed.into_iter().zip(results) {
            if result? {
                revoked += 1;
            }
            dropped.push(entry.handle);
        }
        self.drop_entries(principal, dropped).await;
        Ok(revoked)
    }
}

static BIND: std::sync::LazyLock<NamedScript> = std::sync::LazyLock::new(|| {
    NamedScript::new(
        "bind",
        concat!(
            include_str!("scripts/index.lua"),
            include_str!("scripts/bind.lua")
        ),
    )
});
static LIST: std::sync::LazyLock<NamedScript> =
    std::sync::LazyLock::new(|| NamedScript::new("list", include_str!("scripts/list.lua")));
static REVOKE: std::sync::LazyLock<NamedScript> = std::sync::LazyLock::new(|| {
    NamedScript::new(
        "revoke",
        concat!(
            include_str!("scripts/events.lua"),
            include_str!("scripts/revoke.lua")
        ),
    )
});
static REVOKE_SESSION: std::sync::LazyLock<NamedScript> = std::sync::LazyLock::new(|| {
    NamedScript::new(
        "revoke_session",
        concat!(
            include_str!("scripts/events.lua"),
            include_str!("scripts/revoke_session.lua")
        ),
    )
});
