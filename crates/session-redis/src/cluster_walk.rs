//! Listing and counting a cluster (feature `cluster`): every primary in turn, in the order of
//! the lowest slot it serves, `SCAN` routed to it by its address (redis-rs would send a plain
//! `SCAN` to one node only).
//!
//! A cursor names the topology it walks (a fingerprint of which address serves which slots)
//! and the primary it is on by its lowest slot. When the topology changes (a failover, a slot
//! moved), or a slot is migrating when the walk ends, the walk starts over: a listing may then
//! show a session twice, never skip one. (A key that moves from a primary not yet scanned to
//! one already scanned is only missed while its slot migrates; the end-of-walk check sees the
//! migration, or the changed topology once it is done, and walks again.)

use std::collections::HashSet;

use redis::Value;
use session_core::{Cursor, Error, Page, Result, SessionId, SessionInfo};

use super::{MAX_PAGE, MAX_SCANS_PER_PAGE, RedisStore};
use crate::{
    cluster::{Primary, parse_shards},
    cursor::ClusterPosition,
    errors::BACKEND,
    transport::{NodeRequest, Request, Retry},
};

/// How often a count starts over because the topology changed under it before giving up.
const COUNT_RESTARTS: usize = 5;
/// `COUNT` hint of a count's `SCAN` steps.
const COUNT_SCAN_COUNT: usize = 1000;

impl RedisStore {
    /// The primaries that serve slots, in slot order (`CLUSTER SHARDS`).
    pub(super) async fn primaries(&self) -> Result<Vec<Primary>> {
        let cmd = redis::cmd("CLUSTER").arg("SHARDS").to_owned();
        let reply = self
            .send(Request::Cmd(&cmd), Retry::Idempotent, "CLUSTER SHARDS")
            .await?;
        let primaries = parse_shards(&reply).map_err(|reason| Error::Backend {
            backend: BACKEND,
            reason: format!("reading the cluster's topology: {reason}"),
            source: None,
        })?;
        if primaries.is_empty() {
            return Err(Error::Unavailable {
                backend: BACKEND,
                reason: "the cluster has no primary that serves slots".to_owned(),
                source: None,
            });
        }
        Ok(primaries)
    }

    /// Whether any primary has a slot migrating or importing (`CLUSTER NODES`: its own line
    /// holds `[slot->-node]` or `[slot-<-node]`).
    async fn migrating(&self, primaries: &[Primary]) -> Result<bool> {
        let cmd = redis::cmd("CLUSTER").arg("NODES").to_owned();
        for primary in primaries {
            let reply = self
                .send(
                    Request::OnNode(&primary.node, NodeRequest::Cmd(&cmd)),
                    Retry::Idempotent,
                    "CLUSTER NODES",
                )
                .await?;
            let text = match reply {
                Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                Value::VerbatimString { text, .. } => text,
                Value::SimpleString(s) => s,
                _ => String::new(),
            };
            if text
                .lines()
                .any(|line| line.contains("myself") && line.contains('['))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One page of a cluster's listing (see the module docs).
    pub(super) async fn cluster_list_page(
        &self,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page> {
        let limit = limit.clamp(1, MAX_PAGE);
        let primaries = self.primaries().await?;
        let fingerprint = fingerprint(&primaries);
        let first_slot = |primaries: &[Primary], i: usize| {
            primaries
                .get(i)
                .map_or(ClusterPosition::DONE, Primary::first_slot)
        };
        let mut position = match cursor {
            Some(c) => ClusterPosition::parse(c)?,
            None => ClusterPosition::start(fingerprint, first_slot(&primaries, 0)),
        };
        let mut index = if position.fingerprint != fingerprint {
            None
        } else if position.slot == ClusterPosition::DONE {
            Some(primaries.len())
        } else {
            primaries
                .iter()
                .position(|p| p.first_slot() == position.slot)
        };
        if index.is_none() {
            // The topology changed since the last page: walk again (the carried ids are
            // still shown; they may come again).
            tracing::debug!(
                component = "session",
                backend = BACKEND,
                "the cluster's topology changed during a listing: walking every primary again"
            );
            position.fingerprint = fingerprint;
            position.slot = first_slot(&primaries, 0);
            position.scan = 0;
            index = Some(0);
        }
        let mut index = index.unwrap_or(0);
        let mut seen: HashSet<SessionId> = position.pending.iter().cloned().collect();
        let mut scans = 0;
        while position.pending.len() < limit && scans < MAX_SCANS_PER_PAGE {
            let Some(primary) = primaries.get(index) else {
                break;
            };
            let step = self
                .capped_scan_step(
                    Some(&primary.node),
                    position.scan,
                    position.pending.len(),
                    limit,
                    &seen,
                    &mut scans,
                )
                .await?;
            let Some((next, fresh)) = step else { break };
            match next {
                Some(n) => position.scan = n,
                None => {
                    index += 1;
                    position.scan = 0;
                    position.slot = first_slot(&primaries, index);
                }
            }
            for id in fresh {
                seen.insert(id.clone());
                position.pending.push(id);
            }
        }
        if position.slot == ClusterPosition::DONE {
            // The end of the walk counts only if the topology held and nothing migrates.
            let now = self.primaries().await?;
            if self::fingerprint(&now) != fingerprint || self.migrating(&now).await? {
                tracing::debug!(
                    component = "session",
                    backend = BACKEND,
                    "the cluster's topology changed or a slot is migrating: walking again"
                );
                position.fingerprint = self::fingerprint(&now);
                position.slot = first_slot(&now, 0);
                position.scan = 0;
            }
        }
        let take = position.pending.len().min(limit);
        let ids: Vec<SessionId> = position.pending.drain(..take).collect();
        let sessions = self.infos(ids).await?;
        Ok(Page::new(sessions, position.to_cursor()))
    }

    /// The listing entries of `ids`, each read with its own `PTTL` + `GETRANGE` (routed by its
    /// slot), all at once over the cluster connection, in the order of `ids`.
    async fn infos(&self, ids: Vec<SessionId>) -> Result<Vec<SessionInfo>> {
        let mut tasks = tokio::task::JoinSet::new();
        for (n, id) in ids.into_iter().enumerate() {
            let store = self.clone();
            tasks.spawn(async move { (n, store.info(id).await) });
        }
        let mut found = Vec::with_capacity(tasks.len());
        while let Some(joined) = tasks.join_next().await {
            let (n, result) = joined.map_err(|e| Error::Backend {
                backend: BACKEND,
                reason: format!("listing: a read task failed: {e}"),
                source: None,
            })?;
            if let Some(info) = result? {
                found.push((n, info));
            }
        }
        found.sort_by_key(|(n, _)| *n);
        Ok(found.into_iter().map(|(_, info)| info).collect())
    }

    async fn info(&self, id: SessionId) -> Result<Option<SessionInfo>> {
        let key = self.key_of(&id);
        // Two commands, each routed by its slot (a pipeline's keys must share one); redis-rs
        // follows `MOVED` and `ASK` for them.
        let mut pttl = redis::cmd("PTTL");
        pttl.arg(&key);
        let mut getrange = redis::cmd("GETRANGE");
        getrange.arg(&key).arg(0).arg(crate::record::LIST_READ - 1);
        let pttl = self.reply(&pttl).await?;
        let first = self.reply(&getrange).await?;
        self.listed(id, pttl, first).await
    }

    /// One listing command's reply. A key of another type (`WRONGTYPE`) is the entry's
    /// problem, listed as corrupt as on one server; any other failure is the listing's.
    async fn reply(&self, cmd: &redis::Cmd) -> Result<Value> {
        match self
            .send(Request::Cmd(cmd), Retry::Idempotent, "list")
            .await
        {
            Err(Error::Backend { reason, .. }) if reason.contains("WRONGTYPE") => {
                redis::parse_redis_value(
                    b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                )
                .map_err(|e| Error::backend(BACKEND, "listing", e))
            }
            other => other,
        }
    }

    /// Counts the sessions of every primary (a full `SCAN` of each, keys counted once), again
    /// from the start when the topology changed meanwhile or a slot migrates at the end.
    pub(super) async fn cluster_count(&self) -> Result<u64> {
        let hasher = std::hash::RandomState::new();
        for _ in 0..COUNT_RESTARTS {
            let primaries = self.primaries().await?;
            let mut seen: HashSet<u64> = HashSet::new();
            for primary in &primaries {
                let mut from = 0;
                loop {
                    let (next, keys) = self
                        .scan_on(Some(&primary.node), from, COUNT_SCAN_COUNT)
                        .await?;
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
                    for key in self
                        .own_keys(nested_candidates, Some(&primary.node))
                        .await?
                    {
                        seen.insert(std::hash::BuildHasher::hash_one(&hasher, &key));
                    }
                    match next {
                        Some(n) => from = n,
                        None => break,
                    }
                }
            }
            let now = self.primaries().await?;
            if fingerprint(&now) == fingerprint(&primaries) && !self.migrating(&now).await? {
                return Ok(seen.len() as u64);
            }
        }
        Err(Error::Unavailable {
            backend: BACKEND,
            reason: format!(
                "counting: the cluster's topology changed during {COUNT_RESTARTS} counts in a row"
            ),
            source: None,
        })
    }
}

/// A fingerprint of the topology: which address serves which slot ranges (FNV-1a, 64 bits).
pub(crate) fn fingerprint(primaries: &[Primary]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for primary in primaries {
        eat(primary.node.to_string().as_bytes());
        for (lo, hi) in &primary.slots {
            eat(format!(";{lo}-{hi}").as_bytes());
        }
        eat(b"|");
    }
    hash
}
