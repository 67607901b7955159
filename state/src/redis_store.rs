//! The Redis backend: every write is one Lua script, so each operation is one atomic round trip.
//!
//! Keys: `{namespace}:key:{idempotency key}` is a hash holding the record (fields `job_id`, `state`,
//! `attempt`, `owner`, `lease_until`, `retry_published`, `next_attempt_at`, `progress` (JSON),
//! `result` (JSON), `error`, `error_kind`, `updated_at`; an absent field is `None`), and
//! `{namespace}:job:{job id}` holds the job's idempotency key; `{namespace}:accepted:{job id}` marks
//! a job the API accepted. Every write sets the touched keys' expiry to the retention, so Redis
//! prunes by itself.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Script};
use uuid::Uuid;

use crate::model::{Claim, ClaimRequest, Finish, FinishedState, JobStatus, Millis, StateStore, StoreError};
use crate::redact;
use crate::sqlite::{duration_ms, parse_json};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_RETRIES: usize = 6;
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(2);

/// KEYS: record, job index. ARGV: job id, attempt, owner, now, lease until, retention ms, key,
/// replay ('1' or '0').
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local rec_key, job_key = KEYS[1], KEYS[2]
local job_id, attempt, owner, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local lease_until, retention, idem_key, replay = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
redis.call('SET', job_key, idem_key, 'PX', retention)
local rec = redis.call('HMGET', rec_key, 'job_id', 'state', 'attempt', 'lease_until',
    'retry_published', 'progress')
local r_job, r_state, r_attempt, r_lease, r_pub, r_progress =
    rec[1], rec[2], rec[3], rec[4], rec[5], rec[6]
local function acquire(new_attempt)
  redis.call('HSET', rec_key, 'job_id', job_id, 'state', 'running', 'attempt', new_attempt,
      'owner', owner, 'lease_until', lease_until, 'retry_published', '0', 'updated_at', now)
  redis.call('HDEL', rec_key, 'next_attempt_at')
  redis.call('PEXPIRE', rec_key, retention)
end
if not r_state then
  acquire(attempt)
  return {'acquired', '', ''}
end
local progress = r_progress or ''
if r_state == 'dead' and replay == '1' then
  acquire(attempt)
  return {'acquired', progress, ''}
end
if r_state == 'succeeded' or r_state == 'dead' then
  return {'finished', r_state}
end
local stored = tonumber(r_attempt or '0') or 0
if r_state == 'running' then
  if (tonumber(r_lease or '0') or 0) > tonumber(now) then
    return {'busy', r_lease}
  end
  if stored > tonumber(attempt) then
    acquire(r_attempt)
  else
    acquire(attempt)
  end
  return {'acquired', progress, r_attempt or '0'}
end
if r_state == 'retrying' then
  if r_job ~= job_id then
    return {'stale'}
  end
  if tonumber(attempt) > stored then
    acquire(attempt)
    return {'acquired', progress, ''}
  end
  if tonumber(attempt) == stored and r_pub ~= '1' then
    return {'retry_unpublished', r_attempt, progress}
  end
  return {'stale'}
end
return {'corrupt', tostring(r_state)}
",
    )
});

/// KEYS: record. ARGV: retention ms, job index prefix, number of field/value pairs n, the n pairs,
/// then the fields to delete. A missing record is left alone.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local job = redis.call('HGET', KEYS[1], 'job_id')
if not job then
  return 0
end
local n = tonumber(ARGV[3])
local set = {}
for i = 4, 3 + 2 * n do
  set[#set + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(set))
local del = {}
for i = 4 + 2 * n, #ARGV do
  del[#del + 1] = ARGV[i]
end
if #del > 0 then
  redis.call('HDEL', KEYS[1], unpack(del))
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', ARGV[2] .. job, ARGV[1])
return 1
",
    )
});

/// KEYS: records. ARGV: owner, lease until, now, retention ms.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for _, key in ipairs(KEYS) do
  local rec = redis.call('HMGET', key, 'state', 'owner')
  if rec[1] == 'running' and rec[2] == ARGV[1] then
    redis.call('HSET', key, 'lease_until', ARGV[2], 'updated_at', ARGV[3])
    redis.call('PEXPIRE', key, ARGV[4])
  end
end
return 0
",
    )
});

/// KEYS: record. ARGV: attempt, retention ms.
static RETRY_PUBLISHED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local rec = redis.call('HMGET', KEYS[1], 'state', 'attempt')
if rec[1] == 'retrying' and rec[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'retry_published', '1')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// KEYS: job index. ARGV: record prefix. Returns the record's key then its fields, or nothing.
static STATUS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key = redis.call('GET', KEYS[1])
if not key then
  return {}
end
local fields = redis.call('HGETALL', ARGV[1] .. key)
if #fields == 0 then
  return {}
end
table.insert(fields, 1, key)
return fields
",
    )
});

/// The Redis state store; cheap to share, reconnects by itself.
pub struct RedisStore {
    conn: ConnectionManager,
    /// The URL with its credentials masked.
    url: String,
    namespace: String,
    retention_ms: i64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("namespace", &self.namespace)
            .field("retention_ms", &self.retention_ms)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A handle on the store's connection, for the parking lot beside it.
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Connects to `url` (`redis://[[user]:password@]host:port/db`) and checks it with a PING, so
    /// that a wrong address or password fails here. No error or debug text carries the password.
    /// Keys live under `namespace` and expire `retention` after their last change.
    pub async fn open(url: &str, namespace: &str, retention: Duration) -> Result<Self, StoreError> {
        let redacted = redact::url_credentials(url);
        let secrets = secrets_of(url);
        let fail = |e: redis::RedisError| scrub(e, &secrets, &redacted);

        let client = redis::Client::open(url)
            .map_err(|e| StoreError::BadUrl(format!("{redacted} ({})", redact::secrets(&e.to_string(), &secrets))))?;
        let probe_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut probe = client.get_multiplexed_async_connection_with_config(&probe_config).await.map_err(fail)?;
        let _pong: String = redis::cmd("PING").query_async(&mut probe).await.map_err(fail)?;
        drop(probe);

        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(RECONNECT_MAX_DELAY);
        let conn = ConnectionManager::new_with_config(client, config).await.map_err(fail)?;
        Ok(Self { conn, url: redacted, namespace: namespace.to_string(), retention_ms: duration_ms(retention).max(1) })
    }

    fn record_key(&self, key: &str) -> String {
        format!("{}:key:{key}", self.namespace)
    }

    fn job_key(&self, job_id: Uuid) -> String {
        format!("{}:job:{job_id}", self.namespace)
    }

    fn accepted_key(&self, job_id: Uuid) -> String {
        format!("{}:accepted:{job_id}", self.namespace)
    }
}

/// The URL's password and username (when set), to keep out of error text.
fn secrets_of(url: &str) -> Vec<String> {
    let Some(parsed) = redis::parse_redis_url(url) else {
        return Vec::new();
    };
    let mut secrets = Vec::new();
    if let Some(password) = parsed.password() {
        secrets.push(password.to_string());
        if let Ok(decoded) = percent_decode(password) {
            secrets.push(decoded);
        }
    }
    secrets.retain(|s| !s.is_empty());
    secrets
}

fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// A connection error, unless its text would reveal a secret (the client does not put credentials
/// in its errors, but a server's reply might echo them).
fn scrub(e: redis::RedisError, secrets: &[String], redacted: &str) -> StoreError {
    let text = e.to_string();
    if secrets.iter().any(|s| text.contains(s.as_str())) {
        StoreError::Task(format!("redis connection to {redacted} failed: {}", redact::secrets(&text, secrets)))
    } else {
        StoreError::Redis(e)
    }
}

fn retry_in(lease_until: &str, now: Millis, key: &str) -> Result<Duration, StoreError> {
    let lease_until: Millis = lease_until.parse().map_err(|_| StoreError::Corrupt {
        key: key.to_string(),
        reason: format!("lease_until {lease_until:?} is not a number"),
    })?;
    Ok(Duration::from_millis(lease_until.saturating_sub(now).max(1).unsigned_abs()))
}

fn parse_attempt(text: &str, key: &str) -> Result<u32, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt { key: key.to_string(), reason: format!("attempt {text:?} is not a number") })
}

fn nonempty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

#[async_trait::async_trait]
impl StateStore for RedisStore {
    async fn claim(&self, request: &ClaimRequest) -> Result<Claim, StoreError> {
        let lease_until = request.now.saturating_add(duration_ms(request.lease));
        let reply: Vec<String> = CLAIM
            .key(self.record_key(&request.key))
            .key(self.job_key(request.job_id))
            .arg(request.job_id.to_string())
            .arg(request.attempt.to_string())
            .arg(&request.owner)
            .arg(request.now.to_string())
            .arg(lease_until.to_string())
            .arg(self.retention_ms.to_string())
            .arg(&request.key)
            .arg(if request.replay { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await?;
        let key = request.key.as_str();
        let field = |i: usize| reply.get(i).map(String::as_str).unwrap_or_default();
        match field(0) {
            "acquired" => Ok(Claim::Acquired {
                progress: parse_json(key, "progress", nonempty(field(1)))?,
                orphaned_attempt: nonempty(field(2)).map(|a| parse_attempt(a, key)).transpose()?,
            }),
            "finished" => Ok(Claim::Finished {
                state: if field(1) == "succeeded" { FinishedState::Succeeded } else { FinishedState::Dead },
            }),
            "busy" => Ok(Claim::Busy { retry_in: retry_in(field(1), request.now, key)? }),
            "retry_unpublished" => Ok(Claim::RetryUnpublished {
                attempt: parse_attempt(field(1), key)?,
                progress: parse_json(key, "progress", nonempty(field(2)))?,
            }),
            "stale" => Ok(Claim::Stale),
            other => Err(StoreError::Corrupt {
                key: key.to_string(),
                reason: format!("claim answered {other:?} {:?}", field(1)),
            }),
        }
    }

    async fn renew(&self, owner: &str, keys: &[String], now: Millis, lease: Duration) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut invocation = RENEW.prepare_invoke();
        for key in keys {
            invocation.key(self.record_key(key));
        }
        let _: i64 = invocation
            .arg(owner)
            .arg(now.saturating_add(duration_ms(lease)).to_string())
            .arg(now.to_string())
            .arg(self.retention_ms.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn finish(&self, key: &str, _owner: &str, finish: &Finish, now: Millis) -> Result<(), StoreError> {
        let mut set: Vec<(&str, String)> = Vec::new();
        let mut del: Vec<&str> = vec!["owner", "lease_until"];
        match finish {
            Finish::Retrying { attempt, progress, error, next_attempt_at } => {
                set.push(("state", "retrying".to_string()));
                set.push(("attempt", attempt.to_string()));
                set.push(("error", error.clone()));
                set.push(("next_attempt_at", next_attempt_at.to_string()));
                set.push(("retry_published", "0".to_string()));
                if let Some(progress) = progress {
                    set.push(("progress", progress.to_string()));
                }
            }
            Finish::Succeeded { attempt, result } => {
                set.push(("state", "succeeded".to_string()));
                set.push(("attempt", attempt.to_string()));
                match result {
                    Some(result) => set.push(("result", result.to_string())),
                    None => del.push("result"),
                }
                del.extend(["error", "error_kind", "next_attempt_at"]);
            }
            Finish::Dead { attempt, kind, error, progress } => {
                set.push(("state", "dead".to_string()));
                set.push(("attempt", attempt.to_string()));
                set.push(("error_kind", kind.clone()));
                set.push(("error", error.clone()));
                if let Some(progress) = progress {
                    set.push(("progress", progress.to_string()));
                }
                del.push("next_attempt_at");
            }
        }
        set.push(("updated_at", now.to_string()));

        let mut invocation = FINISH.key(self.record_key(key));
        invocation
            .arg(self.retention_ms.to_string())
            .arg(format!("{}:job:", self.namespace))
            .arg(set.len().to_string());
        for (field, value) in &set {
            invocation.arg(*field).arg(value);
        }
        for field in &del {
            invocation.arg(*field);
        }
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn retry_published(&self, key: &str, attempt: u32) -> Result<(), StoreError> {
        let _: i64 = RETRY_PUBLISHED
            .key(self.record_key(key))
            .arg(attempt.to_string())
            .arg(self.retention_ms.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn status(&self, job_id: Uuid) -> Result<Option<JobStatus>, StoreError> {
        let reply: Vec<String> = STATUS
            .key(self.job_key(job_id))
            .arg(format!("{}:key:", self.namespace))
            .invoke_async(&mut self.conn.clone())
            .await?;
        let Some((key, fields)) = reply.split_first() else {
            return Ok(None);
        };
        let record: HashMap<&str, &str> =
            fields.chunks_exact(2).map(|pair| (pair[0].as_str(), pair[1].as_str())).collect();
        let corrupt = |reason: String| StoreError::Corrupt { key: key.clone(), reason };
        let get = |field: &str| record.get(field).copied();
        let owner_job = get("job_id").unwrap_or_default();
        let owner_job = Uuid::parse_str(owner_job).map_err(|e| corrupt(format!("job id {owner_job:?}: {e}")))?;
        let state = get("state").unwrap_or_default();
        if !matches!(state, "running" | "retrying" | "succeeded" | "dead") {
            return Err(corrupt(format!("unknown state {state:?}")));
        }
        let next_attempt_at = get("next_attempt_at")
            .map(|t| t.parse::<Millis>().map_err(|_| corrupt(format!("next_attempt_at {t:?} is not a number"))))
            .transpose()?;
        Ok(Some(JobStatus {
            id: job_id,
            status: state.to_string(),
            attempts: parse_attempt(get("attempt").unwrap_or_default(), key)?,
            result: parse_json(key, "result", get("result"))?,
            error: get("error").map(str::to_string),
            error_kind: get("error_kind").map(str::to_string),
            next_attempt_at,
            duplicate_of: (owner_job != job_id).then_some(owner_job),
        }))
    }

    async fn accept(&self, job_ids: &[Uuid], _now: Millis) -> Result<(), StoreError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        // One MULTI/EXEC for the batch: one round trip, all or nothing.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for job_id in job_ids {
            pipe.cmd("SET").arg(self.accepted_key(*job_id)).arg("1").arg("PX").arg(self.retention_ms).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn accepted(&self, job_id: Uuid) -> Result<bool, StoreError> {
        let found: bool =
            redis::cmd("EXISTS").arg(self.accepted_key(job_id)).query_async(&mut self.conn.clone()).await?;
        Ok(found)
    }

    async fn prune(&self, _now: Millis) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::{percent_decode, secrets_of};
    use crate::redact;

    #[test]
    fn finds_and_masks_passwords() {
        let secrets = secrets_of("redis://user:p%40ss@host:6379/0");
        assert!(secrets.contains(&"p%40ss".to_string()));
        assert!(secrets.contains(&"p@ss".to_string()));
        assert_eq!(redact::secrets("AUTH p@ss failed", &secrets), "AUTH *** failed");
        assert!(secrets_of("redis://host:6379/0").is_empty());
        assert_eq!(percent_decode("a%2Fb%").ok().as_deref(), Some("a/b%"));
    }
}
