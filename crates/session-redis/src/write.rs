//! The write path: one round trip that stages the new record and moves it into place under
//! its condition, and what happens when the reply to it is lost.
//!
//! # One write, one pipeline
//!
//! The new record (a string, see `record.rs`) is staged with a plain `SET ... PX <ttl>` in a
//! key of the session key's cluster slot (`{<session key>}~w<nonce>`, or
//! `<session key>~w<nonce>` when the key already has a hash tag), and moved into place by the
//! step that checks the condition:
//!
//! | condition | after `SET staged <record> PX ttl` |
//! |---|---|
//! | `IfUnchanged` (basis with a token) | `EVALSHA` guard: `GETRANGE key 0 159` (tokens and fences), compare, `RENAME staged key` |
//! | `IfAbsent` | `GET key` + `PTTL key` (the session before), `RENAMENX staged key`, `UNLINK staged`: no Lua at all |
//! | `Any`, `IfVersion`, `IfUnchanged` without token | `EVALSHA` update: `GETRANGE key 0 199`, check, `RENAME`, `SETRANGE key 0 <header>` |
//!
//! A session still stored as a hash of the earlier layouts is read by the scripts through its
//! fields (their `GETRANGE` meets `WRONGTYPE`), and replaced by the string record.
//!
//! No script ever sees the payload. A script that is not there (`NOSCRIPT`, after a server
//! restart) or a connection that drops between the staging and the guard leaves the session
//! untouched: the staged record is refused, expires, or is removed by the guard.
//!
//! # Lost replies
//!
//! A write whose reply does not arrive (the connection dropped, or the command timed out) is
//! *resolved* before the caller hears anything: the resolve script looks for the write's token
//! among the record's recent tokens and, when it is not there, fences the write so that it can
//! never land later. Its own token there: the write landed, and the caller gets exactly the
//! outcome the lost reply carried. Not there: the write did not land and never will, and it is
//! sent once more with a fresh token (a refusal of that second send is the truth the caller
//! gets). Only when the server cannot be asked within the connect + command timeout is the
//! outcome unknown: [`Error::OutcomeUnknown`]. A write that failed before anything was sent
//! (no connection could be had) is sent once more at once.
//!
//! # Time
//!
//! Each send, and the resolve of a lost reply, is bounded by one round trip's bound (connect
//! timeout + command timeout, see `transport.rs`), and the whole write by three of them
//! ([`Timeouts::write`]): a step the write's deadline cuts short ends like a send without a
//! reply (resolved if there is time left, else `OutcomeUnknown`) or, before anything was sent,
//! like a refused one.

use std::time::{Duration, Instant};

use redis::Value;
use session_core::{
    Basis, Condition, Error, RecentTokens, Record, Result, SessionId, Timestamp, Write,
    WriteOutcome, WriteToken,
};

use crate::{
    connection::Connection,
    errors::{self, BACKEND},
    layout,
    options::ReplicatedAck,
    prefix::has_hash_tag,
    record,
    scripts::{GUARD_LUA, Scripts, UPDATE_LUA},
    transport::{Failure, Request, Retry, Timeouts},
};

/// The first wait between two resolve attempts while the server does not answer; doubled each
/// time, within the resolve deadline.
const RESOLVE_BACKOFF: Duration = Duration::from_millis(20);

/// The write path of one store.
pub(crate) struct WritePath<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) scripts: &'a Scripts,
    /// `WAIT` after every write (`RedisOptions::with_replicated_ack`).
    pub(crate) ack: Option<ReplicatedAck>,
}

impl WritePath<'_> {
    fn timeouts(&self) -> Timeouts {
        self.conn.timeouts()
    }

    /// How long a lost reply may take to resolve: one round trip's bound.
    fn resolve_within(&self) -> Duration {
        self.timeouts().round_trip()
    }
}

/// What one send of a write came to.
enum Sent {
    /// The server answered.
    Answered(WriteOutcome),
    /// Nothing reached the server (the connection was refused): safe to send again.
    Unsent(Error),
    /// The request may have reached the server, but no reply came: resolve it. The staged
    /// key of the send, for the resolve to remove.
    InDoubt { reason: String, staged: String },
}

/// What a resolve found.
enum Resolved {
    Landed(WriteOutcome),
    /// Not applied (and fenced, where the condition lets a fence hold).
    NotLanded,
    /// The server answered, but cannot tell: the write's place in the record's history has
    /// left its recent tokens (more writes landed since than the record keeps).
    Ambiguous(String),
    /// The server could not be asked in time.
    Unreachable(String),
}

/// Where a write would sit in the record's history if it landed: its version, when the
/// condition fixes it.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Version(u64),
    /// `Any`: whatever the version was.
    Unknown,
}

impl Slot {
    fn of(condition: Condition) -> Self {
        match condition {
            Condition::IfUnchanged(basis) => Self::Version(basis.version().saturating_add(1)),
            Condition::IfVersion(v) => Self::Version(v.saturating_add(1)),
            Condition::IfAbsent => Self::Version(1),
            _ => Self::Unknown,
        }
    }
}

/// Whether a write that a resolve declared lost can never land later. True for writes
/// conditioned on a token: the fence in the record lives until the next write, and that write
/// changes the token the lost write needs. Unconditional writes and creates have no fence
/// that survives the next write (or an absent key), so a copy of them still in flight may
/// land late.
fn fenced_for_good(condition: Condition) -> bool {
    matches!(condition, Condition::IfUnchanged(basis) if basis.token().is_some())
}

impl WritePath<'_> {
    /// Writes `write` to session `id` under `key`.
    pub(crate) async fn write(
        &self,
        id: &SessionId,
        key: &str,
        write: &Write,
    ) -> Result<WriteOutcome> {
        // Nothing this write does lasts past this (see the module docs).
        let until = Instant::now() + self.timeouts().write();
        let slot = Slot::of(write.condition);
        let mut token = write.token;
        // Tokens of earlier sends that may have landed after all (a create delivered late).
        let mut earlier: Vec<WriteToken> = Vec::new();
        let mut deadline: Option<Instant> = None;
        let mut last_failure = String::new();
        // An earlier send was declared lost, but nothing stops a copy of it still in flight
        // from landing: no failure after it can claim that nothing was written.
        let mut may_land_late = false;
        for send in 1..=2 {
            let sent = match self.send(id, key, write, token, until).await {
                Ok(sent) => sent,
                // An answer that nothing was written now says nothing about a send declared
                // lost before, which may still land.
                Err(e) if may_land_late => {
                    return Err(self.unknown(id, &last_failure, &e.to_string()));
                }
                Err(e) => return Err(e),
            };
            match sent {
                Sent::Answered(outcome) => {
                    let outcome = match outcome {
                        WriteOutcome::Rejected { current: None, .. }
                            if write.condition == Condition::IfAbsent =>
                        {
                            match self.explain_refused_create(id, key, until).await {
                                Ok(outcome) => outcome,
                                // A create of ours declared lost may have landed meanwhile.
                                Err(e) if may_land_late => {
                                    return Err(self.unknown(id, &last_failure, &e.to_string()));
                                }
                                Err(e) => return Err(e),
                            }
                        }
                        other => other,
                    };
                    return Ok(recognise(outcome, &earlier));
                }
                Sent::Unsent(e) if send == 1 => {
                    tracing::debug!(
                        component = "session", backend = BACKEND, session_id = %id, error = %e,
                        "write not sent (no connection); sending it once more"
                    );
                    last_failure = e.to_string();
                }
                Sent::Unsent(e) if may_land_late => {
                    return Err(self.unknown(id, &last_failure, &e.to_string()));
                }
                Sent::Unsent(e) => return Err(e),
                Sent::InDoubt { reason, staged } => {
                    let deadline = *deadline
                        .get_or_insert_with(|| (Instant::now() + self.resolve_within()).min(until));
                    tracing::debug!(
                        component = "session", backend = BACKEND, session_id = %id,
                        reason = %reason, "write reply lost; asking the server whether it landed"
                    );
                    let sent: Vec<WriteToken> = std::iter::once(token)
                        .chain(earlier.iter().copied())
                        .collect();
                    match self
                        .resolve(id, key, &staged, &sent, slot, deadline)
                        .await?
                    {
                        Resolved::Landed(outcome) => {
                            tracing::debug!(
                                component = "session", backend = BACKEND, session_id = %id,
                                "the write whose reply was lost had landed"
                            );
                            if let Some(ack) = self.ack {
                                // Its WAIT's answer went with the lost reply: nothing says
                                // the replicas have it.
                                return Err(Error::OutcomeUnknown {
                                    id: id.clone(),
                                    backend: BACKEND,
                                    reason: format!(
                                        "the write landed on the primary (its reply was lost), \
                                         but no reply says {} replica(s) have it",
                                        ack.replicas
                                    ),
                                });
                            }
                            return Ok(outcome);
                        }
                        Resolved::NotLanded => {
                            may_land_late |= !fenced_for_good(write.condition);
                            earlier.push(token);
                            token = WriteToken::random();
                            last_failure = reason;
                        }
                        Resolved::Ambiguous(why) | Resolved::Unreachable(why) => {
                            return Err(self.unknown(id, &reason, &why));
                        }
                    }
                }
            }
        }
        if may_land_late {
            return Err(self.unknown(
                id,
                &last_failure,
                "sent twice, and a lost send may land late",
            ));
        }
        Err(Error::Unavailable {
            backend: BACKEND,
            reason: format!(
                "writing session {id} on {}: sent twice, applied neither time ({last_failure})",
                self.conn.url()
            ),
            source: None,
        })
    }

    fn unknown(&self, id: &SessionId, lost: &str, why: &str) -> Error {
        Error::OutcomeUnknown {
            id: id.clone(),
            backend: BACKEND,
            reason: format!(
                "a reply was lost ({lost}) and the server could not tell within {:?} whether \
                 the write landed ({why})",
                self.resolve_within()
            ),
        }
    }

    /// A create refused although no session was seen before it: either one was created in
    /// the same instant (read it, so that the caller gets it, and a create of ours delivered
    /// late is recognised), or the key holds something that is not a session.
    async fn explain_refused_create(
        &self,
        id: &SessionId,
        key: &str,
        until: Instant,
    ) -> Result<WriteOutcome> {
        let by = self.conn.deadline().min(until);
        if let Some(record) = crate::store::read_record(self.conn, id, key, by).await? {
            return Ok(WriteOutcome::rejected(Some(record)));
        }
        let mut exists = redis::cmd("EXISTS");
        exists.arg(key);
        let by = self.conn.deadline().min(until);
        let reply = self
            .conn
            .send_by(&Request::Cmd(&exists), Retry::Idempotent, "EXISTS", by)
            .await?;
        if matches!(reply, Value::Int(n) if n > 0) {
            return Err(Error::corrupt(
                id,
                "the key holds a value that is not a session (delete it to reuse the id)",
            ));
        }
        Ok(WriteOutcome::rejected(None))
    }

    /// Sends the write once (loading a script the server lacks, then sending again), by
    /// `until` at the latest.
    async fn send(
        &self,
        id: &SessionId,
        key: &str,
        write: &Write,
        token: WriteToken,
        until: Instant,
    ) -> Result<Sent> {
        let plan = Plan::new(
            self.scripts,
            key,
            layout::prefix_of(key, id),
            write,
            token,
            self.ack,
        );
        let mut loaded = false;
        loop {
            let request = Request::Pipe(&plan.pipe);
            let by = self.conn.deadline().min(until);
            let reply = match self.conn.send_once(&request, by).await {
                Ok(reply) => reply,
                Err(failure) => return Ok(self.failed(failure, &plan.staged)),
            };
            match plan.outcome(id, reply, self.conn) {
                Err(Missing::Script(source)) if !loaded => {
                    self.load(source, until).await?;
                    loaded = true;
                }
                Err(Missing::Script(_)) => {
                    return Err(Error::Backend {
                        backend: BACKEND,
                        reason: format!(
                            "writing session {id}: the server forgot the write script right \
                             after loading it"
                        ),
                        source: None,
                    });
                }
                Err(Missing::Error(e)) => return Err(e),
                Err(Missing::StagedLeft(e)) => {
                    let mut unlink = redis::cmd("UNLINK");
                    unlink.arg(&plan.staged);
                    // Best effort: the staged record expires with the session's TTL anyway.
                    let by = self.conn.deadline().min(until);
                    let _ = self
                        .conn
                        .send_by(&Request::Cmd(&unlink), Retry::Idempotent, "UNLINK", by)
                        .await;
                    return Err(e);
                }
                Ok(outcome) => return Ok(Sent::Answered(outcome)),
            }
        }
    }

    /// Classifies a failed send.
    fn failed(&self, failure: Failure, staged: &str) -> Sent {
        let in_doubt = |reason: String| Sent::InDoubt {
            reason,
            staged: staged.to_owned(),
        };
        match failure {
            Failure::Redis(e) if e.is_connection_refusal() => {
                Sent::Unsent(self.conn.error(e, "writing"))
            }
            Failure::Redis(e) if errors::is_transport(&e) => in_doubt(e.to_string()),
            // The server answered with an error to the whole request: nothing to resolve.
            Failure::Redis(e) => Sent::Unsent(self.conn.error(e, "writing")),
            Failure::TimedOut => in_doubt("no reply within the command timeout".to_owned()),
            // No connection could be had (refused, reconnecting, a pool that stayed
            // exhausted): nothing was sent.
            Failure::NoConnection(e) => Sent::Unsent(e),
        }
    }

    async fn load(&self, source: &str, until: Instant) -> Result<()> {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(source);
        let by = self.conn.deadline().min(until);
        self.conn
            .send_by(&Request::Cmd(&cmd), Retry::Idempotent, "SCRIPT LOAD", by)
            .await
            .map(drop)
    }

    /// Asks the server whether the write landed (one of `sent`, the tokens of this write's
    /// sends, newest first), until `deadline`. Error replies (`LOADING` after a restart,
    /// `MASTERDOWN` ...) are retried like a missing answer: the question must be answered, not
    /// turned into an error that reads as "nothing written".
    async fn resolve(
        &self,
        id: &SessionId,
        key: &str,
        staged: &str,
        sent: &[WriteToken],
        slot: Slot,
        deadline: Instant,
    ) -> Result<Resolved> {
        let Some(&token) = sent.first() else {
            return Ok(Resolved::NotLanded);
        };
        let token_hex = token.to_string();
        let mut wait = RESOLVE_BACKOFF;
        let mut last = String::from("no attempt finished");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(Resolved::Unreachable(last));
            }
            let mut invocation = self.scripts.resolve.prepare_invoke();
            invocation.key(key).key(staged).arg(&token_hex);
            let request = Request::Script(&invocation);
            match self.conn.send_once(&request, deadline).await {
                Ok(reply) => match resolved(id, sent, slot, reply)? {
                    Some(resolved) => return Ok(resolved),
                    None => last = "the server answered with an error".to_owned(),
                },
                Err(Failure::Redis(e)) => last = e.to_string(),
                Err(Failure::TimedOut) => {
                    return Ok(Resolved::Unreachable("no reply in time".to_owned()));
                }
                Err(Failure::NoConnection(e)) => last = e.to_string(),
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(Resolved::Unreachable(last));
            }
            tokio::time::sleep(wait.min(remaining)).await;
            wait = wait.saturating_mul(2);
        }
    }
}

/// A refusal whose current record carries the token of an earlier send of this write: that
/// send landed after all (a create delivered late), so the write succeeded.
fn recognise(outcome: WriteOutcome, earlier: &[WriteToken]) -> WriteOutcome {
    if let WriteOutcome::Rejected {
        current: Some(record),
        ..
    } = &outcome
        && let Some(landed) = earlier.iter().find_map(|t| landed_as(record, *t))
    {
        return landed;
    }
    outcome
}

/// The outcome a write with `token` had, if `record` shows it among its recent tokens: its
/// version is as many below the current one as it is writes back.
fn landed_as(record: &Record, token: WriteToken) -> Option<WriteOutcome> {
    let position = record.tokens.position(token)?;
    Some(WriteOutcome::written(
        record.version.saturating_sub(position as u64),
        record.meta.created_at,
        record.tokens.since(position),
    ))
}

/// The staged key of one send: in the session key's cluster slot, never matched as a session
/// (`~` is not a session id character).
pub(crate) fn staged_key(key: &str, nonce: u64) -> String {
    if has_hash_tag(key) {
        format!("{key}~w{nonce:016x}")
    } else {
        format!("{{{key}}}~w{nonce:016x}")
    }
}

/// The marker key of one delete (see `scripts::DELETE_LUA`): like a staged key, in the session
/// key's slot and never matched as a session.
pub(crate) fn marker_key(key: &str, nonce: u64) -> String {
    if has_hash_tag(key) {
        format!("{key}~d{nonce:016x}")
    } else {
        format!("{{{key}}}~d{nonce:016x}")
    }
}

/// Which step moves the staged record into place.
enum Step {
    Guard {
        basis: Basis,
        basis_token: WriteToken,
    },
    Update,
    Create {
        now: Timestamp,
    },
}

/// One send of a write: the pipeline and how to read its reply.
struct Plan {
    pipe: redis::Pipeline,
    staged: String,
    step: Step,
    token: WriteToken,
    ack: Option<ReplicatedAck>,
}

/// Why a reply is not an outcome.
enum Missing {
    /// The server lacks the script with this source: load it and send again.
    Script(&'static str),
    /// The script failed before it could remove the staged record (a key of another type):
    /// remove it, then report the error.
    StagedLeft(Error),
    Error(Error),
}

impl From<Error> for Missing {
    fn from(e: Error) -> Self {
        Self::Error(e)
    }
}

impl Plan {
    fn new(
        scripts: &Scripts,
        key: &str,
        prefix: &str,
        write: &Write,
        token: WriteToken,
        ack: Option<ReplicatedAck>,
    ) -> Self {
        let now = Timestamp::now();
        let staged = staged_key(key, fastrand::u64(..));
        let meta = layout::encode_meta(
            now,
            write.payload.len() as u64,
            &write.summary,
            write.ttl,
            prefix,
        );
        let step = match write.condition {
            Condition::IfUnchanged(basis) => match basis.token() {
                Some(basis_token) => Step::Guard { basis, basis_token },
                None => Step::Update,
            },
            Condition::IfAbsent => Step::Create { now },
            _ => Step::Update,
        };
        let header = match &step {
            Step::Guard { basis, .. } => record::header(
                Some(&basis.tokens().after(token)),
                basis.version().saturating_add(1),
                basis.created_at(),
                meta.len(),
            ),
            Step::Create { now } => {
                record::header(Some(&RecentTokens::first(token)), 1, *now, meta.len())
            }
            // Staged as a new session's; over an existing record the update script writes
            // the header from offset 16 (old tokens, version, creation time).
            Step::Update => record::header(Some(&RecentTokens::first(token)), 1, now, meta.len()),
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("SET")
            .arg(&staged)
            .arg(record::Staged {
                header,
                meta: &meta,
                payload: &write.payload[..],
            })
            .arg("PX")
            .arg(write.ttl.as_millis());
        match &step {
            Step::Guard { basis_token, .. } => {
                let mut guard = scripts.guard.prepare_invoke();
                guard
                    .key(key)
                    .key(&staged)
                    .arg(basis_token.to_string())
                    .arg(token.to_string());
                pipe.invoke_script(&guard);
            }
            Step::Update => {
                let (mode, expected) = match write.condition {
                    Condition::IfVersion(v) => ("version", v.to_string()),
                    Condition::IfUnchanged(basis) => ("untokened", basis.version().to_string()),
                    _ => ("any", String::new()),
                };
                let mut update = scripts.update.prepare_invoke();
                update
                    .key(key)
                    .key(&staged)
                    .arg(mode)
                    .arg(expected)
                    .arg(token.to_string())
                    .arg(now.as_millis());
                pipe.invoke_script(&update);
            }
            Step::Create { .. } => {
                layout::push_record_read(&mut pipe, key);
                pipe.cmd("RENAMENX").arg(&staged).arg(key);
                pipe.cmd("UNLINK").arg(&staged);
            }
        }
        if let Some(ack) = ack {
            // Last, so that it waits for everything above (the primary's replication offset
            // after this connection's last write). Keyless: it goes where the pipeline goes.
            pipe.cmd("WAIT").arg(ack.replicas).arg(
                u64::try_from(ack.timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
        }
        Self {
            pipe,
            staged,
            step,
            token,
            ack,
        }
    }

    /// What the pipeline's reply says.
    fn outcome(
        &self,
        id: &SessionId,
        reply: Value,
        conn: &Connection,
    ) -> Result<WriteOutcome, Missing> {
        let unexpected = |what: &str| {
            Missing::Error(Error::Backend {
                backend: BACKEND,
                reason: format!("saving session {id}: unexpected reply ({what})"),
                source: None,
            })
        };
        let Value::Array(mut replies) = reply else {
            return Err(unexpected("not an array"));
        };
        let waited = match self.ack {
            Some(_) => Some(replies.pop().ok_or_else(|| unexpected("no WAIT reply"))?),
            None => None,
        };
        let outcome = self.written_or_not(id, replies, conn)?;
        match (self.ack, waited, &outcome) {
            (Some(ack), Some(waited), WriteOutcome::Written { .. }) => {
                let confirmed = match waited {
                    Value::Int(n) => u32::try_from(n).unwrap_or(0),
                    _ => 0,
                };
                if confirmed < ack.replicas {
                    return Err(Missing::Error(Error::OutcomeUnknown {
                        id: id.clone(),
                        backend: BACKEND,
                        reason: format!(
                            "written on the primary, but {confirmed} of {} replica(s) confirmed \
                             it within {:?}: a failover now may lose it",
                            ack.replicas, ack.timeout
                        ),
                    }));
                }
                Ok(outcome)
            }
            _ => Ok(outcome),
        }
    }

    /// The outcome the replies before any `WAIT` say.
    fn written_or_not(
        &self,
        id: &SessionId,
        replies: Vec<Value>,
        conn: &Connection,
    ) -> Result<WriteOutcome, Missing> {
        let unexpected = |what: &str| {
            Missing::Error(Error::Backend {
                backend: BACKEND,
                reason: format!("saving session {id}: unexpected reply ({what})"),
                source: None,
            })
        };
        let mut replies = replies.into_iter();
        // The staging `SET`: an error here (out of memory, a read-only replica ...) means
        // nothing was written.
        match replies.next() {
            Some(Value::ServerError(e)) => {
                return Err(conn.error(redis::RedisError::from(e), "saving").into());
            }
            Some(_) => {}
            None => return Err(unexpected("too few replies")),
        }
        match &self.step {
            Step::Guard { basis, .. } => match script_reply(id, replies.next(), GUARD_LUA, conn)? {
                Value::Int(1) => Ok(WriteOutcome::written(
                    basis.version().saturating_add(1),
                    basis.created_at(),
                    basis.tokens().after(self.token),
                )),
                reply => Ok(WriteOutcome::rejected(refusal(id, reply)?)),
            },
            Step::Update => match script_reply(id, replies.next(), UPDATE_LUA, conn)? {
                Value::BulkString(written) => {
                    let written = String::from_utf8_lossy(&written).into_owned();
                    let mut parts = written.split(' ');
                    let version = parts
                        .next()
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| unexpected("no version"))?;
                    let created = parts
                        .next()
                        .and_then(|s| s.parse::<u64>().ok())
                        .map(Timestamp::from_millis)
                        .ok_or_else(|| unexpected("no creation time"))?;
                    // Unused slots of the record's token list end it with `-`.
                    let tokens = parts
                        .next()
                        .map(|t| t.split('-').next().unwrap_or_default())
                        .and_then(|t| RecentTokens::parse_hex(t.as_bytes()))
                        .ok_or_else(|| unexpected("no tokens"))?;
                    Ok(WriteOutcome::written(version, created, tokens))
                }
                reply => Ok(WriteOutcome::rejected(refusal(id, reply)?)),
            },
            Step::Create { now } => {
                let (Some(before), Some(pttl), Some(renamed)) =
                    (replies.next(), replies.next(), replies.next())
                else {
                    return Err(unexpected("too few replies"));
                };
                match renamed {
                    Value::Int(1) => Ok(WriteOutcome::written(
                        1,
                        *now,
                        RecentTokens::first(self.token),
                    )),
                    // A hash of the earlier layouts (`GET` says WRONGTYPE): the write path
                    // reads it (`explain_refused_create`).
                    Value::Int(0) if layout::is_wrong_type(&before) => {
                        Ok(WriteOutcome::rejected(None))
                    }
                    Value::Int(0) => {
                        let current = layout::record_from_replies(id, before, pttl, None)?;
                        Ok(WriteOutcome::rejected(current))
                    }
                    Value::ServerError(e) => {
                        Err(conn.error(redis::RedisError::from(e), "creating").into())
                    }
                    _ => Err(unexpected("RENAMENX")),
                }
            }
        }
    }
}

/// The reply of a pipelined `EVALSHA`: `NOSCRIPT` asks for the script to be loaded; a script
/// that failed (`WRONGTYPE`: the key holds another type; `no such key`: the staged record
/// expired before the script ran) wrote nothing.
fn script_reply(
    id: &SessionId,
    reply: Option<Value>,
    source: &'static str,
    conn: &Connection,
) -> Result<Value, Missing> {
    match reply {
        Some(Value::ServerError(e)) if e.code() == "NOSCRIPT" => Err(Missing::Script(source)),
        Some(Value::ServerError(e)) if e.code() == "WRONGTYPE" => {
            Err(Missing::StagedLeft(corrupt(id, "WRONGTYPE".to_owned())))
        }
        Some(Value::ServerError(e)) if e.details().is_some_and(|d| d.contains("no such key")) => {
            Err(Missing::Error(Error::Backend {
                backend: BACKEND,
                reason: format!(
                    "saving session {id}: the staged record expired before it could be moved \
                     into place (is the TTL shorter than a round trip?)"
                ),
                source: None,
            }))
        }
        Some(Value::ServerError(e)) => Err(conn.error(redis::RedisError::from(e), "saving").into()),
        Some(v) => Ok(v),
        None => Err(Missing::Error(Error::Backend {
            backend: BACKEND,
            reason: "saving: the write script gave no reply".to_owned(),
            source: None,
        })),
    }
}

/// The record a script's table reply carries: only refusals are tables (`conflict`, with the
/// current record when there is one), or the errors `corrupt` and `fenced`.
fn refusal(id: &SessionId, reply: Value) -> Result<Option<Record>> {
    let unexpected = |what: &str| Error::Backend {
        backend: BACKEND,
        reason: format!("saving session {id}: unexpected script reply ({what})"),
        source: None,
    };
    let Value::Array(items) = reply else {
        return Err(unexpected("not an array"));
    };
    let mut items = items.into_iter();
    let status = text(items.next()).ok_or_else(|| unexpected("no status"))?;
    match status.as_str() {
        "conflict" => {
            let current = match (items.next(), items.next()) {
                (Some(hmget), Some(pttl)) => layout::record_from_replies(id, hmget, pttl, None)?,
                _ => None,
            };
            Ok(current)
        }
        "corrupt" => Err(corrupt(id, text(items.next()).unwrap_or_default())),
        // A send whose token a resolve fenced: this process never sends one (a send after a
        // resolve has a fresh token), so the reply means another client reused a token.
        "fenced" => Err(unexpected("the write was fenced")),
        other => Err(unexpected(other)),
    }
}

/// What the resolve script found; `None` for an error reply (ask again).
fn resolved(
    id: &SessionId,
    sent: &[WriteToken],
    slot: Slot,
    reply: Value,
) -> Result<Option<Resolved>> {
    let items = match reply {
        Value::Array(items) => items,
        // A passing state (LOADING, BUSY ...): ask again. Any other refusal (out of memory
        // for the fence, no permission ...) will not change within the deadline: the
        // outcome stays unknown, and waiting would only delay saying so.
        Value::ServerError(e) if errors::is_transient_code(e.code()) => return Ok(None),
        Value::ServerError(e) => {
            return Ok(Some(Resolved::Unreachable(format!(
                "the server refused to tell: {}",
                e.details()
                    .map_or_else(|| e.code().to_owned(), |d| format!("{} {d}", e.code()))
            ))));
        }
        _ => {
            return Err(Error::Backend {
                backend: BACKEND,
                reason: format!("resolving a lost write of session {id}: unexpected reply"),
                source: None,
            });
        }
    };
    let mut items = items.into_iter();
    let status = text(items.next()).unwrap_or_default();
    match status.as_str() {
        "landed" | "not_landed" => {
            let current = match (items.next(), items.next()) {
                (Some(hmget), Some(pttl)) => layout::record_from_replies(id, hmget, pttl, None)?,
                _ => None,
            };
            Ok(Some(verdict(current.as_ref(), sent, slot)))
        }
        "corrupt" => Err(corrupt(id, text(items.next()).unwrap_or_default())),
        other => Err(Error::Backend {
            backend: BACKEND,
            reason: format!("resolving a lost write of session {id}: unexpected status {other}"),
            source: None,
        }),
    }
}

/// Did one of the `sent` tokens land in `current`? Found among the recent tokens: landed.
/// Not found: not landed, when the record still shows the place the write would have taken
/// (its version is within the recent tokens, or not reached yet); otherwise (more writes
/// landed since than the record keeps tokens of) the server cannot tell.
fn verdict(current: Option<&Record>, sent: &[WriteToken], slot: Slot) -> Resolved {
    let Some(record) = current else {
        return Resolved::NotLanded;
    };
    if let Some(outcome) = sent.iter().find_map(|t| landed_as(record, *t)) {
        return Resolved::Landed(outcome);
    }
    match slot {
        // An unconditional write could have any version: documented as the one case where a
        // write pushed out of the recent tokens reads as not landed.
        Slot::Unknown => Resolved::NotLanded,
        Slot::Version(version) => {
            let kept = record.tokens.len() as u64;
            let oldest_kept = record.version.saturating_sub(kept.saturating_sub(1));
            if version > record.version || (kept > 0 && version >= oldest_kept) {
                Resolved::NotLanded
            } else {
                Resolved::Ambiguous(format!(
                    "the session is at version {} and keeps the tokens of {kept} writes; the \
                     write would be version {version}",
                    record.version
                ))
            }
        }
    }
}

fn corrupt(id: &SessionId, reason: String) -> Error {
    let reason = if reason.starts_with("WRONGTYPE") {
        "the key holds another Redis type, not a session (delete it to reuse the id)".to_owned()
    } else {
        reason
    };
    Error::corrupt(id, reason)
}

fn text(v: Option<Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::SimpleString(s) => Some(s),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_keys_share_the_session_key_slot() {
        assert_eq!(
            staged_key("cql:session:u-1", 0xab),
            "{cql:session:u-1}~w00000000000000ab"
        );
        // A prefix with its own hash tag keeps it: the tag decides the slot.
        assert_eq!(
            staged_key("{app}:s:u-1", 1),
            "{app}:s:u-1~w0000000000000001"
        );
        // A `{` without a `}` after it is no tag either: the whole key, wrapped.
        assert!(staged_key("a{b:u-1", 1).starts_with("{a{b:u-1}"));
    }

    fn record(version: u64, tokens: &[u64]) -> Record {
        let meta = session_core::Meta::new(
            Timestamp::from_millis(5),
            Timestamp::from_millis(9),
            1,
            Default::default(),
        );
        Record::new(bytes::Bytes::from_static(b"x"), meta, version).with_tokens(
            tokens
                .iter()
                .map(|&n| WriteToken::from_u64(n).unwrap())
                .collect(),
        )
    }

    #[test]
    fn a_lost_write_is_not_landed_only_while_its_place_is_in_view() {
        let t = |n| WriteToken::from_u64(n).unwrap();
        let ours = [t(100)];
        // Found: landed, at its own version.
        assert!(matches!(
            verdict(Some(&record(9, &[8, 100, 7])), &ours, Slot::Version(8)),
            Resolved::Landed(WriteOutcome::Written { version: 8, .. })
        ));
        // An earlier send of the same write counts too.
        assert!(matches!(
            verdict(Some(&record(4, &[42, 3])), &[t(7), t(42)], Slot::Version(4)),
            Resolved::Landed(WriteOutcome::Written { version: 4, .. })
        ));
        // Its version is still in the recent tokens, held by another write: not landed.
        assert!(matches!(
            verdict(Some(&record(9, &[9, 8, 7, 6])), &ours, Slot::Version(7)),
            Resolved::NotLanded
        ));
        // Its version was not reached (the basis is current): not landed.
        assert!(matches!(
            verdict(Some(&record(6, &[6, 5])), &ours, Slot::Version(7)),
            Resolved::NotLanded
        ));
        // Eight writes landed on top of where it would be: the server cannot tell.
        let full: Vec<u64> = (13..=20).rev().collect();
        assert!(matches!(
            verdict(Some(&record(20, &full)), &ours, Slot::Version(12)),
            Resolved::Ambiguous(_)
        ));
        // No session: not landed. An unconditional write: not landed unless found.
        assert!(matches!(
            verdict(None, &ours, Slot::Version(1)),
            Resolved::NotLanded
        ));
        assert!(matches!(
            verdict(Some(&record(20, &full)), &ours, Slot::Unknown),
            Resolved::NotLanded
        ));
        // A record without tokens past the write's version cannot tell either.
        assert!(matches!(
            verdict(Some(&record(5, &[])), &ours, Slot::Version(3)),
            Resolved::Ambiguous(_)
        ));
    }

    #[test]
    fn a_token_found_writes_back_names_the_version_it_wrote() {
        let t = |n| WriteToken::from_u64(n).unwrap();
        let tokens: RecentTokens = [t(3), t(2), t(1)].into_iter().collect();
        let meta = session_core::Meta::new(
            Timestamp::from_millis(5),
            Timestamp::from_millis(9),
            1,
            Default::default(),
        );
        let record = Record::new(bytes::Bytes::from_static(b"x"), meta, 7).with_tokens(tokens);
        match landed_as(&record, t(2)) {
            Some(WriteOutcome::Written {
                version, tokens, ..
            }) => {
                assert_eq!(version, 6);
                assert_eq!(tokens.current(), Some(t(2)));
                assert_eq!(tokens.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(landed_as(&record, t(9)).is_none());
    }
}
