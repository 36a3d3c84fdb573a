//! The small Lua scripts of the write path. None of them touches a payload on the way in: the
//! new record is staged by a plain `SET ... PX` in a key of the same cluster slot, and a
//! script only checks the condition against the current record's header (`GETRANGE`, see
//! `record.rs` for its offsets) and moves the staged record into place with `RENAME` (see
//! `write.rs`). Redis 7.0 hashes every byte of every string a script receives, so a script
//! that carried the state cost ~1 µs of server time per KB; these cost the same for any size.
//!
//! Every script also takes a session still stored as a hash of the earlier layouts: its
//! `GETRANGE` fails with `WRONGTYPE` (caught with `pcall`), and the script reads the hash
//! fields instead. The staged record is always a string, so the rename replaces the hash.
//!
//! Replies:
//! - `1` (guard), `"<version> <created_at> <tokens>"` (update): written;
//! - `{"conflict"}` (refused, no session) or `{"conflict", <record>, PTTL}` (refused, with the
//!   current record, read in the same atomic step: `GET` of a string record, `HMGET d m v c t`
//!   of a hash);
//! - `{"corrupt", reason}` (update): a key that holds no readable version; nothing written;
//! - `{"fenced"}`: the write was declared lost by a resolve (see [`RESOLVE_LUA`]) and must
//!   never land; nothing written. Only a write delivered late can meet this, and nobody waits
//!   for its reply any more;
//! - an error reply `WRONGTYPE ...` (the key holds neither a string nor a hash) or `ERR no
//!   such key` (the staged record is gone: its TTL ran out before the script ran); nothing
//!   written.
//!
//! Every refusal removes the staged record (`UNLINK`), so it never outlives its write.

use std::time::Instant;

use redis::Script;
use session_core::Result;

use crate::{
    connection::Connection,
    transport::{Request, Retry},
};

/// The guard of a write built on a basis with a token (`Condition::IfUnchanged`): the client
/// staged the complete new record (it knows the version, `created_at` and tokens from the
/// basis, which the token proves current), so the script compares the head token and looks
/// for this write's token among the fences (the first 160 bytes of the record, one
/// `GETRANGE`; a fence is the only place after offset 128 where 16 hex digits can stand) and
/// renames.
///
/// `KEYS[1]`: the session key; `KEYS[2]`: the staged record.
/// `ARGV[1]`: the basis token (16 hex digits); `ARGV[2]`: this write's token.
///
/// Two Redis calls when the write goes through (`GETRANGE`, `RENAME`), and an integer reply:
/// every `redis.call`, `pcall` and table reply costs about a microsecond of server time on
/// Redis 7.0 and Valkey 9, so the common path has none it can do without. A staged record
/// that is gone makes `RENAME` fail (`ERR no such key`).
pub(crate) const GUARD_LUA: &str = r#"
local h = redis.pcall('GETRANGE', KEYS[1], 0, 159)
if type(h) == 'string' then
  if string.sub(h, 1, 16) == ARGV[1] and #h == 160 then
    if not string.find(h, ARGV[2], 129, true) then
      redis.call('RENAME', KEYS[2], KEYS[1])
      return 1
    end
    redis.call('UNLINK', KEYS[2])
    return {'fenced'}
  end
  redis.call('UNLINK', KEYS[2])
  if h == '' and redis.call('EXISTS', KEYS[1]) == 0 then return {'conflict'} end
  return {'conflict', redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
end
if not string.find(h.err, 'WRONGTYPE', 1, true) then
  redis.call('UNLINK', KEYS[2])
  return h
end
local cur = redis.pcall('HMGET', KEYS[1], 't', 'x' .. ARGV[2])
if cur.err then
  redis.call('UNLINK', KEYS[2])
  return cur
end
local t = cur[1]
if t and not cur[2] and string.sub(t, 1, 16) == ARGV[1] then
  redis.call('RENAME', KEYS[2], KEYS[1])
  return 1
end
redis.call('UNLINK', KEYS[2])
if cur[2] then return {'fenced'} end
return {'conflict', redis.call('HMGET', KEYS[1], 'd', 'm', 'v', 'c', 't'), redis.call('PTTL', KEYS[1])}
"#;

/// The guard of the writes whose new version the client cannot know: `Condition::Any` (the
/// seed's `update_agent`), `IfVersion`, and `IfUnchanged` on a basis without a token (a record
/// of the first layout). The client staged the record as a new session's (its token first,
/// version 1, created now); the script reads the current record's first 200 bytes (tokens,
/// fences, magic, version, creation time), checks the condition and renames the staged record
/// into place. Over an existing record it then writes the rest of the header with one
/// `SETRANGE` from offset 16: the old tokens shifted by one, empty fences, the magic, the
/// version + 1 and the old creation time (after the `RENAME`, so that a staged record that
/// expired makes the script fail before anything is written). A hash of the earlier layouts
/// is read through its fields (`v c t x<token>`) instead.
///
/// `KEYS[1]`: the session key; `KEYS[2]`: the staged record.
/// `ARGV[1]`: `any`, `version` (the version must equal `ARGV[2]`) or `untokened` (the version
/// must equal `ARGV[2]` and the record must have no tokens); `ARGV[2]`: the expected version
/// or empty; `ARGV[3]`: this write's token (16 hex digits); `ARGV[4]`: the staged record's
/// creation time in ms (now).
///
/// Few Lua strings and no pattern matching on the common path: every string a script makes
/// costs server time (this script measured 13 µs per call with `string.match` and
/// `string.format('%f')` on it, 2-3 times the guard). An existing key without a readable
/// version is corrupt, so that a stray value is never mistaken for "absent" and overwritten;
/// a version of 2^53 or more is corrupt, since a Lua number (a double) could not grow by
/// exactly one. The reply after a write is one string, `"<version> <created_at> <tokens>"`
/// (zero-padded numbers; the tokens may end in the `-` of unused slots), since a table would
/// cost more server time.
pub(crate) const UPDATE_LUA: &str = r#"
local function refuse(reply)
  redis.call('UNLINK', KEYS[2])
  return reply
end
local mode, token = ARGV[1], ARGV[3]
local h = redis.pcall('GETRANGE', KEYS[1], 0, 199)
if type(h) == 'string' then
  if h == '' then
    if mode ~= 'any' then return refuse({'conflict'}) end
    redis.call('RENAME', KEYS[2], KEYS[1])
    return '1 ' .. ARGV[4] .. ' ' .. token
  end
  if #h < 200 or string.find(h, 'sr1;', 161, true) ~= 161 then
    return refuse({'corrupt', 'the key holds a string that is not a session record'})
  end
  local f = string.find(h, token, 129, true)
  if f and f <= 145 then return refuse({'fenced'}) end
  local v = tonumber(string.sub(h, 165, 184))
  if not v or v < 0 or v % 1 ~= 0 or v >= 9007199254740992 then
    return refuse({'corrupt', 'the version is not a number that can be incremented exactly'})
  end
  if (mode == 'version' and v ~= tonumber(ARGV[2]))
    or (mode == 'untokened' and (v ~= tonumber(ARGV[2]) or string.byte(h, 1) ~= 45)) then
    return refuse({'conflict', redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])})
  end
  local new = string.format('%020d', v + 1)
  local tokens = string.sub(h, 1, 112)
  local c = string.sub(h, 185, 200)
  redis.call('RENAME', KEYS[2], KEYS[1])
  redis.call('SETRANGE', KEYS[1], 16, tokens .. '--------------------------------sr1;' .. new .. c)
  return new .. ' ' .. c .. ' ' .. token .. tokens
end
if not string.find(h.err, 'WRONGTYPE', 1, true) then return refuse(h) end
local cur = redis.pcall('HMGET', KEYS[1], 'v', 'c', 't', 'x' .. token)
if cur.err then return refuse(cur) end
if cur[4] then return refuse({'fenced'}) end
local v, c, t = cur[1], cur[2], cur[3] or ''
if not v then return refuse({'corrupt', 'the session hash has no version field v'}) end
if not string.match(v, '^%d+$') then
  return refuse({'corrupt', 'the version is not a number'})
end
local version = tonumber(v)
if version >= 9007199254740992 then
  return refuse({'corrupt', 'the version is too large to be incremented exactly'})
end
if (mode == 'version' and version ~= tonumber(ARGV[2]))
  or (mode == 'untokened' and (version ~= tonumber(ARGV[2]) or t ~= '')) then
  return refuse({'conflict', redis.call('HMGET', KEYS[1], 'd', 'm', 'v', 'c', 't'), redis.call('PTTL', KEYS[1])})
end
if not (#t % 16 == 0 and string.match(t, '^[0-9a-f]*$')) then t = '' end
c = tonumber(c and string.match(c, '^%d+$') or ARGV[4])
if c >= 1e16 then c = tonumber(ARGV[4]) end
local tokens = token .. string.sub(t, 1, 112)
redis.call('RENAME', KEYS[2], KEYS[1])
redis.call('SETRANGE', KEYS[1], 0, tokens .. string.rep('-', 160 - #tokens) .. 'sr1;' ..
  string.format('%020.0f%016.0f', version + 1, c))
return string.format('%.0f', version + 1) .. ' ' .. string.format('%.0f', c) .. ' ' .. tokens
"#;

/// After a write's reply was lost: did it land? Looks for the write's token among the
/// record's recent tokens; if it is not there, *fences* the write (its token in the record's
/// fences, one `SETRANGE` of the header, or a field `x<token>` in a hash), which both guards
/// check, so that the write can never land later, delivered late from a dead connection's
/// buffers. The fence lives until the next write replaces the record, and after that the
/// lost write's condition can no longer hold anyway (the token moved on).
///
/// `KEYS[1]`: the session key; `KEYS[2]`: the staged key of the send in doubt, removed (a
/// connection that died between the staging and the guard would otherwise leave it for the
/// session's TTL). `ARGV[1]`: the token (16 hex digits). Replies `{"landed" | "not_landed",
/// <record>, PTTL}` (`GET` of a string record, `HMGET d m v c t` of a hash), or `{"corrupt",
/// reason}`.
///
/// A create (`RENAMENX`, no script) is not fenced: a create delivered late finds the session
/// created by the resend (or anyone) and does nothing, unless the session was deleted in
/// between.
pub(crate) const RESOLVE_LUA: &str = r#"
redis.call('UNLINK', KEYS[2])
local h = redis.pcall('GETRANGE', KEYS[1], 0, 159)
local landed = false
if type(h) == 'string' then
  for i = 1, 113, 16 do
    if string.sub(h, i, i + 15) == ARGV[1] then
      landed = true
      break
    end
  end
  if not landed and #h == 160 then
    redis.call('SETRANGE', KEYS[1], 128, ARGV[1] .. string.sub(h, 129, 144))
  end
  return {landed and 'landed' or 'not_landed', redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
end
if not string.find(h.err, 'WRONGTYPE', 1, true) then return {'corrupt', h.err} end
local t = redis.pcall('HGET', KEYS[1], 't')
if type(t) == 'table' and t.err then return {'corrupt', t.err} end
if t then
  for i = 1, #t - 15, 16 do
    if string.sub(t, i, i + 15) == ARGV[1] then
      landed = true
      break
    end
  end
end
if not landed then redis.call('HSET', KEYS[1], 'x' .. ARGV[1], '1') end
local current = redis.call('HMGET', KEYS[1], 'd', 'm', 'v', 'c', 't')
return {landed and 'landed' or 'not_landed', current, redis.call('PTTL', KEYS[1])}
"#;

/// A delete that can answer for itself when its reply is lost: it removes the session and, if
/// there was one, leaves a small marker (the call's own key, in the session key's slot, with a
/// short expiry). The same call sent again on a new connection finds its marker and answers
/// "it existed", where a second `UNLINK` would say "it did not".
///
/// `KEYS[1]`: the session key; `KEYS[2]`: this call's marker. `ARGV[1]`: the marker's expiry
/// in milliseconds. Replies `1` (it existed) or `0`.
pub(crate) const DELETE_LUA: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
local n = redis.call('UNLINK', KEYS[1])
if n == 1 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[1]) end
return n
"#;

/// A load that looks at the payload's size first (`RedisOptions::with_read_limit`): a payload
/// over the limit never leaves the server.
///
/// `KEYS[1]`: the session key. `ARGV[1]`: the limit in bytes. Replies `{"too_large", size}`,
/// or `{"record", <record>, PTTL}` (`GET` of a string record, `HMGET d m v c t` of a hash) as
/// a plain load's pipeline would.
pub(crate) const BOUNDED_LOAD_LUA: &str = r#"
local n = redis.pcall('STRLEN', KEYS[1])
if type(n) == 'number' then
  if n >= 210 then
    local m = tonumber(redis.call('GETRANGE', KEYS[1], 200, 209)) or 0
    local size = n - 210 - m
    if size > tonumber(ARGV[1]) then return {'too_large', size} end
  end
  return {'record', redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
end
n = redis.call('HSTRLEN', KEYS[1], 'd')
if n > tonumber(ARGV[1]) then return {'too_large', n} end
return {'record', redis.call('HMGET', KEYS[1], 'd', 'm', 'v', 'c', 't'), redis.call('PTTL', KEYS[1])}
"#;

/// The scripts, compiled (their SHA1s computed once).
pub(crate) struct Scripts {
    pub(crate) guard: Script,
    pub(crate) update: Script,
    pub(crate) resolve: Script,
    pub(crate) delete: Script,
    pub(crate) bounded_load: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            guard: Script::new(GUARD_LUA),
            update: Script::new(UPDATE_LUA),
            resolve: Script::new(RESOLVE_LUA),
            delete: Script::new(DELETE_LUA),
            bounded_load: Script::new(BOUNDED_LOAD_LUA),
        }
    }

    /// Loads the scripts (`SCRIPT LOAD`, one pipeline), by `deadline`.
    pub(crate) async fn load(&self, conn: &Connection, deadline: Instant) -> Result<()> {
        if conn.is_cluster() {
            // Every primary runs scripts for its own slots: each loads them all.
            for source in [
                GUARD_LUA,
                UPDATE_LUA,
                RESOLVE_LUA,
                DELETE_LUA,
                BOUNDED_LOAD_LUA,
            ] {
                let cmd = redis::cmd("SCRIPT").arg("LOAD").arg(source).to_owned();
                conn.send_by(
                    &Request::AllPrimaries(&cmd),
                    Retry::Idempotent,
                    "SCRIPT LOAD",
                    deadline,
                )
                .await?;
            }
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for source in [
            GUARD_LUA,
            UPDATE_LUA,
            RESOLVE_LUA,
            DELETE_LUA,
            BOUNDED_LOAD_LUA,
        ] {
            pipe.cmd("SCRIPT").arg("LOAD").arg(source);
        }
        conn.send_by(
            &Request::Pipe(&pipe),
            Retry::Idempotent,
            "SCRIPT LOAD",
            deadline,
        )
        .await
        .map(drop)
    }
}
