//! The Redis backend: every write is one Lua script, so each operation is one atomic round trip.
//!
//! Keys: `{namespace}:key:{idempotency key}` is a hash holding the record (fields `job_id`, `state`,
//! `attempt`, `owner`, `lease_until`, `retry_published`, `next_attempt_at`, `progress` (JSON),
//! `result` (JSON), `error`, `error_kind`, `updated_at`, `campaign`; an absent field is `None`),
//! and `{namespace}:job:{job id}` holds the job's idempotency key; `{namespace}:accepted:{job id}`
//! marks a job the API accepted, `{namespace}:tomb:{job id}` one cancelled before it had a record,
//! `{namespace}:counted:{job id}` a campaign's duplicate already counted. A succeeded record that
//! expects receipts has `d:<recipient>` fields (`pending`, or `<state>\t<at>\t<code>`),
//! `dpending` (how many are pending) and `notify` (the callback); `{namespace}:sid:{sid}` (hash:
//! `key`, `recipient`, `at`, `pull`) finds it by the provider's message id, `{namespace}:early:{sid}`
//! holds a receipt that came first, `{namespace}:pull:{queue}` (sorted set, by due time) lists the
//! messages whose receipts are asked for, and `{namespace}:lease:{name}` is a lease. A campaign is the hash
//! `{namespace}:campaign:{id}` (`tenant`, `key`, `head`, `send_at`, `created_at`, `total`,
//! `control`, and the counters `n:<status>`), found by `{namespace}:campaign_key:{tenant}:{key}`;
//! `{namespace}:campaigns` (sorted set, all scores 0, so ordered by id) lists them for the console
//! (an id whose campaign expired is dropped from it when a listing meets it).
//! Every write sets the touched keys' expiry to the retention (a waiting record's to the retention
//! after it is due), so Redis prunes by itself.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use uuid::Uuid;

use crate::model::parse_json;
use crate::model::{
    CampaignControl, CampaignRecord, CampaignStatus, CancelOutcome, Claim, ClaimRequest, Delivery, DeliveryDone,
    DeliveryState, EARLY_RECEIPT_TTL, Finish, FinishedState, JobStatus, Millis, PendingReceipt, RECORD_STATUSES,
    Receipt, ReceiptsRecorded, StateStore, StoreError, now_millis,
};
use crate::redis_conn::{RedisConnection, percent_decode, redis_connect};
use crate::sqlite::{duration_ms, parse_campaign_id, parse_control, tombstone_status};
use crate::{redact, tenants};

/// The Lua function that moves a campaign's counters (see [`StateStore`]): nothing for a record
/// without a campaign, or one whose campaign is unknown; keeps the campaign at least `retention`.
macro_rules! lua_count {
    () => {
        r"
local function count(cprefix, camp, from, to, retention)
  if not camp or camp == '' or from == to then
    return
  end
  local ckey = cprefix .. camp
  if redis.call('EXISTS', ckey) == 0 then
    return
  end
  if from then
    redis.call('HINCRBY', ckey, 'n:' .. from, -1)
  end
  redis.call('HINCRBY', ckey, 'n:' .. to, 1)
  local ttl = redis.call('PTTL', ckey)
  if ttl >= 0 and ttl < tonumber(retention) then
    redis.call('PEXPIRE', ckey, retention)
  end
end
"
    };
}

/// KEYS: record, job index, tombstone, counted marker. ARGV: job id, attempt, owner, now, lease
/// until, retention ms, key, replay ('1' or '0'), campaign ('' for none), campaign prefix.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_count!(),
        r"
local rec_key, job_key, tomb_key, counted_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, attempt, owner, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local lease_until, retention, idem_key, replay = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local campaign, cprefix = ARGV[9], ARGV[10]
redis.call('SET', job_key, idem_key, 'PX', retention)
local rec = redis.call('HMGET', rec_key, 'job_id', 'state', 'attempt', 'lease_until',
    'retry_published', 'progress', 'campaign')
local r_job, r_state, r_attempt, r_lease, r_pub, r_progress, r_campaign =
    rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7]
local function duplicate()
  if campaign ~= '' and redis.call('SET', counted_key, '1', 'NX', 'PX', retention) then
    count(cprefix, campaign, false, 'duplicate', retention)
  end
end
local function acquire(new_attempt)
  redis.call('HSET', rec_key, 'job_id', job_id, 'state', 'running', 'attempt', new_attempt,
      'owner', owner, 'lease_until', lease_until, 'retry_published', '0', 'updated_at', now)
  redis.call('HDEL', rec_key, 'next_attempt_at')
  local rec_campaign = r_campaign
  if not r_state and campaign ~= '' then
    redis.call('HSET', rec_key, 'campaign', campaign)
    rec_campaign = campaign
  end
  redis.call('PEXPIRE', rec_key, retention)
  count(cprefix, rec_campaign, r_state, 'running', retention)
end
-- Only a job that is not the record's own can have a tombstone (cancelled before any record).
if (not r_state or r_job ~= job_id) and redis.call('EXISTS', tomb_key) == 1 then
  if not r_state then
    redis.call('HSET', rec_key, 'job_id', job_id, 'state', 'cancelled', 'attempt', '0', 'updated_at', now)
    if campaign ~= '' then
      redis.call('HSET', rec_key, 'campaign', campaign)
    end
    redis.call('PEXPIRE', rec_key, retention)
    count(cprefix, campaign, false, 'cancelled', retention)
    return {'finished', 'cancelled'}
  end
  duplicate()
  return {'finished', 'cancelled'}
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
if r_state == 'succeeded' or r_state == 'dead' or r_state == 'cancelled' or r_state == 'capped' then
  if r_job ~= job_id then
    duplicate()
  end
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
if r_state == 'retrying' or r_state == 'scheduled' or r_state == 'deferred' then
  if r_job ~= job_id then
    duplicate()
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
    ))
});

/// KEYS: record. ARGV: the record's expiry (ms), retention ms, job index prefix, campaign prefix,
/// the new state, number of field/value pairs n, number of fields to delete m, the n pairs, the
/// m fields; then the expected receipts: their number s, the idempotency key, the pull queue
/// ('' for none), the callback ('' for none), the sid, early-receipt and pull-queue prefixes,
/// now, and s (sid, recipient) pairs. A missing record is left alone.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_count!(),
        r"
local rec = redis.call('HMGET', KEYS[1], 'job_id', 'state', 'campaign')
local job = rec[1]
if not job then
  return 0
end
local n, m = tonumber(ARGV[6]), tonumber(ARGV[7])
local set = {}
for i = 8, 7 + 2 * n do
  set[#set + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(set))
local del = {}
for i = 8 + 2 * n, 7 + 2 * n + m do
  del[#del + 1] = ARGV[i]
end
if #del > 0 then
  redis.call('HDEL', KEYS[1], unpack(del))
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', ARGV[3] .. job, ARGV[1])
count(ARGV[4], rec[3], rec[2], ARGV[5], ARGV[2])
local r = 8 + 2 * n + m
local s = tonumber(ARGV[r] or '0')
if s > 0 then
  local idem, pull, notify = ARGV[r + 1], ARGV[r + 2], ARGV[r + 3]
  local sidp, earlyp, pullp, now = ARGV[r + 4], ARGV[r + 5], ARGV[r + 6], ARGV[r + 7]
  local pending, delivered, undelivered = 0, 0, 0
  for i = 0, s - 1 do
    local sid, recipient = ARGV[r + 8 + 2 * i], ARGV[r + 9 + 2 * i]
    local skey = sidp .. sid
    redis.call('HSET', skey, 'key', idem, 'recipient', recipient, 'at', now, 'pull', pull)
    redis.call('PEXPIRE', skey, ARGV[2])
    local early = redis.call('GET', earlyp .. sid)
    if early then
      redis.call('HSET', KEYS[1], 'd:' .. recipient, early)
      redis.call('DEL', earlyp .. sid)
      if string.sub(early, 1, 10) == 'delivered' .. string.char(9) then
        delivered = delivered + 1
      else
        undelivered = undelivered + 1
      end
    else
      redis.call('HSET', KEYS[1], 'd:' .. recipient, 'pending')
      pending = pending + 1
      if pull ~= '' then
        redis.call('ZADD', pullp .. pull, now, sid)
        redis.call('PEXPIRE', pullp .. pull, ARGV[2])
      end
    end
  end
  redis.call('HSET', KEYS[1], 'dpending', pending)
  if notify ~= '' then
    redis.call('HSET', KEYS[1], 'notify', notify)
  end
  local camp = rec[3]
  if camp and camp ~= '' and delivered + undelivered > 0 and redis.call('EXISTS', ARGV[4] .. camp) == 1 then
    redis.call('HINCRBY', ARGV[4] .. camp, 'n:delivered', delivered)
    redis.call('HINCRBY', ARGV[4] .. camp, 'n:undelivered', undelivered)
  end
end
return 1
",
    ))
});

/// ARGV: sid, record, early-receipt, pull-queue and campaign prefixes, retention ms, early
/// receipts' expiry ms, now, then per receipt: sid, state (`delivered` or `failed`), at, code.
/// Returns the receipts counted, the early ones kept, then (job id, callback) of every record
/// whose receipts all became final and that has a callback.
static RECEIPTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local sidp, recp, earlyp, pullp, cprefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local retention, early_ttl, now = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local counted, early = 0, 0
local done = {}
for i = 9, #ARGV, 4 do
  local sid, state, at, code = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local value = state .. string.char(9) .. at .. string.char(9) .. code
  local idx = redis.call('HMGET', sidp .. sid, 'key', 'recipient', 'pull')
  if not idx[1] then
    if redis.call('SET', earlyp .. sid, value, 'NX', 'PX', early_ttl) then
      early = early + 1
    end
  else
    local rk = recp .. idx[1]
    local field = 'd:' .. idx[2]
    local cur = redis.call('HMGET', rk, field, 'campaign', 'notify', 'job_id')
    if cur[1] == 'pending' then
      redis.call('HSET', rk, field, value, 'updated_at', now)
      local left = redis.call('HINCRBY', rk, 'dpending', -1)
      local ttl = redis.call('PTTL', rk)
      if ttl >= 0 and ttl < retention then
        redis.call('PEXPIRE', rk, retention)
      end
      if cur[2] and cur[2] ~= '' and redis.call('EXISTS', cprefix .. cur[2]) == 1 then
        local counter = 'n:undelivered'
        if state == 'delivered' then
          counter = 'n:delivered'
        end
        redis.call('HINCRBY', cprefix .. cur[2], counter, 1)
      end
      if idx[3] and idx[3] ~= '' then
        redis.call('ZREM', pullp .. idx[3], sid)
      end
      counted = counted + 1
      if left <= 0 and cur[3] then
        done[#done + 1] = cur[4]
        done[#done + 1] = cur[3]
      end
    end
  end
end
local out = {tostring(counted), tostring(early)}
for _, v in ipairs(done) do
  out[#out + 1] = v
end
return out
",
    )
});

/// ARGV: pull queue key, sid prefix, now, next due, limit. Returns (sid, recipient, sent at) of
/// the due entries, made due again at `next due`; entries whose sid index expired are dropped.
static TAKE_PENDING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local sids = redis.call('ZRANGEBYSCORE', ARGV[1], '-inf', ARGV[3], 'LIMIT', 0, ARGV[5])
local out = {}
for _, sid in ipairs(sids) do
  local idx = redis.call('HMGET', ARGV[2] .. sid, 'recipient', 'at')
  if idx[1] then
    redis.call('ZADD', ARGV[1], ARGV[4], sid)
    out[#out + 1] = sid
    out[#out + 1] = idx[1]
    out[#out + 1] = idx[2] or '0'
  else
    redis.call('ZREM', ARGV[1], sid)
  end
end
return out
",
    )
});

/// KEYS: lease. ARGV: owner, ttl ms. 1 when the owner holds it now.
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
",
    )
});

/// KEYS: job index, accepted mark, tombstone. ARGV: record prefix, campaign prefix, retention
/// ms, now, job id. Answers `cancelled`, `started` or `unknown`.
static CANCEL_JOB: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_count!(),
        r"
local key = redis.call('GET', KEYS[1])
if key then
  local rec_key = ARGV[1] .. key
  local rec = redis.call('HMGET', rec_key, 'job_id', 'state', 'campaign')
  local state = rec[2]
  if state then
    if rec[1] == ARGV[5] then
      if state == 'retrying' or state == 'scheduled' or state == 'deferred' then
        redis.call('HSET', rec_key, 'state', 'cancelled', 'updated_at', ARGV[4])
        redis.call('HDEL', rec_key, 'next_attempt_at', 'error', 'owner', 'lease_until')
        redis.call('PEXPIRE', rec_key, ARGV[3])
        count(ARGV[2], rec[3], state, 'cancelled', ARGV[3])
        return 'cancelled'
      end
      if state == 'cancelled' then
        return 'cancelled'
      end
    end
    return 'started'
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
  return 'cancelled'
end
return 'unknown'
",
    ))
});

/// KEYS: the (tenant, key) index. ARGV: id, campaign prefix, expiry ms, then field/value pairs.
/// Returns the campaign's id then its fields (the existing one's, or the new one's), or
/// `taken` when the id belongs to another campaign.
static CREATE_CAMPAIGN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local existing = redis.call('GET', KEYS[1])
if existing then
  local fields = redis.call('HGETALL', ARGV[2] .. existing)
  if #fields > 0 then
    table.insert(fields, 1, existing)
    return fields
  end
end
local ckey = ARGV[2] .. ARGV[1]
if redis.call('EXISTS', ckey) == 1 then
  return {'taken'}
end
local set = {}
for i = 4, #ARGV do
  set[#set + 1] = ARGV[i]
end
redis.call('HSET', ckey, 'total', '0', 'control', 'running', unpack(set))
redis.call('PEXPIRE', ckey, ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
local fields = redis.call('HGETALL', ckey)
table.insert(fields, 1, ARGV[1])
return fields
",
    )
});

/// KEYS: campaign. ARGV: index prefix, retention ms, then either `total` and the jobs to add, or
/// `control` and the new control (a cancelled campaign keeps its control). 0 for an unknown
/// campaign. Keeps the campaign and its (tenant, key) index at least `retention`.
static UPDATE_CAMPAIGN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local head = redis.call('HMGET', KEYS[1], 'tenant', 'key', 'control')
if not head[1] then
  return 0
end
if ARGV[3] == 'total' then
  redis.call('HINCRBY', KEYS[1], 'total', ARGV[4])
elseif head[3] ~= 'cancelled' then
  redis.call('HSET', KEYS[1], 'control', ARGV[4])
end
local retention = tonumber(ARGV[2])
local index = ARGV[1] .. head[1] .. ':' .. head[2]
for _, key in ipairs({KEYS[1], index}) do
  local ttl = redis.call('PTTL', key)
  if ttl >= 0 and ttl < retention then
    redis.call('PEXPIRE', key, retention)
  end
end
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
local waiting = rec[1] == 'retrying' or rec[1] == 'scheduled' or rec[1] == 'deferred'
if waiting and rec[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'retry_published', '1')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// KEYS: job index, tombstone. ARGV: record prefix. Returns `record`, the record's key and its
/// fields; or `tombstone` for a job cancelled before it had a record; or nothing.
static STATUS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key = redis.call('GET', KEYS[1])
if key then
  local fields = redis.call('HGETALL', ARGV[1] .. key)
  if #fields > 0 then
    table.insert(fields, 1, key)
    table.insert(fields, 1, 'record')
    return fields
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'tombstone'}
end
return {}
",
    )
});

/// The Redis state store; cheap to share, reconnects by itself.
pub struct RedisStore {
    conn: RedisConnection,
    /// The URL with its credentials masked.
    url: String,
    namespace: String,
    retention_ms: i64,
    /// `{namespace}:campaign:`, built once: every claim and finish passes it.
    campaign_prefix: String,
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
    pub(crate) fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// Connects to `url` (`redis://[[user]:password@]host:port/db`, `rediss://…` or
    /// `redis+sentinel://…`: see [`redis_connect`]) and checks it with a PING, so that a wrong
    /// address or password fails here. No error or debug text carries the password.
    /// Keys live under `namespace` and expire `retention` after their last change.
    pub async fn open(url: &str, namespace: &str, retention: Duration) -> Result<Self, StoreError> {
        let redacted = redact::url_credentials(url);
        let secrets = secrets_of(url);
        let fail = |e: redis::RedisError| scrub(e, &secrets, &redacted);

        let conn = redis_connect(url).await.map_err(|e| {
            if e.kind() == redis::ErrorKind::InvalidClientConfig {
                StoreError::BadUrl(format!("{redacted} ({})", redact::secrets(&e.to_string(), &secrets)))
            } else {
                fail(e)
            }
        })?;
        Ok(Self {
            conn,
            url: redacted,
            namespace: namespace.to_string(),
            retention_ms: duration_ms(retention).max(1),
            campaign_prefix: format!("{namespace}:campaign:"),
        })
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

    fn tombstone_key(&self, job_id: Uuid) -> String {
        format!("{}:tomb:{job_id}", self.namespace)
    }

    fn counted_key(&self, job_id: Uuid) -> String {
        format!("{}:counted:{job_id}", self.namespace)
    }

    fn campaign_key(&self, id: Uuid) -> String {
        format!("{}:campaign:{id}", self.namespace)
    }

    fn campaign_list_key(&self) -> String {
        format!("{}:campaigns", self.namespace)
    }

    fn campaign_index_prefix(&self) -> String {
        format!("{}:campaign_key:", self.namespace)
    }

    fn sid_prefix(&self) -> String {
        format!("{}:sid:", self.namespace)
    }

    fn early_prefix(&self) -> String {
        format!("{}:early:", self.namespace)
    }

    fn pull_prefix(&self) -> String {
        format!("{}:pull:", self.namespace)
    }

    /// How long a key must live: the retention after `until` when that is later than now.
    fn expiry_after(&self, until: Millis, now: Millis) -> i64 {
        self.retention_ms.saturating_add(until.saturating_sub(now).max(0))
    }

    /// A job status from a record's fields, as the STATUS script returns them.
    fn job_status(job_id: Uuid, key: &str, fields: &[String]) -> Result<JobStatus, StoreError> {
        let record: HashMap<&str, &str> =
            fields.chunks_exact(2).map(|pair| (pair[0].as_str(), pair[1].as_str())).collect();
        let corrupt = |reason: String| StoreError::Corrupt { key: key.to_string(), reason };
        let get = |field: &str| record.get(field).copied();
        let owner_job = get("job_id").unwrap_or_default();
        let owner_job = Uuid::parse_str(owner_job).map_err(|e| corrupt(format!("job id {owner_job:?}: {e}")))?;
        let state = get("state").unwrap_or_default();
        if !RECORD_STATUSES.contains(&state) {
            return Err(corrupt(format!("unknown state {state:?}")));
        }
        let next_attempt_at = get("next_attempt_at")
            .map(|t| t.parse::<Millis>().map_err(|_| corrupt(format!("next_attempt_at {t:?} is not a number"))))
            .transpose()?;
        let campaign = get("campaign")
            .map(|c| Uuid::parse_str(c).map_err(|e| corrupt(format!("campaign {c:?}: {e}"))))
            .transpose()?;
        let mut delivery = BTreeMap::new();
        for (field, value) in &record {
            if let Some(recipient) = field.strip_prefix("d:") {
                let parsed = parse_delivery_field(value).ok_or_else(|| corrupt(format!("{field} {value:?}")))?;
                delivery.insert(recipient.to_string(), parsed);
            }
        }
        Ok(JobStatus {
            id: job_id,
            status: state.to_string(),
            attempts: parse_attempt(get("attempt").unwrap_or_default(), key)?,
            result: parse_json(key, "result", get("result"))?,
            error: get("error").map(str::to_string),
            error_kind: get("error_kind").map(str::to_string),
            next_attempt_at,
            duplicate_of: (owner_job != job_id).then_some(owner_job),
            campaign,
            delivery: (!delivery.is_empty()).then_some(delivery),
        })
    }

    /// Updates a campaign's total or control (see `UPDATE_CAMPAIGN`); false for an unknown one.
    async fn update_campaign(&self, id: Uuid, field: &str, value: String) -> Result<bool, StoreError> {
        let found: i64 = UPDATE_CAMPAIGN
            .key(self.campaign_key(id))
            .arg(self.campaign_index_prefix())
            .arg(self.retention_ms)
            .arg(field)
            .arg(value)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(found == 1)
    }
}

/// A recipient's delivery as a record's `d:<recipient>` field holds it: `pending`, or
/// `<state>\t<at>\t<code>`.
fn parse_delivery_field(value: &str) -> Option<Delivery> {
    if value == "pending" {
        return Some(Delivery { state: DeliveryState::Pending, code: None, at: None });
    }
    let mut parts = value.splitn(3, '\t');
    let state = DeliveryState::parse(parts.next()?)?;
    let at = parts.next()?.parse().ok()?;
    let code = parts.next().filter(|c| !c.is_empty()).map(str::to_string);
    Some(Delivery { state, code, at: Some(at) })
}

/// A campaign from its hash's fields (field, value pairs): the record, control, total, counters.
fn parse_campaign(
    id: Uuid,
    fields: &[String],
) -> Result<(CampaignRecord, CampaignControl, u64, BTreeMap<String, i64>), StoreError> {
    let name = format!("campaign {id}");
    let corrupt = |reason: String| StoreError::Corrupt { key: name.clone(), reason };
    let hash: HashMap<&str, &str> = fields.chunks_exact(2).map(|pair| (pair[0].as_str(), pair[1].as_str())).collect();
    let get = |field: &str| hash.get(field).copied().ok_or_else(|| corrupt(format!("no {field}")));
    let number =
        |field: &str, text: &str| text.parse::<i64>().map_err(|_| corrupt(format!("{field} {text:?} is not a number")));
    let head = parse_json(&name, "head", Some(get("head")?))?.unwrap_or_default();
    let send_at = hash.get("send_at").map(|t| number("send_at", t)).transpose()?;
    let record = CampaignRecord {
        id,
        tenant: get("tenant")?.to_string(),
        key: get("key")?.to_string(),
        head,
        send_at,
        created_at: number("created_at", get("created_at")?)?,
    };
    let control = parse_control(id, get("control")?)?;
    let total = number("total", get("total")?)?.max(0).unsigned_abs();
    let mut counts = BTreeMap::new();
    for (field, value) in &hash {
        if let Some(status) = field.strip_prefix("n:") {
            counts.insert(status.to_string(), number(field, value)?);
        }
    }
    Ok((record, control, total, counts))
}

/// The URL's password and username (when set), to keep out of error text.
fn secrets_of(url: &str) -> Vec<String> {
    let password = match redis::parse_redis_url(url) {
        Some(parsed) => parsed.password().map(str::to_string),
        // redis+sentinel://[user:]password@host:port,…: the userinfo before the last `@`.
        None => url.split_once("://").and_then(|(_, rest)| {
            let info = &rest[..rest.rfind('@')?];
            Some(info.split_once(':').map_or(info, |(_, password)| password).to_string())
        }),
    };
    let mut secrets = Vec::new();
    if let Some(password) = password.as_deref() {
        secrets.push(password.to_string());
        if let Ok(decoded) = percent_decode(password) {
            secrets.push(decoded);
        }
    }
    secrets.retain(|s| !s.is_empty());
    secrets
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
            .key(self.tombstone_key(request.job_id))
            .key(self.counted_key(request.job_id))
            .arg(request.job_id.to_string())
            .arg(request.attempt.to_string())
            .arg(&request.owner)
            .arg(request.now.to_string())
            .arg(lease_until.to_string())
            .arg(self.retention_ms.to_string())
            .arg(&request.key)
            .arg(if request.replay { "1" } else { "0" })
            .arg(request.campaign.map(|c| c.to_string()).unwrap_or_default())
            .arg(&self.campaign_prefix)
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
                state: match field(1) {
                    "succeeded" => FinishedState::Succeeded,
                    "dead" => FinishedState::Dead,
                    "cancelled" => FinishedState::Cancelled,
                    "capped" => FinishedState::Capped,
                    other => {
                        return Err(StoreError::Corrupt {
                            key: key.to_string(),
                            reason: format!("claim answered finished {other:?}"),
                        });
                    }
                },
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
        let mut expiry = self.retention_ms;
        let state = match finish {
            Finish::Retrying { attempt, progress, error, next_attempt_at } => {
                set.push(("attempt", attempt.to_string()));
                set.push(("error", error.clone()));
                set.push(("next_attempt_at", next_attempt_at.to_string()));
                set.push(("retry_published", "0".to_string()));
                if let Some(progress) = progress {
                    set.push(("progress", progress.to_string()));
                }
                expiry = self.expiry_after(*next_attempt_at, now);
                "retrying"
            }
            Finish::Waiting { attempt, progress, reason, until, why } => {
                set.push(("attempt", attempt.to_string()));
                set.push(("error", reason.clone()));
                set.push(("next_attempt_at", until.to_string()));
                set.push(("retry_published", "0".to_string()));
                if let Some(progress) = progress {
                    set.push(("progress", progress.to_string()));
                }
                expiry = self.expiry_after(*until, now);
                why.status()
            }
            Finish::Succeeded { attempt, result, .. } | Finish::Capped { attempt, result } => {
                set.push(("attempt", attempt.to_string()));
                match result {
                    Some(result) => set.push(("result", result.to_string())),
                    None => del.push("result"),
                }
                del.extend(["error", "error_kind", "next_attempt_at"]);
                if matches!(finish, Finish::Capped { .. }) { "capped" } else { "succeeded" }
            }
            Finish::Dead { attempt, kind, error, progress } => {
                set.push(("attempt", attempt.to_string()));
                set.push(("error_kind", kind.clone()));
                set.push(("error", error.clone()));
                if let Some(progress) = progress {
                    set.push(("progress", progress.to_string()));
                }
                del.push("next_attempt_at");
                "dead"
            }
            Finish::Cancelled { attempt } => {
                set.push(("attempt", attempt.to_string()));
                del.extend(["error", "error_kind", "next_attempt_at"]);
                "cancelled"
            }
        };
        set.push(("state", state.to_string()));
        set.push(("updated_at", now.to_string()));

        let mut invocation = FINISH.key(self.record_key(key));
        invocation
            .arg(expiry.to_string())
            .arg(self.retention_ms.to_string())
            .arg(format!("{}:job:", self.namespace))
            .arg(&self.campaign_prefix)
            .arg(state)
            .arg(set.len().to_string())
            .arg(del.len().to_string());
        for (field, value) in &set {
            invocation.arg(*field).arg(value);
        }
        for field in &del {
            invocation.arg(*field);
        }
        if let Finish::Succeeded { receipts, .. } = finish
            && !receipts.is_empty()
        {
            invocation
                .arg(receipts.sids.len().to_string())
                .arg(key)
                .arg(receipts.pull.as_deref().unwrap_or_default())
                .arg(receipts.callback.as_deref().unwrap_or_default())
                .arg(self.sid_prefix())
                .arg(self.early_prefix())
                .arg(self.pull_prefix())
                .arg(now.to_string());
            for (sid, recipient) in &receipts.sids {
                invocation.arg(sid).arg(recipient);
            }
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
            .key(self.tombstone_key(job_id))
            .arg(format!("{}:key:", self.namespace))
            .invoke_async(&mut self.conn.clone())
            .await?;
        match reply.split_first() {
            None => Ok(None),
            Some((kind, _)) if kind == "tombstone" => Ok(Some(tombstone_status(job_id))),
            Some((_, rest)) => match rest.split_first() {
                Some((key, fields)) => Self::job_status(job_id, key, fields).map(Some),
                None => Err(StoreError::Corrupt { key: job_id.to_string(), reason: "empty status reply".into() }),
            },
        }
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

    async fn accept_owned(&self, tenant: &str, job_ids: &[Uuid], _now: Millis) -> Result<(), StoreError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for job_id in job_ids {
            pipe.cmd("SET").arg(self.accepted_key(*job_id)).arg("1").arg("PX").arg(self.retention_ms).ignore();
            let owner = crate::tenants::redis_owner_key(&self.namespace, *job_id);
            pipe.cmd("SET").arg(owner).arg(tenant).arg("PX").arg(self.retention_ms).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn owner(&self, job_id: Uuid) -> Result<Option<String>, StoreError> {
        let key = crate::tenants::redis_owner_key(&self.namespace, job_id);
        Ok(redis::cmd("GET").arg(key).query_async(&mut self.conn.clone()).await?)
    }

    async fn prune(&self, _now: Millis) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn cancel_job(&self, job_id: Uuid, now: Millis) -> Result<CancelOutcome, StoreError> {
        let answer: String = CANCEL_JOB
            .key(self.job_key(job_id))
            .key(self.accepted_key(job_id))
            .key(self.tombstone_key(job_id))
            .arg(format!("{}:key:", self.namespace))
            .arg(&self.campaign_prefix)
            .arg(self.retention_ms)
            .arg(now)
            .arg(job_id.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        match answer.as_str() {
            "cancelled" => Ok(CancelOutcome::Cancelled),
            "unknown" => Ok(CancelOutcome::Unknown),
            // Read in a second step: the status reflects any change since, which is what the API
            // should report anyway.
            "started" => match self.status(job_id).await? {
                Some(status) => Ok(CancelOutcome::Started(Box::new(status))),
                None => Ok(CancelOutcome::Unknown),
            },
            other => Err(StoreError::Corrupt { key: job_id.to_string(), reason: format!("cancel answered {other:?}") }),
        }
    }

    async fn create_campaign(&self, record: &CampaignRecord) -> Result<(CampaignRecord, u64), StoreError> {
        let now = now_millis();
        let expiry = self.expiry_after(record.send_at.unwrap_or(now), now);
        let mut invocation =
            CREATE_CAMPAIGN.key(format!("{}{}:{}", self.campaign_index_prefix(), record.tenant, record.key));
        invocation
            .arg(record.id.to_string())
            .arg(&self.campaign_prefix)
            .arg(expiry)
            .arg("tenant")
            .arg(&record.tenant)
            .arg("key")
            .arg(&record.key)
            .arg("head")
            .arg(record.head.to_string())
            .arg("created_at")
            .arg(record.created_at);
        if let Some(send_at) = record.send_at {
            invocation.arg("send_at").arg(send_at);
        }
        let reply: Vec<String> = invocation.invoke_async(&mut self.conn.clone()).await?;
        let name = format!("campaign {}", record.id);
        let Some((id, fields)) = reply.split_first() else {
            return Err(StoreError::Corrupt { key: name, reason: "empty reply".into() });
        };
        if id == "taken" {
            return Err(StoreError::Corrupt { key: name, reason: "the id is taken by another (tenant, key)".into() });
        }
        let id = Uuid::parse_str(id).map_err(|e| StoreError::Corrupt { key: name, reason: format!("bad id: {e}") })?;
        let (record, _, total, _) = parse_campaign(id, fields)?;
        // The console's index; idempotent, so a campaign submitted again is listed once.
        let _: i64 = redis::cmd("ZADD")
            .arg(self.campaign_list_key())
            .arg(0)
            .arg(id.to_string())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok((record, total))
    }

    async fn add_to_campaign(&self, id: Uuid, jobs: u64) -> Result<bool, StoreError> {
        self.update_campaign(id, "total", jobs.min(i64::MAX as u64).to_string()).await
    }

    async fn campaign(&self, id: Uuid) -> Result<Option<(CampaignRecord, CampaignStatus)>, StoreError> {
        let fields: Vec<String> =
            redis::cmd("HGETALL").arg(self.campaign_key(id)).query_async(&mut self.conn.clone()).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let (record, control, total, counts) = parse_campaign(id, &fields)?;
        let status = CampaignStatus::derive(&record, control, total, &counts, now_millis());
        Ok(Some((record, status)))
    }

    async fn control_campaign(&self, id: Uuid, control: CampaignControl) -> Result<Option<CampaignStatus>, StoreError> {
        if !self.update_campaign(id, "control", control.as_str().to_string()).await? {
            return Ok(None);
        }
        Ok(self.campaign(id).await?.map(|(_, status)| status))
    }

    async fn campaign_controls(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, CampaignControl)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGET").arg(self.campaign_key(*id)).arg("control");
        }
        let controls: Vec<Option<String>> = pipe.query_async(&mut self.conn.clone()).await?;
        ids.iter()
            .zip(controls)
            .filter_map(|(id, control)| control.map(|c| parse_control(*id, &c).map(|c| (*id, c))))
            .collect()
    }

    async fn campaigns(&self, before: Option<Uuid>, limit: usize) -> Result<Vec<CampaignStatus>, StoreError> {
        let index = self.campaign_list_key();
        let mut list = Vec::with_capacity(limit.min(1000));
        let mut upper = before.map_or_else(|| "+".to_string(), |id| format!("({id}"));
        // Ids of expired campaigns are dropped as they are met, so each round makes progress.
        while list.len() < limit {
            let want = limit - list.len();
            let ids: Vec<String> = redis::cmd("ZREVRANGEBYLEX")
                .arg(&index)
                .arg(&upper)
                .arg("-")
                .arg("LIMIT")
                .arg(0)
                .arg(want)
                .query_async(&mut self.conn.clone())
                .await?;
            let Some(last) = ids.last() else { break };
            upper = format!("({last}");
            let fetched = ids.len();
            for id in ids {
                match self.campaign(parse_campaign_id(&id)?).await? {
                    Some((_, status)) => list.push(status),
                    None => {
                        let _: i64 =
                            redis::cmd("ZREM").arg(&index).arg(&id).query_async(&mut self.conn.clone()).await?;
                    }
                }
            }
            if fetched < want {
                break;
            }
        }
        Ok(list)
    }

    async fn register_tenants(&self, tenants: &[String]) -> Result<(), StoreError> {
        tenants::redis_register(&self.conn, &self.namespace, tenants).await
    }

    async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        tenants::redis_list(&self.conn, &self.namespace).await
    }

    async fn record_receipts(&self, receipts: &[Receipt], now: Millis) -> Result<ReceiptsRecorded, StoreError> {
        let receipts: Vec<&Receipt> = receipts.iter().filter(|r| r.state != DeliveryState::Pending).collect();
        if receipts.is_empty() {
            return Ok(ReceiptsRecorded::default());
        }
        let mut invocation = RECEIPTS.prepare_invoke();
        invocation
            .arg(self.sid_prefix())
            .arg(format!("{}:key:", self.namespace))
            .arg(self.early_prefix())
            .arg(self.pull_prefix())
            .arg(&self.campaign_prefix)
            .arg(self.retention_ms.to_string())
            .arg(duration_ms(EARLY_RECEIPT_TTL).to_string())
            .arg(now.to_string());
        for receipt in &receipts {
            invocation
                .arg(&receipt.sid)
                .arg(receipt.state.as_str())
                .arg(receipt.at.to_string())
                .arg(receipt.code.as_deref().unwrap_or_default());
        }
        let reply: Vec<String> = invocation.invoke_async(&mut self.conn.clone()).await?;
        let number = |i: usize| reply.get(i).and_then(|n| n.parse::<u64>().ok()).unwrap_or_default();
        let mut recorded = ReceiptsRecorded { counted: number(0), early: number(1), done: Vec::new() };
        for pair in reply.get(2..).unwrap_or_default().chunks_exact(2) {
            let job_id = Uuid::parse_str(&pair[0])
                .map_err(|e| StoreError::Corrupt { key: pair[0].clone(), reason: format!("job id: {e}") })?;
            // A second read, only for the few jobs that just completed and have a callback.
            if let Some(status) = self.status(job_id).await? {
                recorded.done.push(DeliveryDone { status, callback: pair[1].clone() });
            }
        }
        Ok(recorded)
    }

    async fn take_pending_receipts(
        &self,
        queue: &str,
        now: Millis,
        next_due: Millis,
        limit: usize,
    ) -> Result<Vec<PendingReceipt>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let reply: Vec<String> = TAKE_PENDING
            .arg(format!("{}{queue}", self.pull_prefix()))
            .arg(self.sid_prefix())
            .arg(now.to_string())
            .arg(next_due.to_string())
            .arg(limit.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(reply
            .chunks_exact(3)
            .map(|entry| PendingReceipt {
                sid: entry[0].clone(),
                recipient: entry[1].clone(),
                sent_at: entry[2].parse().unwrap_or_default(),
            })
            .collect())
    }

    async fn lease(&self, name: &str, owner: &str, _now: Millis, ttl: Duration) -> Result<bool, StoreError> {
        // Redis expires the lease by its own clock.
        let held: i64 = LEASE
            .key(format!("{}:lease:{name}", self.namespace))
            .arg(owner)
            .arg(duration_ms(ttl).max(1).to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(held == 1)
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
        assert!(secrets_of("redis+sentinel://:p%40ss@h:1,h:2/m/0").contains(&"p@ss".to_string()));
        assert!(secrets_of("redis+sentinel://h:1,h:2/m/0").is_empty());
        assert_eq!(percent_decode("a%2Fb%").ok().as_deref(), Some("a/b%"));
    }
}
