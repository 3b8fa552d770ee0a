//! The Lua scripts: each store operation is one script on one key, so it is
//! atomic, costs one round trip, and runs unchanged on Redis Cluster.
//!
//! A record is a hash with a format version `v`, a state `s` (`P` in
//! progress, `C` completed), the fingerprint `f` (32 raw bytes), and either
//! the fencing token `t` with the lease end `l` (server milliseconds) or the
//! output `o`. Every write sets an expiry: a claim lives for two leases (one
//! past its lease end, so a takeover can still tell it apart from a new
//! request), a completed record for its ttl. Times come from the server's
//! `TIME`, never from the client, so clock skew between app servers cannot
//! break a lease.

use std::sync::LazyLock;

use redis::Script;

/// Reply codes of the claim script, its first array element.
pub(crate) const ACQUIRED: i64 = 1;
pub(crate) const IN_PROGRESS: i64 = 2;
pub(crate) const COMPLETED: i64 = 3;
pub(crate) const MISMATCH: i64 = 4;
/// The first element of every script's reply when the record is not one this
/// crate wrote; the second element says why.
pub(crate) const CORRUPT: i64 = -1;

/// Reads the record and decides, in the order of the decision table.
///
/// KEYS[1] record key; ARGV[1] fingerprint, ARGV[2] new token, ARGV[3] lease ms.
/// Replies `{1, took_over}`, `{2, lease_remaining_ms}`, `{3, output}`, `{4}`
/// or `{-1, reason}`.
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local key, fingerprint, token, lease = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local record = redis.pcall('HMGET', key, 'v', 's', 'f', 'l', 'o')
if record.err then
    return {-1, 'the value at this key is not a hash'}
end
local version, state, stored, lease_until, output = record[1], record[2], record[3], record[4], record[5]
-- The server's clock, read only when a lease is involved: a replay needs none.
local function server_now()
    local time = redis.call('TIME')
    return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

local function claim(took_over, now)
    redis.call('HSET', key, 'v', '1', 's', 'P', 'f', fingerprint, 't', token, 'l', now + lease)
    redis.call('PEXPIRE', key, 2 * lease)
    return {1, took_over}
end

if not version then
    if redis.call('EXISTS', key) == 1 then
        return {-1, 'the hash at this key has no record version'}
    end
    return claim(0, server_now())
end
if version ~= '1' then
    return {-1, 'unknown record version ' .. version}
end
if not stored or string.len(stored) ~= 32 then
    return {-1, 'the record has no valid fingerprint'}
end
if stored ~= fingerprint then
    return {4}
end
if state == 'C' then
    if not output then
        return {-1, 'the completed record has no output'}
    end
    return {3, output}
end
if state == 'P' then
    local lease_end = tonumber(lease_until)
    if not lease_end then
        return {-1, 'the claim has no valid lease end'}
    end
    local now = server_now()
    if lease_end > now then
        return {2, lease_end - now}
    end
    return claim(1, now)
end
return {-1, 'unknown record state'}
"#,
    )
});

/// Replaces the claim holding the token by the completed record. The
/// completed record keeps the token, so a retry of a complete whose reply
/// was lost finds its own record and is told so, not fenced.
///
/// KEYS[1] record key; ARGV[1] token, ARGV[2] output, ARGV[3] ttl ms.
/// Replies 1 (applied), 0 (fenced) or `{-1, reason}`.
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local record = redis.pcall('HMGET', KEYS[1], 's', 't')
if record.err then
    return {-1, 'the value at this key is not a hash'}
end
if record[1] == 'C' and record[2] == ARGV[1] then
    return 1
end
if record[1] ~= 'P' or record[2] ~= ARGV[1] then
    return 0
end
redis.call('HSET', KEYS[1], 's', 'C', 'o', ARGV[2])
redis.call('HDEL', KEYS[1], 'l')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#,
    )
});

/// Deletes the claim holding the token.
///
/// KEYS[1] record key; ARGV[1] token. Replies 1 (applied) or 0 (fenced).
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local record = redis.pcall('HMGET', KEYS[1], 's', 't')
if record.err then
    return {-1, 'the value at this key is not a hash'}
end
if record[1] ~= 'P' or record[2] ~= ARGV[1] then
    return 0
end
redis.call('DEL', KEYS[1])
return 1
"#,
    )
});

/// Extends the lease of the claim holding the token.
///
/// KEYS[1] record key; ARGV[1] token, ARGV[2] lease ms. Replies 1 or 0.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local record = redis.pcall('HMGET', KEYS[1], 's', 't')
if record.err then
    return {-1, 'the value at this key is not a hash'}
end
if record[1] ~= 'P' or record[2] ~= ARGV[1] then
    return 0
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'l', now + lease)
redis.call('PEXPIRE', KEYS[1], 2 * lease)
return 1
"#,
    )
});
