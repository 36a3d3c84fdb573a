//! The small Lua scripts of the write path. None of them touches a payload on the way in: the
//! new record is staged by a plain `HSET` in a key of the same cluster slot, and a script only
//! checks the condition and moves the staged record into place with `RENAME` (see
//! `write.rs`). Redis 7.0 hashes every byte of every string a script receives, so a script
//! that carried the state cost ~1 µs of server time per KB; these cost the same for any size.
//!
//! Replies:
//! - `1` (guard), `"<version> <created_at> <tokens>"` (update): written;
//! - `{"conflict"}` (refused, no session) or `{"conflict", HMGET d m v c t, PTTL}` (refused,
//!   with the current record, read in the same atomic step);
//! - `{"corrupt", reason}` (update): a hash whose `v` is missing or not a version; nothing
//!   written;
//! - `{"fenced"}`: the write was declared lost by a resolve (see [`RESOLVE_LUA`]) and must
//!   never land; nothing written. Only a write delivered late can meet this, and nobody waits
//!   for its reply any more;
//! - an error reply `WRONGTYPE ...` (the key holds another type) or `ERR no such key` (the
//!   staged record is gone: its TTL ran out before the script ran); nothing written.
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
/// basis, which the token proves current), so the script compares one field and renames.
///
/// `KEYS[1]`: the session key; `KEYS[2]`: the staged record.
/// `ARGV[1]`: the basis token (16 hex digits); `ARGV[2]`: this write's fence field (`x` and
/// its token).
///
/// Two Redis calls when the write goes through (`HMGET`, `RENAME`), and an integer reply: every
/// `redis.call`, `pcall` and table reply costs about a microsecond of server time on Redis 7.0
/// and Valkey 9, so the common path has none it can do without. A key of another type makes
/// `HMGET` fail and the script with it (a `WRONGTYPE` error reply; the client then removes the
/// staged record); a staged record that is gone makes `RENAME` fail (`ERR no such key`).
pub(crate) const GUARD_LUA: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 't', ARGV[2])
local t = cur[1]
if t and not cur[2] and string.sub(t, 1, 16) == ARGV[1] then
  redis.call('RENAME', KEYS[2], KEYS[1])
  return 1
end
redis.call('UNLINK', KEYS[2])
if cur[2] then return {'fenced'} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'conflict'} end
return {'conflict', redis.call('HMGET', KEYS[1], 'd', 'm', 'v', 'c', 't'), redis.call('PTTL', KEYS[1])}
"#;

/// The guard of the writes whose new version the client cannot know: `Condition::Any` (the
/// seed's `update_agent`), `IfVersion`, and `IfUnchanged` on a basis without a token (a record
/// of the older layout). The client staged `d` and `m`; the script reads the current `v`, `c`
/// and `t`, checks the condition, renames the staged record into place and adds `v`, `c` and
/// `t` to it.
///
/// `KEYS[1]`: the session key; `KEYS[2]`: the staged record.
/// `ARGV[1]`: `any`, `version` (`v` must equal `ARGV[2]`) or `untokened` (`v` must equal
/// `ARGV[2]` and the hash must have no `t`); `ARGV[2]`: the expected version or empty;
/// `ARGV[3]`: this write's token (16 hex digits); `ARGV[4]`: now in ms (`c` of a new session).
///
/// A missing `v` on an existing key is corrupt, so that a stray hash is never mistaken for
/// "absent" and overwritten. Versions are formatted with `%.0f` (Lua 5.1's `tostring` switches
/// to exponent notation from 1e14 on); a version of 2^53 or more is corrupt, since a Lua number
/// (a double) could not grow by exactly one. A malformed `t` is dropped by the write (the
/// record's history starts again from this write). The small fields are written with `HMSET`,
/// HSET's alias, so that `INFO commandstats` tells them apart from the staging `HSET` that
/// carries the payload. The reply after a write is one string, `"<version> <created_at>
/// <tokens>"` (a table would cost more server time).
pub(crate) const UPDATE_LUA: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'v', 'c', 't', 'x' .. ARGV[3])
local function refuse(reply)
  redis.call('UNLINK', KEYS[2])
  return reply
end
local v, c, t = cur[1], cur[2], cur[3]
if cur[4] then return refuse({'fenced'}) end
local version = false
if v then
  if not string.match(v, '^%d+$') then
    return refuse({'corrupt', 'field v is not a version number'})
  end
  version = tonumber(v)
  if version >= 9007199254740992 then
    return refuse({'corrupt', 'field v is too large to be incremented exactly'})
  end
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  return refuse({'corrupt', 'the session hash has no version field v'})
end
local mode = ARGV[1]
local allowed = true
if mode == 'version' then
  allowed = version and version == tonumber(ARGV[2])
elseif mode == 'untokened' then
  allowed = version and version == tonumber(ARGV[2]) and (not t or t == '')
end
if not allowed then
  if not version then return refuse({'conflict'}) end
  local current = redis.call('HMGET', KEYS[1], 'd', 'm', 'v', 'c', 't')
  return refuse({'conflict', current, redis.call('PTTL', KEYS[1])})
end
if not (t and #t % 16 == 0 and string.match(t, '^[0-9a-f]*$')) then t = '' end
local new = string.format('%.0f', (version or 0) + 1)
c = c or ARGV[4]
local tokens = ARGV[3] .. string.sub(t, 1, 112)
redis.call('RENAME', KEYS[2], KEYS[1])
redis.call('HMSET', KEYS[1], 'v', new, 'c', c, 't', tokens)
return new .. ' ' .. c .. ' ' .. tokens
"#;

/// After a write's reply was lost: did it land? Looks for the write's token among the
/// record's recent tokens; if it is not there, *fences* the write (a field `x<token>` in the
/// session hash, which both guards check), so that the write can never land later, delivered
/// late from a dead connection's buffers. The fence lives until the next write replaces the
/// hash, and after that the lost write's condition can no longer hold anyway (the token
/// moved on).
///
/// `KEYS[1]`: the session key; `KEYS[2]`: the staged key of the send in doubt, removed (a
/// connection that died between the staging and the guard would otherwise leave it for the
/// session's TTL). `ARGV[1]`: the token (16 hex digits); `ARGV[2]`: its fence field. Replies `{"landed" | "not_landed", HMGET d m v c t, PTTL}`, or `{"corrupt", reason}`.
///
/// A create (`RENAMENX`, no script) is not fenced: a create delivered late finds the session
/// created by the resend (or anyone) and does nothing, unless the session was deleted in
/// between.
pub(crate) const RESOLVE_LUA: &str = r#"
local t = redis.pcall('HGET', KEYS[1], 't')
if type(t) == 'table' and t.err then return {'corrupt', t.err} end
local landed = false
if t then
  for i = 1, #t - 15, 16 do
    if string.sub(t, i, i + 15) == ARGV[1] then
      landed = true
      break
    end
  end
end
redis.call('UNLINK', KEYS[2])
if not landed and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[2], '1')
end
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
/// or `{HMGET d m v c t, PTTL}` as a plain load's pipeline would.
pub(crate) const BOUNDED_LOAD_LUA: &str = r#"
local n = redis.call('HSTRLEN', KEYS[1], 'd')
if n > tonumber(ARGV[1]) then return {'too_large', n} end
return {redis.call('HMGET', KEYS[1], 'd', 'm', 'v', 'c', 't'), redis.call('PTTL', KEYS[1])}
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
