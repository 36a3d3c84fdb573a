//! What the record layout costs the server: the hash layout of the earlier versions beside a
//! string layout, measured with raw pipelines on the same server in the same run (issue
//! "write path v2", server cost). This measure decided the move to the string record
//! (`session-redis/src/record.rs`); it is kept to show the difference on every run.
//!
//! Both variants write the way the library's guarded write does: stage the new record in a
//! key of the session key's slot, then let a script compare the basis token and `RENAME` the
//! staged record into place. They differ only in the record's shape:
//!
//! - **hash** (the earlier layout): `HSET staged d m v c t` + `PEXPIRE staged` + `EVALSHA` (`HMGET key t
//!   x<token>`, `RENAME`); a read is `HMGET key d m v c t` + `PTTL key`;
//! - **string** (close to the adopted record, without its fences and magic): one string with the tokens first (the head token at a fixed
//!   offset), then fixed-width version and creation time, the meta's length, the meta and the
//!   payload: `SET staged ... PX` + `EVALSHA` (`GETRANGE key 0 15`, `RENAME`); a read is
//!   `GET key` + `PTTL key`.
//!
//! The record's fields are the library's own (a real session written by the store first). The
//! server time is the `usec` of the commands the pipeline sent (a script's inner commands are
//! inside its `evalsha`), per operation.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use session_core::{Codec, SessionManager};
use session_redis::ConnectionMode;

use crate::agent::Agent;
use crate::recorder::{Latency, Plan};
use crate::report::Row;
use crate::server_stats::PerOp;
use crate::{Args, BoxResult, Stats, connect_store, id, plan, raw_manager, timed};

/// The library's guard (`session-redis` `scripts::GUARD_LUA`), without the refusal branches
/// this measure never takes.
const HASH_GUARD: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 't', ARGV[2])
local t = cur[1]
if t and not cur[2] and string.sub(t, 1, 16) == ARGV[1] then
  redis.call('RENAME', KEYS[2], KEYS[1])
  return 1
end
redis.call('UNLINK', KEYS[2])
return 0
"#;

/// The same guard for a string record whose first 16 bytes are its head token.
const STRING_GUARD: &str = r#"
if redis.call('GETRANGE', KEYS[1], 0, 15) == ARGV[1] then
  redis.call('RENAME', KEYS[2], KEYS[1])
  return 1
end
redis.call('UNLINK', KEYS[2])
return 0
"#;

/// The five fields of a record as the store wrote them.
struct Fields {
    d: Vec<u8>,
    m: Vec<u8>,
    v: String,
    c: String,
    t: String,
}

impl Fields {
    /// The fields of the record the store wrote under `key` (a string record), which is then
    /// rewritten under `key` as the hash of the earlier layout, for the hash variant.
    async fn of(con: &mut ConnectionManager, key: &str) -> BoxResult<Fields> {
        let value: Vec<u8> = redis::cmd("GET").arg(key).query_async(con).await?;
        let parts = session_redis::RecordParts::split(&value)
            .ok_or_else(|| format!("{key}: not a session record"))?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let fields = Fields {
            d: parts.payload.to_vec(),
            m: parts.meta.to_vec(),
            v: text(parts.version),
            c: text(parts.created_at),
            t: text(parts.tokens),
        };
        if fields.t.len() < 16 {
            return Err(format!("{key}: the record has no write token").into());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(key).ignore();
        fields.push_hset(&mut pipe, key);
        let _: () = pipe.query_async(con).await?;
        Ok(fields)
    }

    /// Adds `HSET key d m v c t` of these fields to `pipe`, its reply ignored.
    fn push_hset(&self, pipe: &mut redis::Pipeline, key: &str) {
        pipe.cmd("HSET")
            .arg(key)
            .arg("d")
            .arg(&self.d)
            .arg("m")
            .arg(&self.m)
            .arg("v")
            .arg(&self.v)
            .arg("c")
            .arg(&self.c)
            .arg("t")
            .arg(&self.t)
            .ignore();
    }

    /// The string layout: tokens (128 hex digits, the head first), version and creation time
    /// (20 digits each), the meta's length (8 digits), the meta, the payload.
    fn as_string(&self) -> BoxResult<Vec<u8>> {
        let v: u64 = self.v.parse()?;
        let c: u64 = self.c.parse()?;
        let mut out = format!("{:0<128}{v:020}{c:020}{:08}", self.t, self.m.len()).into_bytes();
        out.extend_from_slice(&self.m);
        out.extend_from_slice(&self.d);
        Ok(out)
    }
}

pub(crate) async fn section(
    args: &Args,
    stats: &Stats,
    url: &str,
    rows: &mut Vec<Row>,
) -> BoxResult<()> {
    let plan = plan(args);
    let store = Arc::new(connect_store(url, ConnectionMode::Multiplexed).await?);
    let mut con = raw_manager(url).await?;
    let hash_sha = load(&mut con, HASH_GUARD).await?;
    let string_sha = load(&mut con, STRING_GUARD).await?;
    for messages in [10, 100] {
        let m: SessionManager<Agent> = SessionManager::builder(store.clone())
            .summarize(session_core::Summarize::summary)
            .codec(Codec::default())
            .build();
        let sid = id(&format!("layout-{messages}"))?;
        m.update(&sid, &Agent::with_messages(messages)).await?;
        let hash_key = store.key_of(&sid);
        let fields = Fields::of(&mut con, &hash_key).await?;
        let string_key = format!("{hash_key}-as-string");
        let record = fields.as_string()?;
        let head = fields.t[..16].to_owned();
        let fence = format!("x{head}");
        let _: () = redis::cmd("SET")
            .arg(&string_key)
            .arg(&record)
            .query_async(&mut con)
            .await?;
        let section = format!(
            "Record layout, {messages}-message agent ({} B payload): the earlier hash beside a string",
            fields.d.len()
        );
        println!("{section}");
        let k = |name: &str| format!("layout{messages}.{name}");

        let staged = |key: &str, i: usize| format!("{{{key}}}~w{i:016x}");

        println!(" write, hash layout");
        let mut c = con.clone();
        let (l, s) = server_timed(
            stats,
            plan,
            &["hset", "pexpire", "evalsha"],
            "hmget, rename",
            async |i| {
                let st = staged(&hash_key, i);
                let mut pipe = redis::pipe();
                fields.push_hset(&mut pipe, &st);
                let (written,): (i64,) = pipe
                    .cmd("PEXPIRE")
                    .arg(&st)
                    .arg(3_600_000)
                    .ignore()
                    .cmd("EVALSHA")
                    .arg(&hash_sha)
                    .arg(2)
                    .arg(&hash_key)
                    .arg(&st)
                    .arg(&head)
                    .arg(&fence)
                    .query_async(&mut c)
                    .await?;
                check(written)
            },
        )
        .await?;
        rows.push(
            Row::latency(
                &k("hash.write"),
                &section,
                "write, hash layout (earlier versions)",
                l,
                Some(s),
            )
            .note(
                "HSET staged d m v c t + PEXPIRE staged + EVALSHA guard (HMGET t x<token>, RENAME)",
            ),
        );

        println!(" write, string layout");
        let (l, s) = server_timed(
            stats,
            plan,
            &["set", "evalsha"],
            "getrange, rename",
            async |i| {
                let st = staged(&string_key, i);
                let (written,): (i64,) = redis::pipe()
                    .cmd("SET")
                    .arg(&st)
                    .arg(&record)
                    .arg("PX")
                    .arg(3_600_000)
                    .ignore()
                    .cmd("EVALSHA")
                    .arg(&string_sha)
                    .arg(2)
                    .arg(&string_key)
                    .arg(&st)
                    .arg(&head)
                    .query_async(&mut c)
                    .await?;
                check(written)
            },
        )
        .await?;
        rows.push(
            Row::latency(
                &k("string.write"),
                &section,
                "write, string layout",
                l,
                Some(s),
            )
            .vs(&k("hash.write"))
            .note("SET staged PX + EVALSHA guard (GETRANGE 0 15, RENAME)"),
        );

        println!(" read, hash layout");
        let (l, s) = server_timed(stats, plan, &["hmget", "pttl"], "", async |_| {
            let (_, ttl): (Vec<Option<Vec<u8>>>, i64) = redis::pipe()
                .cmd("HMGET")
                .arg(&hash_key)
                .arg(&["d", "m", "v", "c", "t"])
                .cmd("PTTL")
                .arg(&hash_key)
                .query_async(&mut c)
                .await?;
            std::hint::black_box(ttl);
            Ok(())
        })
        .await?;
        rows.push(
            Row::latency(
                &k("hash.read"),
                &section,
                "read, hash layout (earlier versions)",
                l,
                Some(s),
            )
            .note("HMGET key d m v c t + PTTL key"),
        );

        println!(" read, string layout");
        let (l, s) = server_timed(stats, plan, &["get", "pttl"], "", async |_| {
            let (record, ttl): (Vec<u8>, i64) = redis::pipe()
                .cmd("GET")
                .arg(&string_key)
                .cmd("PTTL")
                .arg(&string_key)
                .query_async(&mut c)
                .await?;
            std::hint::black_box((record, ttl));
            Ok(())
        })
        .await?;
        rows.push(
            Row::latency(
                &k("string.read"),
                &section,
                "read, string layout",
                l,
                Some(s),
            )
            .vs(&k("hash.read"))
            .note("GET key + PTTL key"),
        );
    }
    Ok(())
}

fn check(written: i64) -> BoxResult<()> {
    if written == 1 {
        Ok(())
    } else {
        Err("the guard refused a write whose basis token is current".into())
    }
}

/// [`crate::timed`], with the server time counted as the `usec` of exactly the commands in
/// `sent` (one call each per operation; `in_scripts` names what the script runs): the report's
/// accounting of script internals is for the library's own scripts, not these.
async fn server_timed(
    stats: &Stats,
    plan: Plan,
    sent: &[&str],
    in_scripts: &str,
    op: impl AsyncFnMut(usize) -> BoxResult<()>,
) -> BoxResult<(Latency, PerOp)> {
    let (latency, mut per) = timed(stats, plan, op).await?;
    per.server_us = per
        .by_command
        .iter()
        .filter(|c| sent.contains(&c.name.as_str()))
        .map(|c| c.usec)
        .sum();
    per.commands = sent
        .iter()
        .map(|name| format!("{name} 1.00"))
        .collect::<Vec<_>>()
        .join(" · ");
    if !in_scripts.is_empty() {
        per.commands
            .push_str(&format!(" [in scripts: {in_scripts}]"));
    }
    println!(
        "  counted: server {:>5.1} µs/op ({})",
        per.server_us,
        sent.join(" + ")
    );
    Ok((latency, per))
}

/// Loads a script (`SCRIPT LOAD`) and returns its SHA1, checked against the one redis-rs
/// computes.
async fn load(con: &mut ConnectionManager, source: &str) -> BoxResult<String> {
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(source)
        .query_async(con)
        .await?;
    if sha != redis::Script::new(source).get_hash() {
        return Err("SCRIPT LOAD returned another SHA1".into());
    }
    Ok(sha)
}
