//! The manager's writes: `get_or_create`, `update`, `save` and the compare-and-set loop of
//! `modify`, with the local copy each one starts from and keeps up to date.
//!
//! Every conditional write is built on a [`Basis`](crate::Basis) (version, creation time and
//! write tokens of the content it read) and sent as `Condition::IfUnchanged`: the store writes
//! only if the session still holds exactly that content. A refused write returns the current
//! record, which becomes the next attempt's basis without another read.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Basis, Condition, Error, Meta, Record, Result, Session, SessionId, Summary, Timestamp, Write,
    WriteOutcome, local_copies::Copy, manager::session_event, observe,
};

use crate::SessionManager;

/// The outcome of [`SessionManager::write`].
enum Written {
    Yes { basis: Basis, meta: Meta },
    No { current: Option<Record> },
}

/// What a `modify` attempt starts from.
enum Start {
    /// Not read yet.
    Unknown,
    /// Known to be absent.
    Absent,
    /// Known content.
    Known(Copy),
}

impl<T> SessionManager<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Loads the session, or creates it from `create` if there is none (the seed's
    /// `get_or_create_agent`). Two instances racing to create the same id end up with one
    /// session: the loser returns the winner's state.
    ///
    /// One round trip either way. A session this instance has seen recently is read; any
    /// other is created directly with a create-if-absent write, which returns the existing
    /// record when there is one. So `create` may run (and its state be encoded) even when the
    /// session exists: keep it free of side effects.
    pub async fn get_or_create(
        &self,
        id: &SessionId,
        create: impl FnOnce() -> T + Send,
    ) -> Result<Session<T>> {
        let start = Instant::now();
        let result = self.get_or_create_inner(id, create).await;
        observe::record("get_or_create", self.backend(), start, &result);
        result
    }

    async fn get_or_create_inner(
        &self,
        id: &SessionId,
        create: impl FnOnce() -> T + Send,
    ) -> Result<Session<T>> {
        if self.inner.copies.knows(id)
            && let Some(session) = self.load(id).await?
        {
            return Ok(session);
        }
        let value = create();
        let payload = self.inner.codec.encode(id, &value)?;
        let summary = self.summary(&value);
        for _ in 0..self.inner.max_attempts {
            let write = self.write_request(payload.clone(), summary.clone(), Condition::IfAbsent);
            match self.write(id, write).await? {
                Written::Yes { basis, meta } => {
                    self.created(id);
                    return Ok(self.session(id, value, basis, meta));
                }
                // It exists (or another instance created it first): that is the session.
                Written::No {
                    current: Some(record),
                } => return self.adopt(id, record),
                // Refused, yet gone by the time the store looked (deleted or expired in
                // between): create once more.
                Written::No { current: None } => {}
            }
        }
        Err(self.gave_up(id, None))
    }

    /// Writes `value` whatever is stored (creating the session if needed) and resets the TTL:
    /// the seed's `update_agent`. Returns the new version. Prefer [`modify`](Self::modify) or
    /// [`save`](Self::save) when another instance may write the same session.
    pub async fn update(&self, id: &SessionId, value: &T) -> Result<u64> {
        self.update_with_ttl(id, value, self.inner.ttl).await
    }

    /// [`update`](Self::update) with a TTL for this write only.
    ///
    /// When this instance wrote or read the session last, the write is conditioned on that
    /// copy (`IfUnchanged`): the same result as an unconditional write when nobody else wrote
    /// in between, and cheaper for a store that must otherwise read the version it replaces
    /// (on Redis, the guard script instead of the update script). If somebody did write in
    /// between, the unconditional write follows.
    pub async fn update_with_ttl(&self, id: &SessionId, value: &T, ttl: crate::Ttl) -> Result<u64> {
        let start = Instant::now();
        let result = async {
            let payload = self.inner.codec.encode(id, value)?;
            if let Some(copy) = self.inner.copies.basis(id) {
                let condition = Condition::IfUnchanged(copy.basis);
                let write = self
                    .write_request(payload.clone(), self.summary(value), condition)
                    .with_ttl(ttl);
                if let Written::Yes { basis, .. } = self.write(id, write).await? {
                    return Ok(basis.version());
                }
            }
            let write = self
                .write_request(payload, self.summary(value), Condition::Any)
                .with_ttl(ttl);
            match self.write(id, write).await? {
                Written::Yes { basis, .. } => Ok(basis.version()),
                // `Any` cannot be refused; a store that does is broken.
                Written::No { .. } => Err(Error::Backend {
                    backend: self.backend(),
                    reason: format!("the store refused an unconditional write of session {id}"),
                    source: None,
                }),
            }
        }
        .await;
        observe::record("update", self.backend(), start, &result);
        result
    }

    /// Writes a loaded session back only if the store still holds exactly the content it was
    /// loaded (or last saved) as; on success the session's version and meta are brought up to
    /// date, so it can be saved again. Otherwise [`Error::Conflict`] and nothing is written:
    /// load again, reapply, save again (or use [`modify`](Self::modify)).
    pub async fn save(&self, session: &mut Session<T>) -> Result<()> {
        let start = Instant::now();
        let result = async {
            let id = session.id.clone();
            let payload = self.inner.codec.encode(&id, &session.value)?;
            let condition = Condition::IfUnchanged(session.basis);
            let write = self.write_request(payload, self.summary(&session.value), condition);
            match self.write(&id, write).await? {
                Written::Yes { basis, meta } => {
                    session.basis = basis;
                    session.meta = meta;
                    session.ttl = Some(self.inner.ttl.as_duration());
                    Ok(())
                }
                Written::No { current } => Err(Error::Conflict {
                    id,
                    expected: Some(session.basis.version()),
                    actual: current.map(|r| r.version),
                }),
            }
        }
        .await;
        observe::record("save", self.backend(), start, &result);
        result
    }

    /// Loads the session, applies `f`, and writes the result if nobody wrote in between;
    /// otherwise applies `f` again to the current state (so `f` may run more than once), up to
    /// the configured number of attempts. Concurrent modifies from any number of instances lose
    /// no update. [`Error::NotFound`] when there is no session.
    ///
    /// When this instance read or wrote the session last, the write starts from its local copy
    /// and takes one round trip; a refused write returns the current state, so a conflict costs
    /// no extra read. A write whose reply was lost is resolved by the store before `modify`
    /// goes on: `f`'s change is applied exactly once, or the call fails with
    /// [`Error::OutcomeUnknown`] when the store cannot tell.
    pub async fn modify<F, R>(&self, id: &SessionId, f: F) -> Result<Session<T>>
    where
        F: FnMut(&mut T) -> R + Send,
        R: Send,
    {
        self.modify_with(id, f).await.map(|(session, _)| session)
    }

    /// [`modify`](Self::modify), also returning what `f` returned on the attempt that won.
    pub async fn modify_with<F, R>(&self, id: &SessionId, f: F) -> Result<(Session<T>, R)>
    where
        F: FnMut(&mut T) -> R + Send,
        R: Send,
    {
        let start = Instant::now();
        let result = self.modify_inner(id, None::<fn() -> T>, f).await;
        observe::record("modify", self.backend(), start, &result);
        result
    }

    /// [`modify_with`](Self::modify_with) that creates the session from `create` first when
    /// there is none (then applies `f` to the new state): "create on first message".
    pub async fn modify_or_create<C, F, R>(
        &self,
        id: &SessionId,
        create: C,
        f: F,
    ) -> Result<(Session<T>, R)>
    where
        C: FnMut() -> T + Send,
        F: FnMut(&mut T) -> R + Send,
        R: Send,
    {
        let start = Instant::now();
        let result = self.modify_inner(id, Some(create), f).await;
        observe::record("modify", self.backend(), start, &result);
        result
    }

    async fn modify_inner<C, F, R>(
        &self,
        id: &SessionId,
        mut create: Option<C>,
        mut f: F,
    ) -> Result<(Session<T>, R)>
    where
        C: FnMut() -> T + Send,
        F: FnMut(&mut T) -> R + Send,
        R: Send,
    {
        let mut start = match self.inner.copies.basis(id) {
            Some(copy) => Start::Known(copy),
            None => Start::Unknown,
        };
        let mut conflicts = 0;
        let mut last_seen = None;
        for _ in 0..self.inner.max_attempts {
            if matches!(start, Start::Unknown) {
                start = match self.inner.store.load(id).await? {
                    Some(record) => {
                        let ttl = record.ttl;
                        let copy = Copy::from(record);
                        self.inner.copies.remember_read(id, copy.clone(), ttl);
                        Start::Known(copy)
                    }
                    None => {
                        self.inner.copies.remove(id);
                        Start::Absent
                    }
                };
            }
            let (mut value, condition) = match std::mem::replace(&mut start, Start::Unknown) {
                Start::Known(copy) => {
                    last_seen = Some(copy.basis.version());
                    let value = self.inner.codec.decode(id, &copy.payload)?;
                    (value, Condition::IfUnchanged(copy.basis))
                }
                Start::Absent | Start::Unknown => match create.as_mut() {
                    Some(create) => (create(), Condition::IfAbsent),
                    None => return Err(Error::NotFound { id: id.clone() }),
                },
            };
            let out = f(&mut value);
            let payload = self.inner.codec.encode(id, &value)?;
            let write = self.write_request(payload, self.summary(&value), condition);
            match self.write(id, write).await? {
                Written::Yes { basis, meta } => {
                    if condition == Condition::IfAbsent {
                        self.created(id);
                    }
                    return Ok((self.session(id, value, basis, meta), out));
                }
                Written::No { current } => {
                    start = match current {
                        Some(record) => Start::Known(Copy::from(record)),
                        None => Start::Absent,
                    };
                    conflicts += 1;
                    self.retry_after_conflict(id, conflicts).await;
                }
            }
        }
        Err(self.gave_up(id, last_seen))
    }

    fn write_request(&self, payload: Bytes, summary: Summary, condition: Condition) -> Write {
        Write::new(payload, condition)
            .with_summary(summary)
            .with_ttl(self.inner.ttl)
    }

    /// Writes, keeps the local copy up to date either way, and logs the save.
    async fn write(&self, id: &SessionId, write: Write) -> Result<Written> {
        let payload = write.payload.clone();
        let summary = write.summary.clone();
        let written_ttl = write.ttl;
        let ttl = written_ttl.as_duration();
        let create = write.condition == Condition::IfAbsent;
        let outcome = match self.inner.store.write(id, write).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // Whatever the store holds now is not known to this instance any more
                // (`OutcomeUnknown`: maybe the new state; a refusal the store could not
                // explain): never write from the old copy without reading first.
                if !e.is_retryable() {
                    self.inner.copies.remove(id);
                }
                return Err(e);
            }
        };
        match outcome {
            WriteOutcome::Written {
                version,
                created_at,
                tokens,
                ..
            } => {
                session_event!(debug, self, id, SESSION_SAVED, version, "session saved");
                let meta = Meta::new(created_at, Timestamp::now(), payload.len() as u64, summary)
                    .with_written_ttl(written_ttl);
                let basis = Basis::new(version, created_at, tokens);
                self.inner
                    .copies
                    .remember_write(id, Copy { payload, basis }, Some(ttl));
                Ok(Written::Yes { basis, meta })
            }
            WriteOutcome::Rejected { current, .. } => {
                match &current {
                    // A create that finds the session is a first sight, like a read: no sign
                    // of another writer at work (`get_or_create` creates whatever it has not
                    // seen).
                    Some(record) if create => {
                        self.inner
                            .copies
                            .remember_read(id, Copy::from(record.clone()), record.ttl)
                    }
                    Some(record) => self.inner.copies.remember_refusal(
                        id,
                        Copy::from(record.clone()),
                        record.ttl,
                    ),
                    None => self.inner.copies.remove(id),
                }
                Ok(Written::No { current })
            }
        }
    }

    /// Counts and logs the `conflicts`-th refused write of a `modify`, then waits before the
    /// next attempt.
    async fn retry_after_conflict(&self, id: &SessionId, conflicts: u32) {
        metrics::counter!(observe::metric::CONFLICT_RETRIES, "backend" => self.backend())
            .increment(1);
        session_event!(
            debug,
            self,
            id,
            CONFLICT_RETRY,
            conflicts,
            "version conflict, retrying"
        );
        backoff(conflicts).await;
    }

    fn created(&self, id: &SessionId) {
        session_event!(info, self, id, AGENT_CREATED, "session created");
    }

    fn session(&self, id: &SessionId, value: T, basis: Basis, meta: Meta) -> Session<T> {
        Session {
            id: id.clone(),
            value,
            basis,
            ttl: Some(self.inner.ttl.as_duration()),
            meta,
        }
    }

    fn gave_up(&self, id: &SessionId, last_seen: Option<u64>) -> Error {
        Error::Conflict {
            id: id.clone(),
            expected: last_seen,
            actual: None,
        }
    }
}

/// Waits after the `conflicts`-th refused write: no wait after the first (a stale local copy is
/// not contention), then a random wait under a cap that doubles up to 20 ms, so that racing
/// writers spread out.
async fn backoff(conflicts: u32) {
    if conflicts <= 1 {
        return;
    }
    let cap_us = (100u64 << (conflicts - 2).min(8)).min(20_000);
    tokio::time::sleep(Duration::from_micros(fastrand::u64(0..=cap_us))).await;
}
