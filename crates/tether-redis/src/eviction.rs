//! The eviction check when the store connects.
//!
//! A Redis over `maxmemory` whose `maxmemory-policy` evicts deletes keys to make room, session
//! hashes among them: the user is logged out and nothing reports an error. Sessions carry a TTL,
//! so the `volatile-*` policies pick them as readily as `allkeys-*`. `noeviction` refuses writes
//! instead, which the layer turns into 503s whose logged cause says what happened, and no session
//! is lost. So the store reads the policy once at connect and warns when it can evict.
//!
//! The check must never cost the application its start: a refused `CONFIG GET` (renamed away,
//! or not granted to an ACL user, which is right: it also reads secrets such as `masterauth`),
//! an odd reply or a slow answer only skip it, with a debug message.

use std::time::Duration;

use redis::{RedisResult, Value};

use crate::connection::Connection;
use crate::layout;

/// The memory settings one master reported.
#[derive(Debug, PartialEq, Eq)]
struct Memory {
    policy: String,
    /// `maxmemory` in bytes; 0 is no limit (until someone sets one).
    maxmemory: Option<u64>,
}

/// Reads `maxmemory-policy` from the master (every master of a Cluster), bounded by `timeout`,
/// and logs one warning naming the masters whose policy can evict sessions.
pub(crate) async fn warn_if_evicting(connection: &Connection, timeout: Duration) {
    let replies = match tokio::time::timeout(timeout, read(connection)).await {
        Ok(Ok(replies)) => replies,
        Ok(Err(error)) => {
            tracing::debug!(error = %error, "could not read Redis's maxmemory-policy (CONFIG GET refused?); eviction check skipped");
            return;
        }
        Err(_) => {
            tracing::debug!(
                ?timeout,
                "Redis did not answer CONFIG GET maxmemory-policy in time; eviction check skipped"
            );
            return;
        }
    };
    let mut evicting = Vec::new();
    for (node, reply) in replies {
        let node = node.map(|n| format!("{n} ")).unwrap_or_default();
        match memory(&reply) {
            Some(memory) if evicts(&memory.policy) => {
                let limit = memory
                    .maxmemory
                    .map_or_else(|| "unknown".to_owned(), |bytes| bytes.to_string());
                evicting.push(format!("{node}{} (maxmemory {limit})", memory.policy));
            }
            Some(memory) => {
                tracing::debug!(node = %node.trim_end(), policy = %memory.policy, "Redis does not evict sessions");
            }
            None => {
                tracing::debug!(node = %node.trim_end(), ?reply, "could not read Redis's maxmemory-policy; eviction check skipped");
            }
        }
    }
    if !evicting.is_empty() {
        tracing::warn!(
            policy = %evicting.join(", "),
            "Redis may evict sessions when it reaches maxmemory, which logs users out without an error; \
             set maxmemory-policy noeviction (tether-redis docs: Memory)"
        );
    }
}

/// Sends `CONFIG GET maxmemory-policy maxmemory` (several parameters: Redis 7.0) to the master,
/// or to every master of a Cluster, each reply with the node's address there.
async fn read(connection: &Connection) -> RedisResult<Vec<(Option<String>, Value)>> {
    let mut command = redis::cmd("CONFIG");
    command.arg("GET").arg("maxmemory-policy").arg("maxmemory");
    let mut handle = connection.get().await?;
    #[cfg(feature = "cluster")]
    if let crate::connection::Handle::Cluster(cluster) = &mut handle {
        use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
        // Without a response policy, redis-rs answers with a map of node address to reply, a
        // node's error reply included.
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        return Ok(match cluster.route_command(command, routing).await? {
            Value::Map(replies) => replies
                .into_iter()
                .map(|(node, reply)| (Some(text(&node)), reply))
                .collect(),
            other => vec![(None, other)],
        });
    }
    let result = command.query_async(&mut handle).await;
    if let Err(error) = &result {
        handle.failed(error);
    }
    Ok(vec![(None, result?)])
}

/// The settings in a `CONFIG GET` reply (a flat array in RESP2, a map in RESP3); `None` for an
/// error reply or a reply without the policy.
fn memory(reply: &Value) -> Option<Memory> {
    let pairs = layout::pairs(reply.clone()).ok()?;
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    };
    Some(Memory {
        policy: field("maxmemory-policy")?,
        maxmemory: field("maxmemory").and_then(|bytes| bytes.parse().ok()),
    })
}

/// Whether `policy` deletes keys at `maxmemory`: the `allkeys-*` and `volatile-*` ones do,
/// `noeviction` does not.
fn evicts(policy: &str) -> bool {
    let policy = policy.to_ascii_lowercase();
    policy.starts_with("allkeys-") || policy.starts_with("volatile-")
}

/// A node address in a Cluster reply, as text.
#[cfg(feature = "cluster")]
fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_both_reply_shapes() {
        let expected = Some(Memory {
            policy: "allkeys-lru".into(),
            maxmemory: Some(1024),
        });
        let resp2 = Value::Array(vec![
            bulk("maxmemory"),
            bulk("1024"),
            bulk("maxmemory-policy"),
            bulk("allkeys-lru"),
        ]);
        assert_eq!(memory(&resp2), expected);
        let resp3 = Value::Map(vec![
            (bulk("maxmemory-policy"), bulk("allkeys-lru")),
            (bulk("maxmemory"), bulk("1024")),
        ]);
        assert_eq!(memory(&resp3), expected);
    }

    #[test]
    fn odd_replies_are_no_reading() {
        assert_eq!(memory(&Value::Array(vec![])), None);
        assert_eq!(memory(&Value::Int(3)), None);
        assert_eq!(memory(&Value::Array(vec![bulk("maxmemory-policy")])), None);
        let without_limit = Value::Array(vec![bulk("maxmemory-policy"), bulk("noeviction")]);
        assert_eq!(
            memory(&without_limit),
            Some(Memory {
                policy: "noeviction".into(),
                maxmemory: None
            })
        );
    }

    #[test]
    fn every_policy_but_noeviction_evicts() {
        for policy in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "ALLKEYS-LRU",
        ] {
            assert!(evicts(policy), "{policy}");
        }
        assert!(!evicts("noeviction"));
        assert!(!evicts(""));
    }
}
