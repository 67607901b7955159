//! The Redis backend: every write is one Lua script, so each operation is one atomic round trip.
//! Claims and finishes made at the same time share one script call (see [`Batcher`]), each still
//! atomic and answered on its own.
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
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, Value};
use uuid::Uuid;

use crate::batching::{self, Batches};
use crate::model::parse_json;
use crate::model::{
    CampaignControl, CampaignRecord, CampaignStatus, CancelOutcome, Claim, ClaimRequest, Delivery, DeliveryDone,
    DeliveryState, EARLY_RECEIPT_TTL, Finish, FinishedState, JobStatus, Millis, PendingReceipt, RECORD_STATUSES,
    Receipt, ReceiptsRecorded, StateStore, StoreError, now_millis,
};
use crate::redis_conn::{RedisConnection, percent_decode, redis_connect};
use crate::sqlite::{duration_ms, parse_campaign_id, parse_control, tombstone_status};
use crate::{redact, tenants};

/// The Lua functions that move campaigns' counters (see [`StateStore`]). `count` and `add_count`
/// only sum the changes, per campaign and counter; `flush_counts`, at the end of the script, writes
/// them: a batch of one campaign's jobs moves its counters with a few calls, not five per job.
/// Nothing for a record without a campaign, or one whose campaign is unknown; a campaign counted
/// is kept at least `retention`. Nothing else runs while a script runs, so writing the sums at its
/// end is seen by every reader as the changes one by one. A batched script sets `item` to the item
/// it runs, so that a campaign whose counters cannot be written (its key is not a hash) fails the
/// items that counted in it, and only those, as each would have failed alone.
macro_rules! lua_count {
    () => {
        r"
local counts, counted_by, item = {}, {}, 0
local function add_count(camp, counter, n)
  if not camp or camp == '' or n == 0 then
    return
  end
  local c = counts[camp]
  if not c then
    c = {}
    counts[camp] = c
    counted_by[camp] = {}
  end
  c[counter] = (c[counter] or 0) + n
  counted_by[camp][item] = true
end
local function count(camp, from, to)
  if from == to then
    return
  end
  if from then
    add_count(camp, 'n:' .. from, -1)
  end
  add_count(camp, 'n:' .. to, 1)
end
local function write_counts(cprefix, camp, c, retention)
  local ckey = cprefix .. camp
  -- -2: no such campaign (PTTL answers whether it exists and how long it lives in one call).
  local ttl = redis.call('PTTL', ckey)
  if ttl == -2 then
    return
  end
  for counter, n in pairs(c) do
    if n ~= 0 then
      redis.call('HINCRBY', ckey, counter, n)
    end
  end
  if ttl >= 0 and ttl < tonumber(retention) then
    redis.call('PEXPIRE', ckey, retention)
  end
end
-- on_error(items, e), in a batch: a campaign that cannot be written fails its items (a set of
-- `item` numbers); without it, the script fails.
local function flush_counts(cprefix, retention, on_error)
  for camp, c in pairs(counts) do
    if on_error then
      local ok, e = pcall(write_counts, cprefix, camp, c, retention)
      if not ok then
        on_error(counted_by[camp], e)
      end
    else
      write_counts(cprefix, camp, c, retention)
    end
  end
end
"
    };
}

/// The Lua functions of the batched scripts (see [`Batcher`]): `error_reply` makes a failed item's
/// error its own answer (Redis's error as it is, a table with `err`, or a Lua error's text);
/// `call_chunked` runs a command over a list of pairs of any length.
macro_rules! lua_batch_helpers {
    () => {
        r"
local function error_reply(e)
  if type(e) == 'table' and e.err then
    return e
  end
  return redis.error_reply(tostring(e))
end
-- Lua's unpack takes a few thousand values at most: a long list of pairs goes in chunks.
local function call_chunked(command, key, list)
  for i = 1, #list, 1000 do
    redis.call(command, key, unpack(list, i, math.min(i + 999, #list)))
  end
end
"
    };
}

/// Claims, many in one call (see [`Batcher`]); each item is answered as if it ran alone. KEYS: per
/// claim its record, job index, tombstone and counted marker. ARGV: retention ms, campaign prefix,
/// then per claim: job id, attempt, owner, now, lease until, key, replay ('1' or '0'), campaign
/// ('' for none). Returns one answer per claim (a Redis error for a claim that failed).
static CLAIMS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_count!(),
        lua_batch_helpers!(),
        r"
local retention, cprefix = ARGV[1], ARGV[2]
local function duplicate(campaign, counted_key)
  if campaign ~= '' and redis.call('SET', counted_key, '1', 'NX', 'PX', retention) then
    count(campaign, false, 'duplicate')
  end
end
-- r_state, r_next, r_campaign: what the record held (nil when absent).
local function acquire(rec_key, r_state, r_next, r_campaign, job_id, new_attempt, owner, lease_until, now, campaign)
  local rec_campaign = r_campaign
  if not r_state and campaign ~= '' then
    redis.call('HSET', rec_key, 'job_id', job_id, 'state', 'running', 'attempt', new_attempt, 'owner', owner,
        'lease_until', lease_until, 'retry_published', '0', 'updated_at', now, 'campaign', campaign)
    rec_campaign = campaign
  else
    redis.call('HSET', rec_key, 'job_id', job_id, 'state', 'running', 'attempt', new_attempt, 'owner', owner,
        'lease_until', lease_until, 'retry_published', '0', 'updated_at', now)
  end
  -- Only a field that is there needs deleting (a new record has none).
  if r_next then
    redis.call('HDEL', rec_key, 'next_attempt_at')
  end
  redis.call('PEXPIRE', rec_key, retention)
  count(rec_campaign, r_state, 'running')
end
local function claim(rec_key, job_key, tomb_key, counted_key, job_id, attempt, owner, now, lease_until, idem_key,
    replay, campaign)
  redis.call('SET', job_key, idem_key, 'PX', retention)
  local rec = redis.call('HMGET', rec_key, 'job_id', 'state', 'attempt', 'lease_until',
      'retry_published', 'progress', 'campaign', 'next_attempt_at')
  local r_job, r_state, r_attempt, r_lease, r_pub, r_progress, r_campaign, r_next =
      rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7], rec[8]
  -- Only a job that is not the record's own can have a tombstone (cancelled before any record).
  if (not r_state or r_job ~= job_id) and redis.call('EXISTS', tomb_key) == 1 then
    if not r_state then
      if campaign ~= '' then
        redis.call('HSET', rec_key, 'job_id', job_id, 'state', 'cancelled', 'attempt', '0', 'updated_at', now,
            'campaign', campaign)
      else
        redis.call('HSET', rec_key, 'job_id', job_id, 'state', 'cancelled', 'attempt', '0', 'updated_at', now)
      end
      redis.call('PEXPIRE', rec_key, retention)
      count(campaign, false, 'cancelled')
      return {'finished', 'cancelled'}
    end
    duplicate(campaign, counted_key)
    return {'finished', 'cancelled'}
  end
  if not r_state then
    acquire(rec_key, r_state, r_next, r_campaign, job_id, attempt, owner, lease_until, now, campaign)
    return {'acquired', '', ''}
  end
  local progress = r_progress or ''
  if r_state == 'dead' and replay == '1' then
    acquire(rec_key, r_state, r_next, r_campaign, job_id, attempt, owner, lease_until, now, campaign)
    return {'acquired', progress, ''}
  end
  if r_state == 'succeeded' or r_state == 'dead' or r_state == 'cancelled' or r_state == 'capped' then
    if r_job ~= job_id then
      duplicate(campaign, counted_key)
    end
    return {'finished', r_state}
  end
  local stored = tonumber(r_attempt or '0') or 0
  if r_state == 'running' then
    if (tonumber(r_lease or '0') or 0) > tonumber(now) then
      return {'busy', r_lease}
    end
    local new_attempt = attempt
    if stored > tonumber(attempt) then
      new_attempt = r_attempt
    end
    acquire(rec_key, r_state, r_next, r_campaign, job_id, new_attempt, owner, lease_until, now, campaign)
    return {'acquired', progress, r_attempt or '0'}
  end
  if r_state == 'retrying' or r_state == 'scheduled' or r_state == 'deferred' then
    if r_job ~= job_id then
      duplicate(campaign, counted_key)
      return {'stale'}
    end
    if tonumber(attempt) > stored then
      acquire(rec_key, r_state, r_next, r_campaign, job_id, attempt, owner, lease_until, now, campaign)
      return {'acquired', progress, ''}
    end
    if tonumber(attempt) == stored and r_pub ~= '1' then
      return {'retry_unpublished', r_attempt, progress}
    end
    return {'stale'}
  end
  return {'corrupt', tostring(r_state)}
end
local out = {}
for i = 0, (#ARGV - 2) / 8 - 1 do
  local k, a = 4 * i, 2 + 8 * i
  item = i + 1
  local ok, answer = pcall(claim, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], ARGV[a + 1], ARGV[a + 2],
      ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8])
  if ok then
    out[i + 1] = answer
  else
    out[i + 1] = error_reply(answer)
  end
end
flush_counts(cprefix, retention, function(items, e)
  for failed in pairs(items) do
    out[failed] = error_reply(e)
  end
end)
return out
",
    ))
});

/// Finishes, many in one call (see [`Batcher`]); each item is answered as if it ran alone. KEYS:
/// per finish its record. ARGV: retention ms, job index, campaign, sid, early-receipt and
/// pull-queue prefixes; then per finish the number of its arguments and the arguments: the
/// record's expiry (ms), the new state, number of field/value pairs n, number of fields to delete
/// m, the n pairs, the m fields, then the expected receipts: their number s, and when s > 0 the
/// idempotency key, the pull queue ('' for none), the callback ('' for none), now and s (sid,
/// recipient) pairs. A missing record is left alone (answer 0, else 1).
static FINISHES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_count!(),
        lua_batch_helpers!(),
        r"
local retention, jobp, cprefix = ARGV[1], ARGV[2], ARGV[3]
local sidp, earlyp, pullp = ARGV[4], ARGV[5], ARGV[6]
-- a: where the finish's arguments start in ARGV.
local function finish(key, a)
  local rec = redis.call('HMGET', key, 'job_id', 'state', 'campaign')
  local job = rec[1]
  if not job then
    return 0
  end
  local expiry, state = ARGV[a], ARGV[a + 1]
  local n, m = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  -- Every field the record gets, written by one HSET at the end: the new state's pairs, then the
  -- receipts' fields (the fields deleted below are never among them).
  local set = {}
  for i = a + 4, a + 3 + 2 * n do
    set[#set + 1] = ARGV[i]
  end
  local del = {}
  for i = a + 4 + 2 * n, a + 3 + 2 * n + m do
    del[#del + 1] = ARGV[i]
  end
  local r = a + 4 + 2 * n + m
  local s = tonumber(ARGV[r] or '0')
  local delivered, undelivered = 0, 0
  if s > 0 then
    local idem, pull, notify, now = ARGV[r + 1], ARGV[r + 2], ARGV[r + 3], ARGV[r + 4]
    local pending = 0
    local due = {}
    for i = 0, s - 1 do
      local sid, recipient = ARGV[r + 5 + 2 * i], ARGV[r + 6 + 2 * i]
      local skey = sidp .. sid
      redis.call('HSET', skey, 'key', idem, 'recipient', recipient, 'at', now, 'pull', pull)
      redis.call('PEXPIRE', skey, retention)
      local early = redis.call('GET', earlyp .. sid)
      set[#set + 1] = 'd:' .. recipient
      if early then
        set[#set + 1] = early
        redis.call('DEL', earlyp .. sid)
        if string.sub(early, 1, 10) == 'delivered' .. string.char(9) then
          delivered = delivered + 1
        else
          undelivered = undelivered + 1
        end
      else
        set[#set + 1] = 'pending'
        pending = pending + 1
        due[#due + 1] = now
        due[#due + 1] = sid
      end
    end
    if pull ~= '' and #due > 0 then
      call_chunked('ZADD', pullp .. pull, due)
      redis.call('PEXPIRE', pullp .. pull, retention)
    end
    set[#set + 1] = 'dpending'
    set[#set + 1] = pending
    if notify ~= '' then
      set[#set + 1] = 'notify'
      set[#set + 1] = notify
    end
  end
  call_chunked('HSET', key, set)
  if #del > 0 then
    redis.call('HDEL', key, unpack(del))
  end
  redis.call('PEXPIRE', key, expiry)
  redis.call('PEXPIRE', jobp .. job, expiry)
  count(rec[3], rec[2], state)
  add_count(rec[3], 'n:delivered', delivered)
  add_count(rec[3], 'n:undelivered', undelivered)
  return 1
end
local out = {}
local a = 7
for i = 1, #KEYS do
  item = i
  local ok, answer = pcall(finish, KEYS[i], a + 1)
  if ok then
    out[i] = answer
  else
    out[i] = error_reply(answer)
  end
  a = a + 1 + tonumber(ARGV[a])
end
flush_counts(cprefix, retention, function(items, e)
  for failed in pairs(items) do
    out[failed] = error_reply(e)
  end
end)
return out
",
    ))
});

/// ARGV: sid, record, early-receipt, pull-queue and campaign prefixes, retention ms, early
/// receipts' expiry ms, now, then per receipt: sid, state (`delivered` or `failed`), at, code.
/// Returns the receipts counted, the early ones kept, then (job id, callback) of every record
/// whose receipts all became final and that has a callback.
static RECEIPTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_count!(),
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
      if state == 'delivered' then
        add_count(cur[2], 'n:delivered', 1)
      else
        add_count(cur[2], 'n:undelivered', 1)
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
flush_counts(cprefix, retention)
local out = {tostring(counted), tostring(early)}
for _, v in ipairs(done) do
  out[#out + 1] = v
end
return out
",
    ))
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
        count(rec[3], state, 'cancelled')
        flush_counts(ARGV[2], ARGV[3])
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

/// Most calls one batch carries: Redis runs nothing else while a script runs, so a batch stays a
/// few milliseconds of work.
const BATCH_MAX: usize = 128;
/// Batches of one kind in flight at once: while one is in Redis or on the wire, the next fills.
const BATCHES_IN_FLIGHT: usize = 2;

/// One call's share of a batched script call: its keys and arguments, in the script's order.
struct Call {
    keys: Vec<String>,
    args: Vec<String>,
}

type Waiting = batching::Waiting<Call, Value>;

/// Coalesces one kind of call (claims or finishes) into batched script calls (see
/// [`Batches`]): every EVALSHA has a fixed cost in Redis (reading the request, setting the script
/// up, writing the reply; with Sentinel a WAIT too), so concurrent calls share one. The script
/// answers every item on its own (its item of the script's array, or its error), so one item's
/// failure is its alone; a failed call fails all its items.
type Batcher = Batches<Call, Value>;

/// Starts the batcher of `script`, whose arguments begin with `head` (shared by every item).
fn start_batcher(script: &'static Script, head: Vec<String>, conn: RedisConnection, secrets: Arc<Secrets>) -> Batcher {
    let head = Arc::new(head);
    Batches::start("redis batcher", BATCH_MAX, BATCHES_IN_FLIGHT, move |batch| {
        let (head, conn, secrets) = (Arc::clone(&head), conn.clone(), Arc::clone(&secrets));
        async move {
            let answers = invoke_batch(conn, script, &head, &batch).await;
            deliver(batch, answers, &secrets);
        }
    })
}

/// One EVALSHA of `script` for the whole batch (loading the script when Redis lacks it): the
/// reply's items, one per call, errors included.
async fn invoke_batch(
    mut conn: RedisConnection,
    script: &Script,
    head: &[String],
    batch: &[Waiting],
) -> RedisResult<Vec<Value>> {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(batch.iter().map(|(call, _)| call.keys.len()).sum::<usize>());
    for (call, _) in batch {
        cmd.arg(&call.keys);
    }
    cmd.arg(head);
    for (call, _) in batch {
        cmd.arg(&call.args);
    }
    // Not `query_async`: it fails the whole reply when any item is an error.
    let mut reply = top_level(conn.req_packed_command(&cmd).await);
    if reply.as_ref().is_err_and(|e| e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)) {
        script.load_async(&mut conn).await?;
        reply = top_level(conn.req_packed_command(&cmd).await);
    }
    match reply? {
        Value::Array(answers) if answers.len() == batch.len() => Ok(answers),
        other => Err(RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "a batched script's reply does not answer each call",
            format!("{} calls, reply {}", batch.len(), reply_shape(&other)),
        ))),
    }
}

/// A reply's own error as an error; the errors inside it (one per failed item) stay values.
fn top_level(reply: RedisResult<Value>) -> RedisResult<Value> {
    match reply? {
        Value::ServerError(e) => Err(e.into()),
        value => Ok(value),
    }
}

/// What kind of reply came (never its content: it may hold job data).
fn reply_shape(reply: &Value) -> String {
    match reply {
        Value::Array(items) => format!("an array of {}", items.len()),
        Value::Nil => "nil".into(),
        _ => "not an array".into(),
    }
}

/// Hands each caller its answer; a failed call fails every item, each with its own copy.
fn deliver(batch: Vec<Waiting>, answers: RedisResult<Vec<Value>>, secrets: &Secrets) {
    match answers {
        Ok(answers) => {
            for ((_, reply), answer) in batch.into_iter().zip(answers) {
                let answer = match answer {
                    Value::ServerError(e) => Err(secrets.scrub(e.into())),
                    value => Ok(value),
                };
                // A caller that gave up meanwhile takes no answer.
                let _ = reply.send(answer);
            }
        }
        Err(e) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(secrets.scrub(e.clone())));
            }
        }
    }
}

/// What must not appear in an error: the URL's credentials, and the URL as it may be shown.
struct Secrets {
    secrets: Vec<String>,
    redacted: String,
}

impl Secrets {
    fn scrub(&self, e: RedisError) -> StoreError {
        scrub(e, &self.secrets, &self.redacted)
    }
}

/// The Redis state store; cheap to share, reconnects by itself.
pub struct RedisStore {
    conn: RedisConnection,
    /// The URL with its credentials masked.
    url: String,
    namespace: String,
    retention_ms: i64,
    /// `{namespace}:campaign:`, built once: every claim and finish passes it.
    campaign_prefix: String,
    secrets: Arc<Secrets>,
    /// Started at the first claim or finish, on the runtime that makes it (a store opened only
    /// for its connection starts none).
    claims: OnceLock<Batcher>,
    finishes: OnceLock<Batcher>,
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
            url: redacted.clone(),
            namespace: namespace.to_string(),
            retention_ms: duration_ms(retention).max(1),
            campaign_prefix: format!("{namespace}:campaign:"),
            secrets: Arc::new(Secrets { secrets, redacted }),
            claims: OnceLock::new(),
            finishes: OnceLock::new(),
        })
    }

    fn claims(&self) -> &Batcher {
        self.claims.get_or_init(|| {
            let head = vec![self.retention_ms.to_string(), self.campaign_prefix.clone()];
            start_batcher(LazyLock::force(&CLAIMS), head, self.conn.clone(), Arc::clone(&self.secrets))
        })
    }

    fn finishes(&self) -> &Batcher {
        self.finishes.get_or_init(|| {
            let head = vec![
                self.retention_ms.to_string(),
                format!("{}:job:", self.namespace),
                self.campaign_prefix.clone(),
                self.sid_prefix(),
                self.early_prefix(),
                self.pull_prefix(),
            ];
            start_batcher(LazyLock::force(&FINISHES), head, self.conn.clone(), Arc::clone(&self.secrets))
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
        let call = Call {
            keys: vec![
                self.record_key(&request.key),
                self.job_key(request.job_id),
                self.tombstone_key(request.job_id),
                self.counted_key(request.job_id),
            ],
            args: vec![
                request.job_id.to_string(),
                request.attempt.to_string(),
                request.owner.clone(),
                request.now.to_string(),
                lease_until.to_string(),
                request.key.clone(),
                if request.replay { "1" } else { "0" }.to_string(),
                request.campaign.map(|c| c.to_string()).unwrap_or_default(),
            ],
        };
        let reply: Vec<String> =
            redis::from_redis_value(self.claims().call(call).await?).map_err(|e| StoreError::Redis(e.into()))?;
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

        // The item's arguments after their number (see `FINISHES`).
        let mut args =
            vec![String::new(), expiry.to_string(), state.to_string(), set.len().to_string(), del.len().to_string()];
        for (field, value) in set {
            args.push(field.to_string());
            args.push(value);
        }
        args.extend(del.iter().map(|field| field.to_string()));
        match finish {
            Finish::Succeeded { receipts, .. } if !receipts.is_empty() => {
                args.push(receipts.sids.len().to_string());
                args.push(key.to_string());
                args.push(receipts.pull.clone().unwrap_or_default());
                args.push(receipts.callback.clone().unwrap_or_default());
                args.push(now.to_string());
                for (sid, recipient) in &receipts.sids {
                    args.push(sid.clone());
                    args.push(recipient.clone());
                }
            }
            _ => args.push("0".to_string()),
        }
        args[0] = (args.len() - 1).to_string();
        let answer = self.finishes().call(Call { keys: vec![self.record_key(key)], args }).await?;
        let _: i64 = redis::from_redis_value(answer).map_err(|e| StoreError::Redis(e.into()))?;
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
    use redis::{ErrorKind, RedisError};
    use tokio::sync::oneshot;

    use super::{Call, Secrets, deliver, percent_decode, secrets_of};
    use crate::redact;

    #[tokio::test]
    async fn a_failed_batch_fails_each_call_without_the_password() {
        let secrets = Secrets { secrets: vec!["hunter2".into()], redacted: "redis://:***@h:6379/0".into() };
        let (mut batch, mut answers) = (Vec::new(), Vec::new());
        for i in 0..3 {
            let (reply, answer) = oneshot::channel();
            batch.push((Call { keys: vec![format!("k{i}")], args: Vec::new() }, reply));
            answers.push(answer);
        }
        let failure = RedisError::from((ErrorKind::Io, "connection lost", "AUTH hunter2 refused".to_string()));
        deliver(batch, Err(failure), &secrets);
        for answer in answers {
            let error = answer.await.unwrap().unwrap_err().to_string();
            assert!(error.contains("connection lost") && !error.contains("hunter2"), "{error}");
        }
    }

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
