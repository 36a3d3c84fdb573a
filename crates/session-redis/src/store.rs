//! [`RedisStore`]: the `SessionStore` on Redis.

use std::{collections::HashSet, fmt, sync::Arc, time::Instant};

use redis::Value;
use session_core::{
    Cursor, Error, Page, Record, Result, SessionId, SessionInfo, SessionStore, Ttl, Write,
    WriteOutcome, async_trait,
};

use crate::{
    connection::Connection,
    cursor::ListPosition,
    errors::{self, BACKEND},
    layout::{self, Listed, Owner},
    options::{ConnectionMode, RedisOptions},
    record,
    scripts::Scripts,
    transport::{Node, NodeRequest, Request, Retry},
    write::WritePath,
};

#[cfg(feature = "cluster")]
#[path = "cluster_walk.rs"]
mod cluster_walk;

/// Largest page a listing returns, whatever the caller asks for: bounds one pipeline.
pub const MAX_PAGE: usize = 10_000;
/// Least `COUNT` hint given to `SCAN`, so that tiny pages do not crawl a large keyspace.
const MIN_SCAN_COUNT: usize = 32;
/// `COUNT` hint for the SCAN loop of [`SessionStore::count`].
const COUNT_SCAN_COUNT: usize = 1000;
/// How many `SCAN` calls one page may make to fill itself (a keyspace full of other keys finds
/// few sessions per call). The page then comes back short, or empty, with a cursor, which the
/// trait allows.
const MAX_SCANS_PER_PAGE: usize = 8;
/// Largest `COUNT` hint of a listing's `SCAN`: a page larger than this is filled by several
/// steps, so that the ids one step returns beyond the page stay few.
const MAX_SCAN_COUNT: usize = 1000;
/// Most bytes of ids a listing cursor carries to the next page (the ids one `SCAN` step
/// returned beyond the page). A step that would leave more is not taken: the page ends before
/// it, or, when it is the page's first, it is taken again with a smaller `COUNT`. A cursor
/// therefore stays well below what a URL or header allows behind a proxy (about
/// [`MAX_CURSOR_BYTES`] in all), whatever the page size.
const MAX_CARRIED_BYTES: usize = 2048;
/// The longest cursor text a listing produces but for one bucket of a hash table holding more
/// than 2 KiB of ids (a `SCAN` step cannot return less than a bucket).
pub const MAX_CURSOR_BYTES: usize = MAX_CARRIED_BYTES + 32 + session_core::MAX_ID_LEN;

/// Sessions in Redis: one HASH per session under `{prefix}{id}` with the TTL on the key.
///
/// Cheap to clone (an `Arc`); every clone shares the connection(s). See the
/// [crate docs](crate) for the layout, the command counts and the failure behaviour.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connection,
    prefix: String,
    pattern: String,
    mode: ConnectionMode,
    scripts: Scripts,
    read_limit: Option<usize>,
    ack: Option<crate::options::ReplicatedAck>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.conn.url())
            .field("key_prefix", &self.inner.prefix)
            .field("mode", &self.inner.mode)
            .finish()
    }
}

impl RedisStore {
    /// Connects, authenticates, selects the database and pings, all within the connect
    /// timeout, then loads the write scripts: returns within connect timeout + command
    /// timeout.
    ///
    /// # Errors
    /// - [`Error::Unavailable`]: nothing answers, or not in time (the message names the
    ///   redacted URL, never the password);
    /// - [`Error::Auth`]: the server refused the credentials (WRONGPASS, NOAUTH, NOPERM);
    /// - [`Error::Config`]: invalid options, unreadable TLS files, or a mode or TLS asked for
    ///   without the crate feature that provides it;
    /// - [`Error::Backend`]: anything else the server said (e.g. `SELECT` refused).
    pub async fn connect(options: RedisOptions) -> Result<Self> {
        options.validate()?;
        let deadline = Instant::now() + options.connect_timeout() + options.command_timeout();
        let conn = Connection::connect(&options, deadline).await?;
        tracing::debug!(
            component = "session",
            backend = BACKEND,
            url = %conn.url(),
            mode = ?options.mode(),
            "connected to redis"
        );
        let scripts = Scripts::new();
        // Loaded now, so that the first write of each kind takes one round trip. After a
        // server restart the write path loads whichever one the server answers NOSCRIPT for.
        // A user without the right to load scripts (a read-only ACL user, for listings) still
        // connects; its writes are refused with `Auth` when they are tried.
        match scripts.load(&conn, deadline).await {
            Ok(()) => {}
            Err(e @ Error::Auth { .. }) => tracing::debug!(
                component = "session",
                backend = BACKEND,
                error = %e,
                "cannot load the write scripts: writes will be refused"
            ),
            Err(e) => return Err(e),
        }
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                pattern: layout::match_pattern(options.key_prefix()),
                prefix: options.key_prefix().to_owned(),
                mode: options.mode(),
                scripts,
                read_limit: options.read_limit(),
                ack: options.replicated_ack(),
            }),
        })
    }

    /// The key prefix: a session `id` lives under `{prefix}{id}`.
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The server URL with the password masked.
    pub fn redacted_url(&self) -> &str {
        self.inner.conn.url()
    }

    /// The Redis key of a session (for tools and tests: `redis-cli TTL <key>`).
    pub fn key_of(&self, id: &SessionId) -> String {
        layout::key(&self.inner.prefix, id)
    }

    async fn send(&self, request: Request<'_>, retry: Retry, what: &str) -> Result<Value> {
        self.inner.conn.send(request, retry, what).await
    }

    /// The id in a key SCAN returned, if it is one of ours.
    fn id_of_key(&self, key: &[u8]) -> Option<SessionId> {
        let suffix = key.strip_prefix(self.inner.prefix.as_bytes())?;
        let suffix = std::str::from_utf8(suffix).ok()?;
        match SessionId::new(suffix) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::debug!(
                    component = "session",
                    backend = BACKEND,
                    error = %e,
                    "skipping a key under the session prefix that is not a session id"
                );
                None
            }
        }
    }

    /// `load` with a read limit: the bounded-load script (one round trip).
    async fn bounded_load(&self, id: &SessionId, limit: usize) -> Result<Option<Record>> {
        let key = self.key_of(id);
        let mut invocation = self.inner.scripts.bounded_load.prepare_invoke();
        invocation.key(&key).arg(limit as u64);
        let reply = self
            .send(Request::Script(&invocation), Retry::Idempotent, "load")
            .await?;
        let unexpected = || Error::Backend {
            backend: BACKEND,
            reason: format!("loading session {id}: unexpected script reply"),
            source: None,
        };
        let Value::Array(items) = reply else {
            return Err(unexpected());
        };
        let mut items = items.into_iter();
        match (items.next(), items.next(), items.next()) {
            (Some(Value::BulkString(tag)), Some(Value::Int(size)), None) if tag == b"too_large" => {
                Err(Error::TooLarge {
                    id: id.clone(),
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    limit,
                })
            }
            (Some(Value::BulkString(tag)), Some(data), Some(pttl)) if tag == b"record" => {
                layout::record_from_replies(id, data, pttl, Some(layout::prefix_of(&key, id)))
            }
            _ => Err(unexpected()),
        }
    }

    /// The listing entry of `id` from its first look's replies (`PTTL key`, `GETRANGE key 0
    /// LIST_READ-1`), if it is to be shown: a hash of the earlier layouts, or a record whose
    /// meta is longer than the first look read, is looked at again
    /// ([`second_look`](Self::second_look)); a corrupt entry is logged and shown, so that it
    /// can be found and deleted.
    pub(crate) async fn listed(
        &self,
        id: SessionId,
        pttl: Value,
        first: Value,
    ) -> Result<Option<SessionInfo>> {
        let mut listed = layout::info_from_replies(id.clone(), pttl, first, &self.inner.prefix);
        // A record whose meta grows between the looks is read again, a few times at most.
        for _ in 0..3 {
            let Listed::Again(len) = listed else { break };
            listed = self.second_look(id.clone(), len).await?;
        }
        Ok(match listed {
            Listed::Entry(info) => Some(info),
            Listed::Gone => None,
            Listed::Again(_) => {
                tracing::warn!(
                    component = "session",
                    backend = BACKEND,
                    session_id = %id,
                    "listing a session whose record kept changing under the listing: skipped"
                );
                None
            }
            Listed::Corrupt(info, error) => {
                tracing::warn!(
                    component = "session",
                    backend = BACKEND,
                    session_id = %info.id,
                    event_type = session_core::observe::event::SESSION_CORRUPT,
                    error = %error,
                    "listing a session whose metadata cannot be read"
                );
                Some(info)
            }
        })
    }

    /// Sends a listing's pipeline and returns its replies. A server that is loading, say,
    /// answers every command with an error: an outage, not a page of corrupt entries.
    async fn listing_pipeline(&self, pipe: &redis::Pipeline) -> Result<Vec<Value>> {
        let reply = self
            .send(Request::Pipe(pipe), Retry::Idempotent, "list")
            .await?;
        let Value::Array(replies) = reply else {
            return Err(Error::Backend {
                backend: BACKEND,
                reason: "listing: unexpected pipeline reply".to_owned(),
                source: None,
            });
        };
        if let Some(e) = errors::server_failure_in(&replies, "listing", self.inner.conn.url()) {
            return Err(e);
        }
        Ok(replies)
    }

    /// A listed key looked at again (see `layout::Listed::Again`): `PTTL`, `GETRANGE key 0
    /// len-1` and `HMGET key m v c`, of which one fits the key's type. Rare: one more round
    /// trip for such a key only (and for each hash until its next write makes it a string).
    pub(crate) async fn second_look(&self, id: SessionId, len: usize) -> Result<Listed> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        layout::push_second_look(&mut pipe, &self.key_of(&id), len);
        let mut replies = self.listing_pipeline(&pipe).await?.into_iter();
        let (Some(pttl), Some(getrange), Some(hmget)) =
            (replies.next(), replies.next(), replies.next())
        else {
            return Err(Error::Backend {
                backend: BACKEND,
                reason: "listing: unexpected pipeline reply".to_owned(),
                source: None,
            });
        };
        Ok(layout::info_after_second_look(
            id,
            pttl,
            getrange,
            hmget,
            &self.inner.prefix,
        ))
    }

    /// Of `keys`, those whose record is this store's: not one of a store with a longer prefix
    /// that starts with this one (see `layout::Owner`). Gone keys are dropped, unreadable
    /// ones kept (listings show them as corrupt).
    async fn own_keys(&self, keys: Vec<Vec<u8>>, node: Option<&Node>) -> Result<Vec<Vec<u8>>> {
        if keys.is_empty() {
            return Ok(keys);
        }
        let mut own = Vec::with_capacity(keys.len());
        // Keys whose meta runs past the first read: read again, as far as it goes.
        let mut longer: Vec<(Vec<u8>, usize)> = Vec::new();
        let mut pending: Vec<(Vec<u8>, usize)> = keys
            .into_iter()
            .map(|key| (key, record::LIST_READ))
            .collect();
        for round in 0..2 {
            if pending.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (key, len) in &pending {
                pipe.cmd("GETRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(len.saturating_sub(1));
                pipe.cmd("HGET").arg(key).arg(layout::FIELD_META);
            }
            // In a cluster the keys of one SCAN step sit in many slots of one node: the
            // pipeline goes to that node by its address.
            let request = match node {
                Some(node) => Request::OnNode(node, NodeRequest::Pipe(&pipe)),
                None => Request::Pipe(&pipe),
            };
            let reply = self.send(request, Retry::Idempotent, "count").await?;
            let Value::Array(replies) = reply else {
                return Err(Error::Backend {
                    backend: BACKEND,
                    reason: "count: unexpected pipeline reply".to_owned(),
                    source: None,
                });
            };
            let mut replies = replies.into_iter();
            for (key, _) in pending.drain(..) {
                let (Some(first), Some(hget)) = (replies.next(), replies.next()) else {
                    break;
                };
                let ours = |m: &[u8]| layout::owner_of_meta(m, &self.inner.prefix) == Owner::Ours;
                let keep = match (&first, &hget) {
                    (Value::BulkString(b), _) if !b.is_empty() => match record::meta_span(b) {
                        Some(span) if span.end <= b.len() => ours(&b[span]),
                        Some(span) if round == 0 => {
                            longer.push((key, span.end));
                            continue;
                        }
                        // Unreadable: counted, as listings show it (as corrupt).
                        _ => true,
                    },
                    // A hash of the earlier layouts.
                    (_, Value::BulkString(m)) => ours(m),
                    // Gone (an empty GETRANGE, no field m): not counted.
                    (Value::BulkString(_), Value::Nil) => false,
                    (_, Value::Nil) if layout::is_wrong_type(&first) => false,
                    _ => true,
                };
                if keep {
                    own.push(key);
                }
            }
            pending.append(&mut longer);
        }
        Ok(own)
    }

    /// One `SCAN` step of a listing page, on `node` (a cluster's primary) or the one server,
    /// from `from`, for a page of `limit` that holds `pending` ids already: the next SCAN
    /// cursor and the ids found that `seen` lacks. A step that would leave more than
    /// [`MAX_CARRIED_BYTES`] of ids past the page for the cursor to carry is not taken:
    /// `None` when the page already holds ids (it ends before this step), else the step is
    /// taken again with a smaller `COUNT` (down to one bucket, which is carried whatever its
    /// size: the only way not to skip). Counts every `SCAN` sent in `scans`.
    async fn capped_scan_step(
        &self,
        node: Option<&Node>,
        from: u64,
        pending: usize,
        limit: usize,
        seen: &HashSet<SessionId>,
        scans: &mut usize,
    ) -> Result<Option<(Option<u64>, Vec<SessionId>)>> {
        let mut count = limit
            .saturating_sub(pending)
            .clamp(MIN_SCAN_COUNT, MAX_SCAN_COUNT);
        loop {
            let (next, keys) = self.scan_on(node, from, count).await?;
            *scans += 1;
            let fresh: Vec<SessionId> = keys
                .iter()
                .filter_map(|key| self.id_of_key(key))
                .filter(|id| !seen.contains(id))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            // What this step would leave for the cursor to carry: the ids past the page.
            let past = (pending + fresh.len()).saturating_sub(limit);
            let carried: usize = fresh[fresh.len() - past.min(fresh.len())..]
                .iter()
                .map(|id| id.as_str().len() + 1)
                .sum();
            if carried > MAX_CARRIED_BYTES {
                if pending > 0 {
                    return Ok(None);
                }
                if count > 1 {
                    count = (count / 4).max(1);
                    continue;
                }
            }
            return Ok(Some((next, fresh)));
        }
    }

    /// One `SCAN` step: the next cursor (`None` when finished) and the keys found.
    async fn scan(&self, from: u64, count: usize) -> Result<(Option<u64>, Vec<Vec<u8>>)> {
        self.scan_on(None, from, count).await
    }

    /// One `SCAN` step on `node` (a cluster's primary), or on the one server.
    async fn scan_on(
        &self,
        node: Option<&Node>,
        from: u64,
        count: usize,
    ) -> Result<(Option<u64>, Vec<Vec<u8>>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(from)
            .arg("MATCH")
            .arg(&self.inner.pattern)
            .arg("COUNT")
            .arg(count);
        let request = match node {
            Some(node) => Request::OnNode(node, NodeRequest::Cmd(&cmd)),
            None => Request::Cmd(&cmd),
        };
        let reply = self.send(request, Retry::Idempotent, "SCAN").await?;
        let bad = || Error::Backend {
            backend: BACKEND,
            reason: "SCAN gave an unexpected reply".to_owned(),
            source: None,
        };
        let Value::Array(mut parts) = reply else {
            return Err(bad());
        };
        if parts.len() != 2 {
            return Err(bad());
        }
        let keys = match parts.pop() {
            Some(Value::Array(keys)) => keys,
            _ => return Err(bad()),
        };
        let next = match parts.pop() {
            Some(Value::BulkString(b)) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        let keys = keys
            .into_iter()
            .filter_map(|k| match k {
                Value::BulkString(b) => Some(b),
                Value::SimpleString(s) => Some(s.into_bytes()),
                _ => None,
            })
            .collect();
        Ok(((next != 0).then_some(next), keys))
    }

    fn debug(&self, op: &'static str, id: &SessionId) {
        tracing::debug!(component = "session", backend = BACKEND, session_id = %id, op, "redis operation");
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    /// One round trip: a pipeline of `GET key` and `PTTL key` (two for a hash of the earlier
    /// layouts).
    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.debug("load", id);
        let conn = &self.inner.conn;
        match self.inner.read_limit {
            Some(limit) => self.bounded_load(id, limit).await,
            None => read_record(conn, id, &self.key_of(id), conn.deadline()).await,
        }
    }

    /// One round trip: the staging `HSET` + `PEXPIRE`, then the guard that checks the
    /// condition and moves the staged record into place (see the crate docs). A lost reply is
    /// resolved before this returns: the outcome is the one the reply would have carried, or
    /// [`Error::OutcomeUnknown`] when the server cannot be asked in time.
    async fn write(&self, id: &SessionId, write: Write) -> Result<WriteOutcome> {
        self.debug("save", id);
        let key = self.key_of(id);
        let path = WritePath {
            conn: &self.inner.conn,
            scripts: &self.inner.scripts,
            ack: self.inner.ack,
        };
        path.write(id, &key, &write).await
    }

    /// One round trip: the delete script (`UNLINK key`, and a marker of this call when the
    /// session existed). A reply lost on a dropped connection is sent once more on a new one;
    /// the marker lets that second send say truthfully whether the session existed.
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.debug("delete", id);
        let key = self.key_of(id);
        let marker = crate::write::marker_key(&key, fastrand::u64(..));
        // The marker only has to outlive this call (its resend comes within its bound).
        let marker_ms = self
            .inner
            .conn
            .timeouts()
            .round_trip()
            .saturating_mul(2)
            .as_millis()
            .max(1000);
        let mut invocation = self.inner.scripts.delete.prepare_invoke();
        invocation.key(&key).key(&marker).arg(marker_ms as u64);
        let reply = self
            .send(Request::Script(&invocation), Retry::Idempotent, "delete")
            .await?;
        Ok(matches!(reply, Value::Int(n) if n > 0))
    }

    /// One round trip: `PEXPIRE key ms` (never creates a key).
    async fn touch(&self, id: &SessionId, ttl: Ttl) -> Result<bool> {
        self.debug("touch", id);
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(self.key_of(id)).arg(ttl.as_millis());
        let reply = self
            .send(Request::Cmd(&cmd), Retry::Idempotent, "touch")
            .await?;
        Ok(matches!(reply, Value::Int(1)))
    }

    /// One round trip: `EXISTS key`.
    async fn exists(&self, id: &SessionId) -> Result<bool> {
        self.debug("exists", id);
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.key_of(id));
        let reply = self
            .send(Request::Cmd(&cmd), Retry::Idempotent, "exists")
            .await?;
        Ok(matches!(reply, Value::Int(n) if n > 0))
    }

    /// Usually two round trips: one `SCAN` (skipped while the cursor still carries ids) and one
    /// pipeline of `PTTL key` + `GETRANGE key 0 1023` per listed session (a second one for
    /// hashes of the earlier layouts and for records with a longer meta). Entries whose listing data
    /// cannot be read (another Redis type under the key, unreadable `m` or `v`) are listed with
    /// version 0, an empty summary and zero timestamps, and a warning is logged: they stay
    /// visible, so that they can be found and deleted.
    async fn list_page(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        #[cfg(feature = "cluster")]
        if self.inner.conn.is_cluster() {
            return self.cluster_list_page(cursor, limit).await;
        }
        let limit = limit.clamp(1, MAX_PAGE);
        let mut position = match cursor {
            Some(c) => ListPosition::parse(c)?,
            None => ListPosition::start(),
        };
        // Scan on until the page can be filled (ids a previous batch left over count), so that
        // pages are full whenever more sessions follow; bounded, for sparse keyspaces.
        let mut scans = 0;
        let mut seen: HashSet<SessionId> = position.pending.iter().cloned().collect();
        while position.pending.len() < limit && scans < MAX_SCANS_PER_PAGE {
            let Some(from) = position.scan else { break };
            let step = self
                .capped_scan_step(None, from, position.pending.len(), limit, &seen, &mut scans)
                .await?;
            // `None`: the page ends before this step; the next page takes it from `from`.
            let Some((next, fresh)) = step else { break };
            position.scan = next;
            for id in fresh {
                seen.insert(id.clone());
                position.pending.push(id);
            }
        }
        let take = position.pending.len().min(limit);
        let ids: Vec<SessionId> = position.pending.drain(..take).collect();
        let mut sessions = Vec::with_capacity(ids.len());
        if !ids.is_empty() {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for id in &ids {
                layout::push_listing_read(&mut pipe, &self.key_of(id));
            }
            let mut replies = self.listing_pipeline(&pipe).await?.into_iter();
            for id in ids {
                let (Some(pttl), Some(first)) = (replies.next(), replies.next()) else {
                    break;
                };
                if let Some(info) = self.listed(id, pttl, first).await? {
                    sessions.push(info);
                }
            }
        }
        Ok(Page::new(sessions, position.to_cursor()))
    }

    /// Counts the keys under the prefix with a full `SCAN` (`COUNT 1000` per step, so about one
    /// round trip per thousand keys in the database). Never `KEYS`, never `DBSIZE`: other data
    /// may share the database.
    async fn count(&self) -> Result<u64> {
        #[cfg(feature = "cluster")]
        if self.inner.conn.is_cluster() {
            return self.cluster_count().await;
        }
        // SCAN may return a key twice (while the server rehashes), so keys are counted once
        // each: by a 64-bit keyed hash rather than the key itself, 8 bytes per session instead
        // of the key's length plus a String (a collision, about 1 in 10^6 for 10 million
        // sessions, would count one session short).
        let hasher = std::hash::RandomState::new();
        let mut seen: HashSet<u64> = HashSet::new();
        let mut from = 0;
        loop {
            let (next, keys) = self.scan(from, COUNT_SCAN_COUNT).await?;
            // An id with a `:` may be a key of a nested prefix (`app:s:u-1` under `app:`):
            // its meta tells (one pipeline per step, only when there are such ids).
            let mut nested_candidates = Vec::new();
            for key in keys {
                match self.id_of_key(&key) {
                    Some(id) if id.as_str().contains(':') => nested_candidates.push(key),
                    Some(_) => {
                        seen.insert(std::hash::BuildHasher::hash_one(&hasher, &key));
                    }
                    None => {}
                }
            }
            for key in self.own_keys(nested_candidates, None).await? {
                seen.insert(std::hash::BuildHasher::hash_one(&hasher, &key));
            }
            match next {
                Some(n) => from = n,
                None => return Ok(seen.len() as u64),
            }
        }
    }

    /// One round trip: `PING`.
    async fn ping(&self) -> Result<()> {
        let cmd = redis::cmd("PING");
        self.send(Request::Cmd(&cmd), Retry::Idempotent, "PING")
            .await
            .map(drop)
    }
}

/// Reads the record under `key` (session `id`): `GET key` + `PTTL key`, one pipeline, retried
/// once on a dropped connection, by `deadline`. A key that holds a hash (a record of the
/// earlier layouts, `WRONGTYPE` on `GET`) is read again with `HMGET key d m v c t` + `PTTL
/// key`; one that changed type between the two reads is read once more.
pub(crate) async fn read_record(
    conn: &Connection,
    id: &SessionId,
    key: &str,
    deadline: Instant,
) -> Result<Option<Record>> {
    let mut hash = false;
    for _ in 0..3 {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if hash {
            layout::push_hash_read(&mut pipe, key);
        } else {
            layout::push_record_read(&mut pipe, key);
        }
        let reply = conn
            .send_by(&Request::Pipe(&pipe), Retry::Idempotent, "load", deadline)
            .await?;
        if let Value::Array(replies) = &reply
            // (The message is formatted only when there is an error reply: not on the hot
            // path.)
            && replies.iter().any(|r| matches!(r, Value::ServerError(_)))
            && let Some(e) =
                errors::server_failure_in(replies, &format!("loading session {id}"), conn.url())
        {
            return Err(e);
        }
        let (data, pttl) = two(reply).ok_or_else(|| Error::Backend {
            backend: BACKEND,
            reason: format!("loading session {id}: unexpected pipeline reply"),
            source: None,
        })?;
        if layout::is_wrong_type(&data) {
            hash = !hash;
            continue;
        }
        return layout::record_from_replies(id, data, pttl, Some(layout::prefix_of(key, id)));
    }
    Err(Error::corrupt(
        id,
        "the key holds another Redis type, not a session (delete it to reuse the id)",
    ))
}

fn two(reply: Value) -> Option<(Value, Value)> {
    match reply {
        Value::Array(items) if items.len() == 2 => {
            let mut items = items.into_iter();
            Some((items.next()?, items.next()?))
        }
        _ => None,
    }
}
