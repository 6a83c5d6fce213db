//! The shared store in Redis (`metrics.cache`): the producer's lock with
//! fencing tokens and the versioned publication of
//! [`nemutator_core::recommend::SharedStore`].
//!
//! Three keys, all under one hash tag so that a Redis Cluster keeps them in
//! one slot (the scripts touch several):
//!
//! * `{PREFIX}:fence`: the last fencing token handed out (`INCR`);
//! * `{PREFIX}:lock`: `"TOKEN HOLDER"`, set with `NX PX lock_ttl` by the
//!   replica that takes the lock, renewed with `PEXPIRE` while its value is
//!   unchanged;
//! * `{PREFIX}:published`: a hash of `version`, `token`, `at` (unix seconds)
//!   and `payload` (JSON of a [`Publication`], with its format number);
//! * `{PREFIX}:history`: the `kubernetes` source's usage history (JSON).
//!
//! Every write goes through a Lua script that compares the writer's token
//! with `{PREFIX}:fence` first, so a producer whose lock expired while it
//! computed is refused once another replica took the lock. No secret
//! reaches a log line or an error: the URL's password and `password_env`
//! are used, never printed.

use std::sync::LazyLock;
use std::time::Duration;

use nemutator_core::config::CacheConfig;
use nemutator_core::metrics::BoxFuture;
use nemutator_core::recommend::{Head, Publication, SharedError, SharedStore, SharedTiming};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::IntoConnectionInfo as _;
use serde::{Deserialize, Serialize};

/// The format of the published payload; a reader refuses any other.
pub const PAYLOAD_FORMAT: u32 = 1;

/// Take the lock when free, or renew it when `ARGV[1]` is our value.
/// KEYS: lock, fence. ARGV: held value (empty: none), holder, expiry in ms.
/// Returns the token held, or nil.
static LEAD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return tonumber(string.match(ARGV[1], '^%d+'))
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local token = redis.call('INCR', KEYS[2])
if redis.call('SET', KEYS[1], token .. ' ' .. ARGV[2], 'NX', 'PX', ARGV[3]) then
  return token
end
return false
",
    )
});

/// Publish (or, with an empty payload, confirm `at`) unless a newer token
/// exists. KEYS: fence, published. ARGV: token, at, payload.
/// Returns {version, fence}; version -1: fenced off, 0: nothing to confirm.
static PUBLISH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
if fence > tonumber(ARGV[1]) then
  return {-1, fence}
end
if ARGV[3] == '' then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    return {0, fence}
  end
  redis.call('HSET', KEYS[2], 'token', ARGV[1], 'at', ARGV[2])
  return {tonumber(redis.call('HGET', KEYS[2], 'version')), fence}
end
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
redis.call('HSET', KEYS[2], 'token', ARGV[1], 'at', ARGV[2], 'payload', ARGV[3])
return {version, fence}
",
    )
});

/// Why the Redis store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// The URL does not parse (not repeated: it may hold a password).
    #[error(
        "metrics.cache.redis is not a valid Redis URL (redis://HOST:PORT[/DB] or rediss://...)"
    )]
    Url,
    /// `password_env` names a variable that is not set.
    #[error("metrics.cache.password_env names {0}, which is not set")]
    PasswordEnv(String),
    /// A setting is out of range.
    #[error("metrics.cache.{0}")]
    Invalid(&'static str),
    /// The client could not be created.
    #[error("metrics.cache.redis: {0}")]
    Client(String),
}

/// The payload as stored: the format number, then the publication.
#[derive(Serialize)]
struct PayloadOut<'a> {
    format: u32,
    #[serde(flatten)]
    publication: &'a Publication,
}

#[derive(Deserialize)]
struct PayloadIn {
    format: u32,
    #[serde(flatten)]
    publication: Publication,
}

/// The [`SharedStore`] in Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    endpoint: String,
    holder: String,
    lock: String,
    fence: String,
    published: String,
    history: String,
    lock_ttl: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("endpoint", &self.endpoint)
            .field("holder", &self.holder)
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store for `config`; connects lazily (so a replica starts while Redis
    /// is down) and reconnects by itself. `holder` names this replica in the
    /// lock (e.g. the pod name).
    pub fn new(config: &CacheConfig, holder: &str) -> Result<Self, RedisSetupError> {
        let mut info = config
            .redis
            .as_str()
            .into_connection_info()
            .map_err(|_| RedisSetupError::Url)?;
        if let Some(var) = &config.password_env {
            let password =
                std::env::var(var).map_err(|_| RedisSetupError::PasswordEnv(var.clone()))?;
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        if config.lock_ttl.0 < Duration::from_secs(1) {
            return Err(RedisSetupError::Invalid("lock_ttl must be at least 1s"));
        }
        if config.timeout.0.is_zero() || config.timeout.0 >= config.lock_ttl.0 {
            return Err(RedisSetupError::Invalid(
                "timeout must be more than 0s and less than lock_ttl",
            ));
        }
        if config.prefix.is_empty() || config.prefix.contains(['{', '}']) {
            return Err(RedisSetupError::Invalid(
                "prefix must be non-empty and without braces",
            ));
        }
        let endpoint = format!("redis {}", info.addr());
        let client =
            redis::Client::open(info).map_err(|e| RedisSetupError::Client(e.to_string()))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout.0))
            .set_response_timeout(Some(config.timeout.0))
            .set_number_of_retries(1)
            .set_max_delay(config.timeout.0);
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| RedisSetupError::Client(e.to_string()))?;
        let key = |k: &str| format!("{{{}}}:{k}", config.prefix);
        Ok(RedisStore {
            conn,
            endpoint,
            holder: holder.replace(char::is_whitespace, "_"),
            lock: key("lock"),
            fence: key("fence"),
            published: key("published"),
            history: key("history"),
            lock_ttl: config.lock_ttl.0,
        })
    }

    /// The pacing `config` asks for, the producer refreshing after
    /// `refresh` at most.
    pub fn timing(config: &CacheConfig, refresh: Duration) -> SharedTiming {
        SharedTiming {
            tick: (config.lock_ttl.0 / 3).max(Duration::from_millis(100)),
            fresh_for: refresh.min(config.ttl.0),
        }
    }

    /// The key names: lock, fence, publication.
    pub fn keys(&self) -> [&str; 3] {
        [&self.lock, &self.fence, &self.published]
    }

    /// The usage history of the `kubernetes` source (`{PREFIX}:history`).
    pub async fn get_history(&self) -> Result<Option<Vec<u8>>, SharedError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(&self.history)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(&e))
    }

    /// Save the usage history of the `kubernetes` source.
    pub async fn set_history(&self, bytes: Vec<u8>) -> Result<(), SharedError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(&self.history)
            .arg(bytes)
            .exec_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(&e))
    }

    fn unavailable(&self, e: &redis::RedisError) -> SharedError {
        SharedError::Unavailable {
            store: self.endpoint.clone(),
            reason: e.to_string().replace('\n', " "),
        }
    }

    fn held_value(&self, token: u64) -> String {
        format!("{token} {}", self.holder)
    }

    async fn hmget<T: redis::FromRedisValue>(&self, fields: &[&str]) -> Result<T, SharedError> {
        let mut conn = self.conn.clone();
        redis::cmd("HMGET")
            .arg(&self.published)
            .arg(fields)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(&e))
    }
}

fn head_of(version: Option<u64>, token: Option<u64>, at: Option<i64>) -> Option<Head> {
    Some(Head {
        version: version?,
        token: token.unwrap_or(0),
        published_at: at.unwrap_or(0),
    })
}

impl SharedStore for RedisStore {
    fn describe(&self) -> String {
        self.endpoint.clone()
    }

    fn lead(&self, held: Option<u64>) -> BoxFuture<'_, Result<Option<u64>, SharedError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let ms = u64::try_from(self.lock_ttl.as_millis()).unwrap_or(u64::MAX);
            LEAD.key(&self.lock)
                .key(&self.fence)
                .arg(held.map(|t| self.held_value(t)).unwrap_or_default())
                .arg(&self.holder)
                .arg(ms)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.unavailable(&e))
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<Option<Head>, SharedError>> {
        Box::pin(async move {
            let (v, t, at): (Option<u64>, Option<u64>, Option<i64>) =
                self.hmget(&["version", "token", "at"]).await?;
            Ok(head_of(v, t, at))
        })
    }

    fn read(&self) -> BoxFuture<'_, Result<Option<(Head, Publication)>, SharedError>> {
        Box::pin(async move {
            let (v, t, at, payload): (Option<u64>, Option<u64>, Option<i64>, Option<Vec<u8>>) =
                self.hmget(&["version", "token", "at", "payload"]).await?;
            let (Some(head), Some(payload)) = (head_of(v, t, at), payload) else {
                return Ok(None);
            };
            let format = |reason: String| SharedError::Format {
                store: self.endpoint.clone(),
                reason,
            };
            let parsed: PayloadIn =
                serde_json::from_slice(&payload).map_err(|e| format(e.to_string()))?;
            if parsed.format != PAYLOAD_FORMAT {
                return Err(format(format!(
                    "format {} (this version reads {PAYLOAD_FORMAT})",
                    parsed.format
                )));
            }
            Ok(Some((head, parsed.publication)))
        })
    }

    fn publish<'a>(
        &'a self,
        token: u64,
        publication: Option<&'a Publication>,
        published_at: i64,
    ) -> BoxFuture<'a, Result<Head, SharedError>> {
        Box::pin(async move {
            let payload = match publication {
                Some(publication) => serde_json::to_vec(&PayloadOut {
                    format: PAYLOAD_FORMAT,
                    publication,
                })
                .map_err(|e| SharedError::Format {
                    store: self.endpoint.clone(),
                    reason: e.to_string(),
                })?,
                None => Vec::new(),
            };
            let mut conn = self.conn.clone();
            let (version, fence): (i64, u64) = PUBLISH
                .key(&self.fence)
                .key(&self.published)
                .arg(token)
                .arg(published_at)
                .arg(payload)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.unavailable(&e))?;
            if version < 0 {
                return Err(SharedError::Fenced {
                    token,
                    newer: fence,
                });
            }
            Ok(Head {
                version: version as u64,
                token,
                published_at,
            })
        })
    }
}
