//! The servers the stacks keep their sessions in: Redis and PostgreSQL, started or reached only
//! when a stack of the run needs them.

use tether_core::BoxError;

use crate::postgres_env::PostgresEnv;
use crate::redis_env::RedisEnv;
use crate::stacks::Stack;

/// The stores' servers of one run.
#[derive(Default)]
pub(crate) struct Backends {
    redis: Option<RedisEnv>,
    postgres: Option<PostgresEnv>,
}

impl Backends {
    /// What `stacks` need: Redis at `redis_url` (or a private redis-server), PostgreSQL at
    /// `postgres_url`.
    pub(crate) fn for_stacks(
        stacks: &[Stack],
        redis_url: Option<String>,
        postgres_url: &str,
    ) -> Result<Self, BoxError> {
        let redis = if stacks.iter().any(|s| s.uses_redis()) {
            Some(RedisEnv::new(redis_url)?)
        } else {
            None
        };
        let postgres = stacks
            .iter()
            .any(|s| s.uses_postgres())
            .then(|| PostgresEnv::new(postgres_url.to_owned()));
        Ok(Self { redis, postgres })
    }

    pub(crate) fn redis(&self) -> Option<&RedisEnv> {
        self.redis.as_ref()
    }

    pub(crate) fn postgres(&self) -> Option<&PostgresEnv> {
        self.postgres.as_ref()
    }

    /// Empties what `stack` keeps its sessions in, so each run starts from the same state.
    pub(crate) async fn reset_for(&self, stack: Stack) -> Result<(), BoxError> {
        if let (true, Some(redis)) = (stack.uses_redis(), self.redis()) {
            redis.flush().await?;
        }
        if let (true, Some(postgres)) = (stack.uses_postgres(), self.postgres()) {
            postgres.reset().await?;
        }
        Ok(())
    }
}
