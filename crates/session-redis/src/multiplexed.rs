//! The multiplexed mode: one `MultiplexedConnection` shared by every task, replaced when the
//! transport condemns it.
//!
//! redis-rs' `ConnectionManager` reconnects only when its connection drops (an I/O error), and
//! offers no way to ask for a new connection: one that stopped answering, or that reaches a
//! master demoted to a replica (`READONLY`), would be kept until the process restarts. So the
//! store holds the connection itself, made with the same [`Client`] (address, TLS, credentials,
//! `TCP_NODELAY` and keepalive: see `connection.rs`) and [`AsyncConnectionConfig`] every
//! time.
//!
//! The link is in one of three states, behind a `tokio::sync::watch` so that requests can wait
//! for a change without polling:
//!
//! - **up**: every request gets a clone of the connection (no lock held, no round trip);
//! - **connecting**: exactly one attempt is in flight, on a task of its own (so that it
//!   finishes, and serves the next request, even when the request that started it gave up);
//!   requests wait for its outcome, each at most until its own connect deadline. An attempt
//!   far past the connect timeout lost its task (the runtime it ran on stopped): the next
//!   request declares it failed, and its late outcome, if any, is ignored;
//! - **down**: the last attempt failed, or the connection was condemned: requests before
//!   `retry_at` fail at once with `Unavailable` (an outage costs callers no waiting), the
//!   first one after it starts the next attempt.
//!
//! The wait before the next attempt grows with the *streak*: attempts that failed, and
//! connections condemned for `READONLY` / `LOADING` / `MASTERDOWN` younger than
//! [`STABLE_AFTER`] (each new connection to a demoted master answers `READONLY` again: without
//! the streak, every write would cost a reconnect). It starts at [`RECONNECT_MIN_DELAY`],
//! doubles, and stays below [`RECONNECT_MAX_DELAY`] (jittered between half and all of it).
//! A connection condemned because it timed out or dropped is replaced at once; one that
//! served for longer than [`STABLE_AFTER`] ends the streak.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::{AsyncConnectionConfig, Client, RedisError, aio::MultiplexedConnection};
use session_core::Error;
use tokio::sync::watch;

use crate::{
    errors::{self, BACKEND},
    transport::{Condemned, Transport},
};

/// The first wait between two reconnect attempts in a streak.
pub(crate) const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// The longest wait between two reconnect attempts: how late, at most, the store notices that
/// a server it could not reach answers again.
pub(crate) const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
/// A connection condemned after serving this long ends the streak of failures.
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(5);

/// The store's one multiplexed connection, replaced when it fails. Cloning is cheap.
#[derive(Clone)]
pub(crate) struct Multiplexed {
    shared: Arc<Shared>,
}

/// How a connection is made: from a fixed address, or from the master the sentinels name
/// at the time (feature `sentinel`), so that every reconnect after a failover asks again.
pub(crate) enum Maker {
    Direct(Client),
    #[cfg(feature = "sentinel")]
    Sentinel(tokio::sync::Mutex<redis::sentinel::SentinelClient>),
}

impl Maker {
    pub(crate) async fn connect(
        &self,
        config: &AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, RedisError> {
        match self {
            Self::Direct(client) => {
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await
            }
            #[cfg(feature = "sentinel")]
            Self::Sentinel(sentinels) => {
                // The sentinels name the master, and redis-rs checks with `ROLE` that it is
                // one before handing out its client.
                let client = sentinels.lock().await.async_get_client().await?;
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await
            }
        }
    }
}

struct Shared {
    client: Maker,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    url: Arc<str>,
    state: watch::Sender<State>,
    next_id: AtomicU64,
}

struct State {
    link: Link,
    /// Failed attempts and early `NotServing` condemnations since the last stable connection.
    streak: u32,
    /// Why the last connection went, or the last attempt failed: for messages.
    last_failure: Option<String>,
}

enum Link {
    Up {
        id: u64,
        conn: MultiplexedConnection,
        since: Instant,
    },
    /// Attempt `attempt` is in flight since `started`.
    Connecting {
        attempt: u64,
        started: Instant,
    },
    Down {
        retry_at: Instant,
    },
}

/// What a request that found no connection does.
enum Next {
    /// Waits for the attempt in flight.
    Wait,
    /// Starts the next attempt: the wait after the last one is over.
    Start,
    /// Fails at once: the next attempt is this far off.
    Fail(Duration),
    /// The attempt in flight is overdue: its task is gone (the runtime it ran on stopped).
    TakeOver(u64),
}

/// A clone of the connection, and which one it is (a condemnation of a connection already
/// replaced changes nothing).
#[derive(Debug)]
pub(crate) struct Lease {
    id: u64,
    conn: MultiplexedConnection,
}

impl fmt::Debug for Multiplexed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.borrow();
        let link = match &state.link {
            Link::Up { .. } => "up",
            Link::Connecting { .. } => "connecting",
            Link::Down { .. } => "down",
        };
        f.debug_struct("Multiplexed")
            .field("url", &&*self.shared.url)
            .field("link", &link)
            .field("streak", &state.streak)
            .finish()
    }
}

impl Multiplexed {
    /// Connects the first connection: its failure (refused credentials, nothing listening)
    /// is the caller's to report. Not bounded here: the caller bounds it.
    pub(crate) async fn connect(
        client: Maker,
        config: AsyncConnectionConfig,
        connect_timeout: Duration,
        url: Arc<str>,
    ) -> Result<Self, RedisError> {
        let conn = client.connect(&config).await?;
        let state = State {
            link: Link::Up {
                id: 0,
                conn,
                since: Instant::now(),
            },
            streak: 0,
            last_failure: None,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                config,
                connect_timeout,
                url,
                state: watch::Sender::new(state),
                next_id: AtomicU64::new(1),
            }),
        })
    }
}

impl Transport for Multiplexed {
    type Lease = Lease;
    type Conn = MultiplexedConnection;

    async fn checkout(&self, by: Instant) -> Result<Lease, Error> {
        let shared = &self.shared;
        if let Some(lease) = shared.up() {
            return Ok(lease);
        }
        let mut seen = shared.state.subscribe();
        loop {
            // Decided under the watch's read lock, acted on after it is released (building an
            // error reads the state again).
            let now = Instant::now();
            let next = match &seen.borrow_and_update().link {
                Link::Up { id, conn, .. } => {
                    return Ok(Lease {
                        id: *id,
                        conn: conn.clone(),
                    });
                }
                Link::Connecting { attempt, started } => {
                    if now.duration_since(*started) > shared.lost_after() {
                        Next::TakeOver(*attempt)
                    } else {
                        Next::Wait
                    }
                }
                Link::Down { retry_at } if *retry_at > now => {
                    Next::Fail(retry_at.duration_since(now))
                }
                Link::Down { .. } => Next::Start,
            };
            match next {
                Next::Fail(wait) => return Err(shared.backing_off(wait)),
                Next::Start => Shared::start_reconnect(shared),
                Next::TakeOver(attempt) => shared.take_over(attempt),
                Next::Wait => {}
            }
            match tokio::time::timeout_at(by.into(), seen.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives in `shared`, which this borrows: never closed while here.
                Ok(Err(_)) | Err(_) => return Err(shared.no_connection_in_time()),
            }
        }
    }

    fn connection(lease: &mut Lease) -> &mut MultiplexedConnection {
        &mut lease.conn
    }

    fn condemn(&self, lease: Lease, why: &Condemned) {
        let shared = &self.shared;
        let now = Instant::now();
        let condemned = shared.state.send_if_modified(|state| {
            let Link::Up { id, since, .. } = &state.link else {
                return false;
            };
            if *id != lease.id {
                return false;
            }
            let served = now.duration_since(*since);
            let delay = if served >= STABLE_AFTER {
                state.streak = 0;
                Duration::ZERO
            } else if matches!(why, Condemned::NotServing(_)) {
                state.streak = state.streak.saturating_add(1);
                backoff(state.streak)
            } else {
                Duration::ZERO
            };
            state.link = Link::Down {
                retry_at: now + delay,
            };
            state.last_failure = Some(why.to_string());
            true
        });
        drop(lease);
        if condemned {
            tracing::debug!(
                component = "session",
                backend = BACKEND,
                url = %shared.url,
                reason = %why,
                "replacing the connection"
            );
            Shared::start_reconnect(shared);
        }
    }
}

impl Shared {
    /// The connection, when the link is up.
    fn up(&self) -> Option<Lease> {
        match &self.state.borrow().link {
            Link::Up { id, conn, .. } => Some(Lease {
                id: *id,
                conn: conn.clone(),
            }),
            _ => None,
        }
    }

    /// Starts one connect attempt, if the link is down and its wait is over (never a second
    /// one while one is in flight).
    fn start_reconnect(this: &Arc<Self>) {
        let now = Instant::now();
        let attempt = this.next_id.fetch_add(1, Ordering::Relaxed);
        let started = this.state.send_if_modified(|state| {
            let due = matches!(state.link, Link::Down { retry_at } if retry_at <= now);
            if due {
                state.link = Link::Connecting {
                    attempt,
                    started: now,
                };
            }
            due
        });
        if !started {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let shared = Arc::clone(this);
                // Detached: it ends within the connect timeout and then records its outcome.
                drop(runtime.spawn(async move {
                    let outcome = shared.connect_once().await;
                    shared.finish(attempt, outcome);
                }));
            }
            Err(_) => this.finish(attempt, Err("no Tokio runtime to reconnect on".to_owned())),
        }
    }

    /// How long after its start an attempt counts as lost: it bounds itself by the connect
    /// timeout, so only a task that never ran to its end (its runtime stopped) is later.
    fn lost_after(&self) -> Duration {
        self.connect_timeout.saturating_mul(2) + RECONNECT_MAX_DELAY
    }

    /// Declares attempt `attempt` lost, so that the next request starts another.
    fn take_over(&self, attempt: u64) {
        self.finish(
            attempt,
            Err("a reconnect attempt was lost (the runtime it ran on stopped?)".to_owned()),
        );
    }

    async fn connect_once(&self) -> Result<MultiplexedConnection, String> {
        let connect = self.client.connect(&self.config);
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(errors::describe(&e)),
            Err(_) => Err(format!("no connection within {:?}", self.connect_timeout)),
        }
    }

    /// Records the outcome of attempt `attempt` and wakes every request waiting for it. An
    /// attempt declared lost meanwhile changes nothing (its connection, if any, is dropped).
    fn finish(&self, attempt: u64, outcome: Result<MultiplexedConnection, String>) {
        let now = Instant::now();
        let mut retry_in = None;
        let current = self.state.send_if_modified(|state| {
            if !matches!(state.link, Link::Connecting { attempt: a, .. } if a == attempt) {
                return false;
            }
            match outcome {
                Ok(conn) => {
                    state.link = Link::Up {
                        id: attempt,
                        conn,
                        since: now,
                    };
                }
                Err(reason) => {
                    state.streak = state.streak.saturating_add(1);
                    let delay = backoff(state.streak);
                    retry_in = Some(delay);
                    state.link = Link::Down {
                        retry_at: now + delay,
                    };
                    state.last_failure = Some(reason);
                }
            }
            true
        });
        if !current {
            return;
        }
        match retry_in {
            None => tracing::debug!(
                component = "session",
                backend = BACKEND,
                url = %self.url,
                "connected (a new connection replaces the old one)"
            ),
            Some(delay) => tracing::debug!(
                component = "session",
                backend = BACKEND,
                url = %self.url,
                retry_in = ?delay,
                "reconnecting failed"
            ),
        }
    }

    fn last_failure(&self) -> String {
        self.state
            .borrow()
            .last_failure
            .clone()
            .unwrap_or_else(|| "no reason recorded".to_owned())
    }

    fn backing_off(&self, retry_in: Duration) -> Error {
        Error::Unavailable {
            backend: BACKEND,
            reason: format!(
                "not connected to {} ({}); the next attempt is in {} ms",
                self.url,
                self.last_failure(),
                retry_in.as_millis()
            ),
            source: None,
        }
    }

    fn no_connection_in_time(&self) -> Error {
        Error::Unavailable {
            backend: BACKEND,
            reason: format!(
                "no connection to {} came up in time (the connect timeout is {:?}; last: {})",
                self.url,
                self.connect_timeout,
                self.last_failure()
            ),
            source: None,
        }
    }
}

/// The wait before the next attempt after `streak` failures: none for none, then
/// [`RECONNECT_MIN_DELAY`] doubling up to [`RECONNECT_MAX_DELAY`], each drawn between half and
/// all of it so that instances that lost the server together do not come back in step.
fn backoff(streak: u32) -> Duration {
    let Some(doublings) = streak.checked_sub(1) else {
        return Duration::ZERO;
    };
    let full = RECONNECT_MIN_DELAY
        .saturating_mul(1 << doublings.min(16))
        .min(RECONNECT_MAX_DELAY);
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link whose attempt `attempt` started `ago`, to a port where nothing listens.
    fn connecting(ago: Duration) -> Multiplexed {
        let client = Client::open("redis://127.0.0.1:1/0").unwrap();
        let state = State {
            link: Link::Connecting {
                attempt: 7,
                started: Instant::now() - ago,
            },
            streak: 0,
            last_failure: None,
        };
        Multiplexed {
            shared: Arc::new(Shared {
                client: Maker::Direct(client),
                config: AsyncConnectionConfig::new(),
                connect_timeout: Duration::from_millis(100),
                url: Arc::from("redis://127.0.0.1:1/0"),
                state: watch::Sender::new(state),
                next_id: AtomicU64::new(8),
            }),
        }
    }

    fn is_connecting(link: &Multiplexed) -> bool {
        matches!(link.shared.state.borrow().link, Link::Connecting { .. })
    }

    #[tokio::test]
    async fn requests_wait_for_the_attempt_in_flight_until_their_deadline() {
        let link = connecting(Duration::ZERO);
        let started = Instant::now();
        let result = link.checkout(started + Duration::from_millis(50)).await;
        assert!(matches!(result, Err(Error::Unavailable { .. })));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(is_connecting(&link), "a waiting request starts nothing");
    }

    #[tokio::test]
    async fn an_attempt_whose_task_was_lost_is_taken_over() {
        let link = connecting(Duration::from_secs(60));
        let by = Instant::now() + Duration::from_secs(30);
        let result = link.checkout(by).await;
        assert!(
            matches!(result, Err(Error::Unavailable { .. })),
            "{result:?}"
        );
        assert!(Instant::now() < by, "waited for a lost attempt");
        assert!(!is_connecting(&link));
        // The late outcome of the lost attempt changes nothing.
        link.shared.finish(7, Err("late".to_owned()));
        assert_ne!(link.shared.last_failure(), "late");
        // After the backoff, the next request starts a real attempt (refused at once here).
        tokio::time::sleep(RECONNECT_MAX_DELAY).await;
        let result = link.checkout(Instant::now() + Duration::from_secs(5)).await;
        assert!(
            matches!(result, Err(Error::Unavailable { .. })),
            "{result:?}"
        );
        assert!(
            link.shared.last_failure().contains("refused"),
            "{}",
            link.shared.last_failure()
        );
    }

    #[test]
    fn the_backoff_grows_and_stays_bounded() {
        assert_eq!(backoff(0), Duration::ZERO);
        for streak in 1..40 {
            let delay = backoff(streak);
            assert!(delay <= RECONNECT_MAX_DELAY, "{streak}: {delay:?}");
            assert!(delay >= RECONNECT_MIN_DELAY / 2, "{streak}: {delay:?}");
        }
        assert!(backoff(30) >= RECONNECT_MAX_DELAY / 2);
    }
}
