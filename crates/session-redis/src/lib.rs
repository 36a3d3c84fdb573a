//! Durable session state in Redis: `RedisStore`, a [`session_core::SessionStore`], and the
//! types that say where Redis is ([`RedisTarget`], [`RedisOptions`] ...).
//!
//! ```no_run
//! # #[cfg(feature = "driver")]
//! # async fn run() -> session_core::Result<()> {
//! use std::sync::Arc;
//! use session_core::{SessionId, SessionManager, SessionStore};
//! use session_redis::{RedisOptions, RedisStore};
//!
//! let options = RedisOptions::from_url("redis://127.0.0.1:6379/0")?;
//! let store: Arc<dyn SessionStore> = Arc::new(RedisStore::connect(options).await?);
//! let counters = SessionManager::<u64>::new(store);
//! let id = SessionId::new("user-123")?;
//! counters.get_or_create(&id, || 0).await?;
//! counters.modify(&id, |n| *n += 1).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! One string per session under `{prefix}{id}` (default prefix `cql:session:`), the TTL on
//! the key (`PEXPIRE`, milliseconds): a fixed-width header, then the meta, then the payload.
//!
//! | offset | bytes | content |
//! |---|---|---|
//! | 0 | 128 | the write tokens of the last 8 writes, newest first, 16 hex digits each (unused slots `-`): the first one identifies the content (conditional writes compare it, see [`session_core::WriteToken`]) |
//! | 128 | 32 | fences: the tokens of up to two writes a resolve declared lost (see below), `-` when none |
//! | 160 | 4 | the magic `sr1;` |
//! | 164 | 20 | the version, decimal, zero-padded: 1 on create, +1 per write |
//! | 184 | 16 | `created_at` in ms, decimal, zero-padded |
//! | 200 | 10 | the meta's length, decimal, zero-padded |
//! | 210 | m | the meta: MessagePack (`to_vec_named`) of `{ updated_at, size, summary, ttl_ms, prefix }` |
//! | 210 + m | rest | the payload (the codec envelope; opaque here) |
//!
//! The fixed widths let the scripts read what they compare with one `GETRANGE` and write a
//! header with one `SETRANGE`, never touching the payload; a listing reads the first 1 KiB
//! (the header and the meta), never the payload. [`RecordParts`] splits a stored record for
//! tools. Timestamps are the client's clock ([`session_core::Timestamp::now`]).
//!
//! Sessions stored by the earlier versions of this crate, one HASH each (fields `d` payload,
//! `m` meta, `v` version, `c` created_at, `t` tokens; or an incarnation `i` instead of `t`),
//! are read as they are (a `GET` that meets `WRONGTYPE` reads the hash fields instead), and
//! their next write replaces them with a string. A conditional write on a hash without tokens
//! compares the version.
//!
//! Two more kinds of key live in the session key's cluster slot, for an instant each: the
//! staged record of a write in flight, `{<session key>}~w<nonce>` (`<session key>~w<nonce>`
//! when the prefix has a hash tag of its own), and a delete's marker, `{<session key>}~d<nonce>`
//! (see below). `~` is not a session id character, so
//! listings never show them. An ACL user needs the key patterns `~<prefix>*` and
//! `~{<prefix>*` (e.g. `~cql:session:* ~{cql:session:*`).
//!
//! # Writes
//!
//! One round trip, and no script ever touches the payload (Redis 7.0 hashes every byte of a
//! string a script receives): the new record is staged with a plain `SET staged <record> PX
//! <ttl>` under the staged key, and moved into place by the step that checks the condition.
//!
//! | condition | the pipeline after `SET staged <record> PX ttl` |
//! |---|---|
//! | `IfUnchanged` (what `SessionManager` sends) | `EVALSHA` guard: `GETRANGE key 0 159` (tokens and fences), compare the token, `RENAME staged key` |
//! | `IfAbsent` (create) | `GET key` + `PTTL key`, `RENAMENX staged key`, `UNLINK staged`: no Lua |
//! | `Any`, `IfVersion`, `IfUnchanged` on a record without tokens | `EVALSHA` update: `GETRANGE key 0 199`, check, `RENAME staged key`, `SETRANGE key 0 <header>` |
//!
//! A refused write removes its staged record and returns the current record in the same
//! reply. The scripts are loaded when the store connects; one the server has forgotten
//! (`NOSCRIPT` after a restart) is loaded and the write sent again. A dropped connection
//! between the staging and the guard leaves the session untouched.
//!
//! # Round trips per operation
//!
//! | operation | round trips | commands the client sends |
//! |---|---|---|
//! | `load` | 1 | pipeline `GET key` + `PTTL key` (a hash of the earlier layouts: one more, `HMGET key d m v c t` + `PTTL key`); with [`RedisOptions::with_read_limit`], `EVALSHA` bounded load (`STRLEN key` and the meta's length first: a payload over the limit never leaves the server) |
//! | `write` / `save` | 1 | the write pipeline above |
//! | `delete` | 1 | `EVALSHA` delete: `UNLINK key`, and a marker of the call (a few seconds) when the session existed, so that a resend after a lost reply answers truthfully |
//! | `touch` / `exists` | 1 | `PEXPIRE` / `EXISTS` |
//! | `list_page` | 2 | `SCAN cursor MATCH <escaped prefix>* COUNT` between 32 and 1000 (the page's size), then one pipeline of `PTTL key` + `GETRANGE key 0 1023` per listed key (a second look, `GETRANGE` as far as the meta goes and `HMGET key m v c`, for a hash of the earlier layouts or a meta longer than 814 bytes); the SCAN is skipped while the cursor still carries ids. A cursor carries at most 2 KiB of ids ([`MAX_CURSOR_BYTES`] in all): a SCAN step that would leave more waits for the next page, or is taken again with a smaller `COUNT` |
//! | `count` | keys in db / 1000 | `SCAN ... COUNT 1000` until the cursor is 0; for ids with a `:` (which a nested prefix's keys look like), one pipeline of `GETRANGE key 0 1023` + `HGET key m` per step |
//! | `ping` | 1 | `PING` |
//!
//! **Nested prefixes.** Ids may hold `:`, so a store with prefix `app:` sees the key `app:s:u-1` of
//! a store with prefix `app:s:` as its id `s:u-1`. Every record names the prefix it was written
//! under (in its meta), and a store lists, counts and reads only its own: a nested store's
//! record reads as `Corrupt` ("another store's") instead of as a session. Records written before
//! the meta named the prefix are taken as the reader's.
//!
//! `SessionManager::modify` is one `write` (1 round trip) when the manager read or wrote the
//! session last, else a `load` and a `write`, or a refused `write` (which returns the current
//! record) and a `write`: 2 round trips. `SessionManager::get_or_create` is one round trip:
//! a `load` for a session this manager has seen, else a create that returns the existing
//! record if there is one.
//! Nothing uses `KEYS`, `FLUSHDB`, `FLUSHALL` or `DBSIZE`. In pool mode, checking out a
//! connection costs no round trip (see [`ConnectionMode::Pool`] and the `pool` feature notes
//! below).
//!
//! # Listing
//!
//! The cursor is `r1:<scan cursor>:<id>,<id>,...`: the SCAN position plus the ids one SCAN
//! batch returned that did not fit in the page, so no page exceeds its limit and no key is
//! lost. It is URL-safe. Keys under the prefix whose rest is not a valid session id are skipped;
//! keys that vanish between SCAN and the fetch are skipped; keys whose listing data cannot be
//! read (another Redis type, bad `m` or `v`) are **listed** with version 0, an empty summary and
//! zero timestamps (a warning is logged), so that tools can find and delete them. `load` reports
//! them as [`session_core::Error::Corrupt`]. Like every SCAN, a listing that runs while the
//! database rehashes may show a key twice; `SessionManager::list` removes duplicates.
//!
//! # Time bounds
//!
//! Every call returns within a bound derived from the two timeouts of [`RedisOptions`],
//! whatever the server does: refuses connections, hangs (a `SIGSTOP`), restarts, or drops
//! packets (a network partition). With *connect* the connect timeout (default 2 s) and
//! *command* the command timeout (default 1 s):
//!
//! | call | returns within | by default |
//! |---|---|---|
//! | `RedisStore::connect` | connect + command | 3 s |
//! | `load`, `exists`, `touch`, `delete`, `ping` | connect + command | 3 s |
//! | `list_page`, `count` | connect + command per round trip (`list_page` makes at most 9, `count` one per 1,000 keys in the database); the call ends with the first round trip that fails | 3 s once the server stops answering |
//! | `write` (and `save`) | 3 × (connect + command) | 9 s |
//!
//! Every request waits at most *connect* for a connection (a reconnect in flight, or a free
//! pooled connection) and at most *command* for its reply; the resend of an idempotent request
//! after a dropped connection shares the bound of its round trip. A write may need three: its
//! send, the resolve of a lost reply, and one more send (see below); its bound holds whatever
//! each of them meets. `SessionManager` operations add up the store calls they make (a
//! `modify` that reads and then writes, its bounded retries after a conflict).
//!
//! # Connections
//!
//! - Every connection, including every one that replaces another, is made with the same
//!   client: `TCP_NODELAY` on (redis-rs 1.x leaves Nagle's algorithm on) and TCP keepalive
//!   (probes after 30 s idle, every 10 s), so that a vanished peer is noticed.
//! - A connection is **replaced, never reused**, once a request on it got no reply within the
//!   command timeout, once it dropped or broke, and once the server answered `READONLY` (a
//!   master demoted to a replica: a new connection may reach the new master), `LOADING` (a
//!   restart, loading its data) or `MASTERDOWN` (a replica without its master), also inside a
//!   pipeline's reply or from a script. In the multiplexed mode the store holds its one
//!   connection itself (redis-rs' `ConnectionManager` reconnects only after a drop, and cannot
//!   be asked to): one reconnect at a time, on a task of its own; requests wait for it up to
//!   the connect timeout. After an attempt that failed (or a new connection that answered
//!   `READONLY`, `LOADING` or `MASTERDOWN` again) the next waits up to 50 ms, doubling with
//!   each failure up to 1 s (each wait drawn between half and all of that); requests in
//!   between fail at once with `Unavailable` instead of waiting. So a server that answers
//!   again is used within about a second. In the pool mode such a connection is taken out of
//!   the pool, and the next checkout gets another or a new one.
//! - An idempotent operation (load, exists, touch, delete, list, count, ping) that meets a
//!   dropped connection is sent once more on a new connection: a connection that died while
//!   the store was idle (a server restart) is found dead only by the first request on it,
//!   and that request should not fail for it.
//!
//! # Failures
//!
//! - A timeout, a refused or dropped connection, `LOADING`, `READONLY`, `MASTERDOWN`,
//!   `CLUSTERDOWN`, `TRYAGAIN` => [`session_core::Error::Unavailable`] (nothing was written;
//!   retrying later may work);
//! - `OOM command not allowed when used memory > 'maxmemory'` =>
//!   [`session_core::Error::OutOfMemory`]: nothing was written, and the server needs more
//!   `maxmemory` or a `maxmemory-policy` that may evict sessions. A write refused for memory
//!   leaves no staged record (its staging `SET` is what the server refuses);
//! - WRONGPASS, NOAUTH, NOPERM => [`session_core::Error::Auth`]; anything else =>
//!   [`session_core::Error::Backend`]. Error replies inside a pipeline's reply and errors a
//!   Lua script raises are classified like a failed command. No error, log line or `Debug`
//!   output holds the password.
//! - **A write's outcome is never guessed.** A write whose reply does not arrive (dropped
//!   connection, command timeout) is resolved before `write` returns: a small script looks for
//!   the write's token among the record's recent tokens (and removes the send's staged
//!   record). There: the write landed, and `write` returns exactly what the lost reply
//!   carried (even when other instances have written on top of it since). Not there, and the
//!   record still shows the place the write would have taken (its version is within the
//!   recent tokens, or not reached yet): the script *fences* the write (its token in the
//!   record's fences, which both guards refuse), so that the request can never land later from a dead
//!   connection's buffers, and the write is sent once more with a fresh token; its answer,
//!   written or refused, is the truth. Error replies to the resolve (`LOADING` after a
//!   restart, `MASTERDOWN` ...) are asked again until the deadline. The outcome is
//!   [`session_core::Error::OutcomeUnknown`] (maybe applied, not safe to retry blindly) when
//!   the server cannot be asked within connect + command timeout, or when more writes landed
//!   on top of the write's place than the record keeps tokens of (8). A write refused before
//!   it was sent (no connection could be had) is sent once more; twice refused, it is
//!   `Unavailable`, and nothing was written. Either way the write returns within its bound
//!   (see "Time bounds").
//!   The first write on a connection that died silently (the server closed it while the
//!   instance was idle) cannot prove it was never sent: with the server back it is resolved
//!   like any lost reply; with the server still down it is `OutcomeUnknown`.
//!   Only writes conditioned on a token (what `SessionManager` sends) are fenced for good: the
//!   fence lives in the record until the next write, which changes the token they need (the
//!   record keeps two fences: a third lost write on the same record, resolved before the next
//!   write, pushes out the oldest). A create
//!   (`RENAMENX`) or an unconditional write (`Any`) declared lost may still land late from a
//!   dead connection, so when its resend fails too the answer is `OutcomeUnknown`, not
//!   `Unavailable`; and an unconditional write found lost whose resend lands may be applied a
//!   second time later (the same state again, one more version).
//! - **Upgrades**: the hash records of the earlier versions are read and written (a write
//!   turns one into a string record), but an instance of an earlier version must not run
//!   beside this one: it reads and writes hashes only, so it would report this version's
//!   string records as corrupt and refuse to write them (nothing is lost, but its sessions
//!   stop working), and a writer of the first layout (before write tokens) updates `d m v` in
//!   place, so that this version could take a stale token for current. Stop old instances
//!   before new ones write (or deploy with a key prefix of its own).
//! - A key of another type under a session key, a string without the record header, or a
//!   hash with a missing or non-numeric `v`,
//!   is [`session_core::Error::Corrupt`] for that id: writes refuse to overwrite it (it may be
//!   someone else's data), `delete` removes it.
//!
//! # Cluster and Sentinel
//!
//! **Cluster.** A session's write stays in one slot: its staged record is named
//! `{<session key>}~w...`, in the session key's slot, so the write pipeline and its scripts
//! go to the one primary that serves the session. redis-rs follows `MOVED`/`ASK`, retries
//! `TRYAGAIN`, and refreshes its slot map after a failover, within each request's time bound;
//! a cluster connection that let a request time out is replaced. Listings and counts visit
//! every primary (`SCAN` routed to each by its address, from `CLUSTER SHARDS`, in the order
//! of the slots it serves); a cursor (`k1:...`) names the topology it walks and the primary it
//! is on. A changed topology (a failover, moved slots), or a slot still migrating when the
//! walk ends, starts the walk over: a listing may show a session twice, never skip one. A
//! cluster has database 0 only. Measured on 3 primaries + 3 replicas (tests/cluster*.rs,
//! Redis 7.0 and Valkey 9.1): `kill -9` of a primary is served again 2-3.5 s later
//! (node timeout 1 s); 10,000 sessions list in under 2 s.
//!
//! **Sentinel.** On every (re)connect the store asks the sentinels for the master and checks it
//! with `ROLE`; a connection that answers `READONLY` or drops is replaced, and the replacement
//! asks again. Between a promotion and the demotion of the old master, connections still on
//! the old one keep writing there, and those writes vanish when it becomes a replica (a manual
//! failover under load lost about 1,300 of 6,600 acknowledged writes in tests/sentinel.rs).
//!
//! **What a failover can lose.** Replication is asynchronous: without
//! [`RedisOptions::with_replicated_ack`], writes acknowledged by a primary just before it
//! dies or is demoted may be gone after the failover. With it, every write waits for `WAIT`
//! and is acknowledged only once a replica has it; a write no replica confirms in time is
//! `OutcomeUnknown`. In the tests above, no acknowledged write was lost with it, in Cluster or
//! Sentinel, through `kill -9` or `SENTINEL FAILOVER`.
//!
//! # Features
//!
//! - `driver` (default): the store itself, `RedisStore`, on redis-rs. Without it the crate
//!   holds only the pure types that describe a Redis server and how to use it: [`RedisTarget`]
//!   (the one `redis://` / `rediss://` URL parser of the project), [`Secret`], [`KeyPrefix`],
//!   [`ConnectionMode`], [`TlsFiles`] with [`ClientIdentity`], and [`RedisOptions`]; its only
//!   dependencies are then session-core, `url` and `percent-encoding`. session-config depends
//!   on it that way, so that a memory-only build compiles no Redis client.
//! - `pool` (implies `driver`): [`ConnectionMode::Pool`] through deadpool-redis. deadpool-redis 0.23 recycles a
//!   connection with `UNWATCH` + `PING` (one extra round trip per checkout) and offers no
//!   cheaper method; this crate plugs its own recycle into the pool: none for connections used
//!   within the last 30 s (nothing to reset: no `WATCH`/`MULTI`/`SELECT` is ever sent), a
//!   `PING` for longer-idle ones, and connections to replace (see "Connections") are dropped
//!   from the pool.
//! - `tls` (implies `driver`): `rediss://` through rustls with the **ring** provider only, trusting
//!   [`TlsFiles::ca_file`] (or the system store) and presenting an optional client
//!   certificate.
//!
//! - `cluster` (implies `driver`): Redis Cluster and Valkey in cluster mode
//!   ([`RedisOptions::cluster`], [`RedisOptions::from_cluster_urls`]), on redis-rs' async
//!   cluster connection (see "Cluster and Sentinel").
//! - `sentinel` (implies `driver`): the master found through Redis Sentinel
//!   ([`RedisOptions::with_sentinels`]).
//!
//! Without `pool`, `tls`, `cluster` or `sentinel`, asking for what it provides fails at connect with
//! [`session_core::Error::Config`] (the option types themselves are always there, so that
//! configuration code needs no `cfg`).
//!
//! # Logging
//!
//! `tracing` events at debug level with `component = "session"`, `backend = "redis"`; a
//! warning for corrupt entries met while listing. No credentials.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

// The pure types: no driver, no I/O.
mod options;
mod prefix;
mod secret;
mod target;

// The store (feature `driver`).
#[cfg(feature = "cluster")]
mod cluster;
#[cfg(feature = "driver")]
mod connection;
#[cfg(feature = "driver")]
mod cursor;
#[cfg(feature = "driver")]
mod errors;
#[cfg(feature = "driver")]
mod info;
#[cfg(feature = "driver")]
mod layout;
#[cfg(feature = "driver")]
mod multiplexed;
#[cfg(feature = "pool")]
mod pool;
#[cfg(feature = "driver")]
mod record;
#[cfg(feature = "driver")]
mod scripts;
#[cfg(feature = "driver")]
mod store;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "driver")]
mod transport;
#[cfg(feature = "driver")]
mod write;

// The fuzz targets' entry points (fuzz/ at the workspace root): not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;

#[cfg(feature = "driver")]
pub use info::ServerInfo;
pub use options::{
    ClientIdentity, ConnectionMode, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEY_PREFIX, MAX_TIMEOUT, RedisOptions, ReplicatedAck, SentinelConfig, TlsFiles,
};
#[cfg(feature = "pool")]
pub use pool::VERIFY_AFTER_IDLE;
pub use prefix::{InvalidPrefix, KeyPrefix, MAX_PREFIX_LEN};
#[cfg(feature = "driver")]
pub use record::RecordParts;
/// The redis-rs crate this one is built on (feature `driver`): the version of
/// [`RedisOptions::client`]'s [`Client`](redis::Client), for raw commands next to the store.
#[cfg(feature = "driver")]
pub use redis;
pub use secret::Secret;
#[cfg(feature = "driver")]
pub use store::{MAX_CURSOR_BYTES, MAX_PAGE, RedisStore};
pub use target::{DEFAULT_HOST, DEFAULT_PORT, RedisTarget};
