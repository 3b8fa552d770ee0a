//! The Lua scripts: complete, release, renew, and the claim of a key in
//! progress are each one script on one key, so each is atomic, costs one
//! round trip, and runs unchanged on Redis Cluster. (A claim first tries a
//! plain `SET .. NX GET`, which settles a replay and a new key without Lua;
//! on a server with `SET .. IFEQ` and `DELIFEQ`, a completion, release or
//! renewal first tries those, `plain_commands.rs`, and runs its script only
//! when they cannot decide.)
//!
//! Each script opens with a `#!lua` line and no flags, which tells Redis
//! (7.0 and newer) that it may write: a replica refuses it at once with
//! `READONLY`, rather than run it on its own copy. A store whose connection
//! came back to a primary demoted to replica must not be told "fenced" by a
//! replica that lacks the claim: the engine would give up a completion that
//! the real primary still waits for.
//!
//! A script runs with `EVALSHA`; a server that has not cached it (new,
//! restarted, flushed, or a cluster node that never ran it) answers
//! `NOSCRIPT`, and the call is sent again once as `EVAL` with the source,
//! which runs it and caches it on that server. On a cluster the `EVAL` is
//! routed by the key like the `EVALSHA`, so it reaches the one node that owns
//! the record and costs one more round trip, where `SCRIPT LOAD` and a second
//! `EVALSHA` would cost two and fan out to every node.
//!
//! The records are strings laid out as `record.rs` describes; the scripts
//! read them at the same offsets (Lua counts from 1): the format `idem1` at
//! 1-5, the state at 6, the fingerprint at 7-38, the token at 39-54, the
//! lease or the output from 55. Scripts that need no output read the
//! 54-byte header alone (`GETRANGE`). A key holding another type fails the
//! script with `WRONGTYPE`, which the store reports as corrupt. Every write sets an expiry: a claim lives for
//! two leases (one past its lease end, so a takeover can still tell it apart
//! from a new request), a completed record for its ttl. The lease end is
//! read from the key's expiry (`PTTL - lease`), so time is the server's
//! clock, never the client's, and clock skew between app servers cannot
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

/// Reads the record and decides, in the order of the decision table. The
/// plain `SET .. NX GET` of `RedisBackend::claim` settles absent and
/// completed records itself and calls this script for claims in progress,
/// whose lease needs the server's clock; the script decides every case on
/// its own all the same, since the record may have changed in between.
///
/// A claim in progress with the caller's own token is this very script sent
/// again (a retry after a lost reply, as the cluster client does after a
/// dropped connection): the caller holds the key, whatever its lease says.
/// That copy cannot tell whether the first one took over, so it says not;
/// it writes the record again as it is, so that a `WAIT` after it counts
/// the claim's replication.
///
/// KEYS[1] record key; ARGV[1] fingerprint, ARGV[2] new token (hex),
/// ARGV[3] lease ms. Replies `{1, took_over}`, `{2, lease_remaining_ms}`,
/// `{3, output}`, `{4}` or `{-1, reason}`.
pub(crate) static CLAIM: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(
        r#"#!lua
local key, fingerprint, token, lease = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local record = redis.call('GET', key)

-- Writes the record again as it is, with the time it has left: a copy sent
-- again (on another connection) then writes too, and a WAIT after it
-- counts the record's replication.
local function rewrite(value)
    local expires_in = redis.call('PTTL', key)
    if expires_in > 0 then
        redis.call('SET', key, value, 'PX', expires_in)
    end
end

local function claim(took_over)
    redis.call('SET', key, 'idem1P' .. fingerprint .. token .. ARGV[3], 'PX', 2 * lease)
    return {1, took_over}
end

if not record then
    return claim(0)
end
if string.len(record) < 54 or string.sub(record, 1, 4) ~= 'idem' then
    return {-1, 'the value at this key is not an idempotency record'}
end
if string.sub(record, 5, 5) ~= '1' then
    return {-1, 'unknown record version ' .. string.sub(record, 5, 5)}
end
local state = string.sub(record, 6, 6)
if state ~= 'P' and state ~= 'C' then
    return {-1, 'unknown record state ' .. state}
end
if string.sub(record, 7, 38) ~= fingerprint then
    return {4}
end
if state == 'C' then
    return {3, string.sub(record, 55)}
end
if string.sub(record, 39, 54) == token then
    rewrite(record)
    return {1, 0}
end
local held_for = tonumber(string.sub(record, 55))
local expires_in = redis.call('PTTL', key)
if not held_for or expires_in < 0 then
    return {-1, 'the claim has no valid lease'}
end
local remaining = expires_in - held_for
if remaining > 0 then
    return {2, remaining}
end
return claim(1)
"#,
    )
});

/// The start of the compare-and-set scripts: reads the record's header
/// (`GETRANGE`, without its lease or output) into `header`, and answers 0
/// (fenced) when the key is absent or holds another token, and `{-1, reason}`
/// when it holds a value this crate did not write. KEYS[1] is the record key,
/// ARGV[1] the token (hex).
macro_rules! held_by_token {
    () => {
        r#"#!lua
local header = redis.call('GETRANGE', KEYS[1], 0, 53)
if header == '' then
    return 0
end
if string.len(header) < 54 or string.sub(header, 1, 5) ~= 'idem1' then
    return {-1, 'the value at this key is not an idempotency record'}
end
if string.sub(header, 39, 54) ~= ARGV[1] then
    return 0
end
"#
    };
}

/// Replaces the claim holding the token by the completed record. The
/// completed record keeps the token, so a retry of a complete whose reply
/// was lost finds its own record and is told so, not fenced; it writes the
/// record again as it is, so that a `WAIT` after the retry (on whatever
/// connection) counts the record's replication.
///
/// KEYS[1] record key; ARGV[1] token (hex), ARGV[2] output, ARGV[3] ttl ms.
/// Replies 1 (applied), 0 (fenced) or `{-1, reason}`.
pub(crate) static COMPLETE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(concat!(
        held_by_token!(),
        r#"
local state = string.sub(header, 6, 6)
if state == 'C' then
    local expires_in = redis.call('PTTL', KEYS[1])
    if expires_in > 0 then
        redis.call('SET', KEYS[1], redis.call('GET', KEYS[1]), 'PX', expires_in)
    end
    return 1
end
if state ~= 'P' then
    return 0
end
redis.call('SET', KEYS[1], 'idem1C' .. string.sub(header, 7) .. ARGV[2], 'PX', ARGV[3])
return 1
"#
    ))
});

/// Deletes the claim holding the token.
///
/// KEYS[1] record key; ARGV[1] token (hex). Replies 1 (applied), 0 (fenced)
/// or `{-1, reason}`.
pub(crate) static RELEASE: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(concat!(
        held_by_token!(),
        r#"
if string.sub(header, 6, 6) ~= 'P' then
    return 0
end
redis.call('DEL', KEYS[1])
return 1
"#
    ))
});

/// Extends the lease of the claim holding the token: the key expires two
/// leases from now, and the record keeps the new lease's length.
///
/// KEYS[1] record key; ARGV[1] token (hex), ARGV[2] lease ms. Replies 1
/// (applied), 0 (fenced) or `{-1, reason}`.
pub(crate) static RENEW: LazyLock<LuaScript> = LazyLock::new(|| {
    LuaScript::new(concat!(
        held_by_token!(),
        r#"
if string.sub(header, 6, 6) ~= 'P' then
    return 0
end
redis.call('SET', KEYS[1], header .. ARGV[2], 'PX', 2 * tonumber(ARGV[2]))
return 1
"#
    ))
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
