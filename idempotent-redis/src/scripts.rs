//! The Lua scripts: each store operation is one script on one key, so it is
//! atomic, costs one round trip, and runs unchanged on Redis Cluster.
//!
//! A script runs with `EVALSHA`; a server that has not cached it (new,
//! restarted, flushed, or a cluster node that never ran it) answers
//! `NOSCRIPT`, and the call is sent again once as `EVAL` with the source,
//! which runs it and caches it on that server. On a cluster the `EVAL` is
//! routed by the key like the `EVALSHA`, so it reaches the one node that owns
//! the record and costs one more round trip, where `SCRIPT LOAD` and a second
//! `EVALSHA` would cost two and fan out to every node.
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

/// A script's source and its SHA-1 digest, the name `EVALSHA` runs it by.
pub(crate) struct LuaScript {
    source: &'static str,
    sha1: String,
}

impl LuaScript {
    fn new(source: &'static str) -> Self {
        Self {
            source,
            sha1: redis::Script::new(source).get_hash().to_owned(),
        }
    }

    /// The source, sent with `EVAL` when the server has not cached it.
    pub(crate) fn source(&self) -> &'static str {
        self.source
    }

    /// The hex SHA-1 of the source, sent with `EVALSHA`.
    pub(crate) fn sha1(&self) -> &str {
        &self.sha1
    }
}

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
pub(crate) static CLAIM: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
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
pub(crate) static COMPLETE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
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
pub(crate) static RELEASE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
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
pub(crate) static RENEW: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_sha1_of_the_source() {
        // `printf 'return 1' | sha1sum`
        let script = LuaScript::new("return 1");
        assert_eq!(script.sha1(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        assert_eq!(script.source(), "return 1");
    }
}
