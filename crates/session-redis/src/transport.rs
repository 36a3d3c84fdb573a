//! The transport: how one request reaches the server, whichever way the store holds its
//! connections. Two implementations of [`Transport`] exist, neither of which knows the other:
//! `multiplexed.rs` (one multiplexed connection, replaced when it fails) and `pool.rs` (a
//! deadpool of them, feature `pool`). What does not depend on the way lives here, once:
//!
//! - **the deadline**: a request waits at most the connect timeout for a connection and at
//!   most the command timeout for its reply, and never past the deadline of the call it is
//!   part of. One timer per request (the driver's own response timeout is off);
//! - **the replacement policy**: a connection whose request timed out or dropped, or that
//!   answered `READONLY`, `LOADING` or `MASTERDOWN` (also inside a pipeline's reply), is
//!   handed back condemned: the transport never hands it out again;
//! - **the retry policy**: an idempotent request that met a dropped connection is sent once
//!   more, on another connection, within the same deadline ([`send`]). Writes are never
//!   resent here: `write.rs` resolves their lost replies instead ([`once`]).

use std::{
    fmt,
    future::Future,
    time::{Duration, Instant},
};

use redis::{RedisError, RedisResult, Value, aio::ConnectionLike};
use session_core::Error;

use crate::errors::{self, BACKEND};

/// One request: a command, a pipeline, or a script invocation (EVALSHA, with SCRIPT LOAD and a
/// second EVALSHA only when the server answers NOSCRIPT); in a cluster, also a command or a
/// pipeline for one node named by its address (`SCAN`, a listing's reads), or a command for
/// every primary (`SCRIPT LOAD`).
pub(crate) enum Request<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
    /// A command or pipeline for the node at this address (cluster only).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    OnNode(&'a Node, NodeRequest<'a>),
    /// A command for every primary, the replies aggregated as redis-rs' routing says
    /// (cluster only; a single server just runs it).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    AllPrimaries(&'a redis::Cmd),
}

/// What [`Request::OnNode`] sends.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) enum NodeRequest<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
}

/// A cluster node's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Node {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A connection a [`Request`] can run on: every redis-rs async connection; a cluster
/// connection also routes by node.
pub(crate) trait RunOn: ConnectionLike + Send + Sized {
    /// Runs a request for one node (or every primary). A connection to one server has only
    /// that server: it runs the request there.
    fn run_routed<'a>(
        &'a mut self,
        request: &'a Request<'a>,
    ) -> impl Future<Output = RedisResult<Value>> + Send + 'a {
        async move {
            match request {
                Request::OnNode(_, NodeRequest::Cmd(cmd)) | Request::AllPrimaries(cmd) => {
                    cmd.query_async(self).await
                }
                Request::OnNode(_, NodeRequest::Pipe(pipe)) => {
                    pipe.query_async::<Vec<Value>>(self).await.map(Value::Array)
                }
                Request::Cmd(_) | Request::Pipe(_) | Request::Script(_) => Err(RedisError::from((
                    redis::ErrorKind::Client,
                    "not a routed request",
                ))),
            }
        }
    }
}

impl RunOn for redis::aio::MultiplexedConnection {}

impl Request<'_> {
    async fn run<C: RunOn>(&self, con: &mut C) -> RedisResult<Value> {
        match self {
            Self::Cmd(cmd) => cmd.query_async(con).await,
            Self::Pipe(pipe) => pipe.query_async::<Vec<Value>>(con).await.map(Value::Array),
            Self::Script(script) => script.invoke_async(con).await,
            Self::OnNode(..) | Self::AllPrimaries(_) => con.run_routed(self).await,
        }
    }
}

/// Whether a request may be sent again after its connection dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, deletes, TTL resets: repeating them changes nothing. (Writes never go through
    /// [`send`]: `write.rs` resolves their lost replies instead.)
    Idempotent,
}

/// Why one attempt failed.
pub(crate) enum Failure {
    /// No connection could be had in time (refused, timed out, reconnecting, pool exhausted):
    /// nothing was sent.
    NoConnection(Error),
    /// The driver failed the request: the connection dropped or broke (the request may have
    /// been sent), or the server answered the whole request with an error.
    Redis(RedisError),
    /// Sent, and no reply within the command timeout.
    TimedOut,
}

/// Why a connection is taken out of service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Condemned {
    /// Its request got no reply within the command timeout.
    TimedOut,
    /// It dropped, or broke (an I/O error, a protocol error).
    Broken(String),
    /// The server answered that it does not serve (`READONLY`, `LOADING`, `MASTERDOWN`).
    NotServing(String),
}

impl fmt::Display for Condemned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut => f.write_str("no reply within the command timeout"),
            Self::Broken(why) => write!(f, "the connection broke ({why})"),
            Self::NotServing(why) => write!(f, "the server does not serve ({why})"),
        }
    }
}

/// Whether the connection that produced `result` must be replaced, and why.
pub(crate) fn verdict(result: &RedisResult<Value>) -> Option<Condemned> {
    match result {
        Err(e) if e.code().is_some_and(errors::is_not_serving) => {
            Some(Condemned::NotServing(e.to_string()))
        }
        Err(e) if e.is_unrecoverable_error() || e.is_io_error() || e.is_connection_dropped() => {
            Some(Condemned::Broken(e.to_string()))
        }
        Err(_) => None,
        Ok(value) => errors::not_serving_reply(value).map(|e| Condemned::NotServing(e.to_string())),
    }
}

/// A way of holding connections: hands one out, takes it back condemned.
///
/// A lease that is simply dropped goes back into service (a clone of the shared multiplexed
/// connection is dropped; a pooled connection returns to its pool).
pub(crate) trait Transport: Send + Sync {
    /// One connection, for one request.
    type Lease: Send;
    /// The connection a lease holds.
    type Conn: RunOn;

    /// A connection, waiting for one at most until `by` (for a reconnect in flight, or a free
    /// pooled connection). Errors are the library's: `Unavailable` when none came in time,
    /// `Auth` when the server refused the credentials of a new one ...
    fn checkout(&self, by: Instant) -> impl Future<Output = Result<Self::Lease, Error>> + Send;

    /// The connection of a lease.
    fn connection(lease: &mut Self::Lease) -> &mut Self::Conn;

    /// Takes the lease's connection out of service for good: the transport replaces it.
    fn condemn(&self, lease: Self::Lease, why: &Condemned);
}

/// The two timeouts of [`RedisOptions`](crate::RedisOptions), and the bounds derived from them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// How long a request may wait for a connection (connecting one included).
    pub(crate) connect: Duration,
    /// How long a request may wait for its reply.
    pub(crate) command: Duration,
}

impl Timeouts {
    /// The bound of one round trip, its resend after a dropped connection included: connect
    /// timeout + command timeout.
    pub(crate) fn round_trip(&self) -> Duration {
        self.connect.saturating_add(self.command)
    }

    /// The bound of a whole write: a send, the resolve of a lost reply, and one resend, each
    /// bounded by [`round_trip`](Self::round_trip).
    pub(crate) fn write(&self) -> Duration {
        self.round_trip().saturating_mul(3)
    }
}

/// Sends `request` once through `transport`, bounded by the timeouts and by `deadline`, and
/// condemns the connection when the attempt says it must go.
pub(crate) async fn once<T: Transport>(
    transport: &T,
    timeouts: Timeouts,
    request: &Request<'_>,
    deadline: Instant,
    url: &str,
) -> Result<Value, Failure> {
    let now = Instant::now();
    if now >= deadline {
        return Err(Failure::NoConnection(Error::Unavailable {
            backend: BACKEND,
            reason: format!("{url}: the call's time ran out before this request could be sent"),
            source: None,
        }));
    }
    let mut lease = transport
        .checkout((now + timeouts.connect).min(deadline))
        .await
        .map_err(Failure::NoConnection)?;
    let full = Instant::now() + timeouts.command;
    let by = full.min(deadline);
    let result = tokio::time::timeout_at(by.into(), request.run(T::connection(&mut lease))).await;
    let Ok(result) = result else {
        // A connection that let a request wait out the whole command timeout is not trusted
        // again; one cut short by the caller's deadline is not to blame.
        if by == full {
            transport.condemn(lease, &Condemned::TimedOut);
        }
        return Err(Failure::TimedOut);
    };
    if let Some(why) = verdict(&result) {
        transport.condemn(lease, &why);
    }
    result.map_err(Failure::Redis)
}

/// Sends `request` like [`once`]; an idempotent request that met a dropped connection is sent
/// once more within the same `deadline`: a connection that died while idle (a server restart)
/// is only found dead by the first request on it, and that request should not fail for it.
pub(crate) async fn send<T: Transport>(
    transport: &T,
    timeouts: Timeouts,
    request: &Request<'_>,
    retry: Retry,
    deadline: Instant,
    url: &str,
) -> Result<Value, Failure> {
    match once(transport, timeouts, request, deadline, url).await {
        Err(Failure::Redis(e))
            if retry == Retry::Idempotent
                && errors::is_dropped_connection(&e)
                && Instant::now() < deadline =>
        {
            tracing::debug!(
                component = "session",
                backend = BACKEND,
                error = %e,
                "connection dropped; sending the request once more on a new connection"
            );
            once(transport, timeouts, request, deadline, url).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(line: &str) -> Value {
        redis::parse_redis_value(format!("{line}\r\n").as_bytes()).unwrap()
    }

    fn server_error(line: &str) -> RedisError {
        match reply(line) {
            Value::ServerError(e) => RedisError::from(e),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_not_serving_reply_anywhere_in_a_pipeline_condemns_the_connection() {
        let readonly = reply("-READONLY You can't write against a read only replica.");
        let pipeline = Value::Array(vec![Value::Int(1), readonly.clone(), Value::Okay]);
        assert!(matches!(
            verdict(&Ok(pipeline)),
            Some(Condemned::NotServing(_))
        ));
        assert!(matches!(
            verdict(&Ok(readonly)),
            Some(Condemned::NotServing(_))
        ));
        assert!(matches!(
            verdict(&Err(server_error("-LOADING Redis is loading"))),
            Some(Condemned::NotServing(_))
        ));
        assert!(matches!(
            verdict(&Err(server_error("-MASTERDOWN Link with MASTER is down"))),
            Some(Condemned::NotServing(_))
        ));
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(verdict(&Err(reset)), Some(Condemned::Broken(_))));
        // Answers about one key, or refusals a new connection would get all the same: kept.
        let wrongtype = reply("-WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_eq!(
            verdict(&Ok(Value::Array(vec![wrongtype, Value::Nil]))),
            None
        );
        assert_eq!(
            verdict(&Err(server_error("-OOM command not allowed"))),
            None
        );
        assert_eq!(verdict(&Err(server_error("-NOPERM no"))), None);
        assert_eq!(verdict(&Ok(Value::Int(3))), None);
    }

    #[test]
    fn the_bounds_follow_from_the_timeouts() {
        let t = Timeouts {
            connect: Duration::from_secs(2),
            command: Duration::from_secs(1),
        };
        assert_eq!(t.round_trip(), Duration::from_secs(3));
        assert_eq!(t.write(), Duration::from_secs(9));
    }
}
