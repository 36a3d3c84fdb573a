//! Connections: one multiplexed `ConnectionManager` or a pool, behind one `send`.
//!
//! Every request is bounded by the command timeout (set on the driver); a pooled request, which
//! may also wait for a free connection, is bounded by connect + command timeout overall. An idempotent request that meets a dropped connection is sent once more:
//! the `ConnectionManager` reconnects only for the *next* command, so without that retry the
//! first request after a server restart would fail.

use std::time::Duration;

use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, RedisResult, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use session_core::{Error, Result};

use crate::{
    errors::{self, BACKEND},
    options::{ConnectionMode, RedisOptions},
};

/// One request: a command, a pipeline, or a script invocation (EVALSHA, with SCRIPT LOAD and a
/// second EVALSHA only when the server answers NOSCRIPT).
pub(crate) enum Request<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
}

impl Request<'_> {
    pub(crate) async fn run<C>(&self, con: &mut C) -> RedisResult<Value>
    where
        C: redis::aio::ConnectionLike + Send,
    {
        match self {
            Self::Cmd(cmd) => cmd.query_async(con).await,
            Self::Pipe(pipe) => pipe.query_async::<Vec<Value>>(con).await.map(Value::Array),
            Self::Script(script) => script.invoke_async(con).await,
        }
    }
}

/// Whether a request may be sent again after its connection dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, deletes, TTL resets: repeating them changes nothing. (Writes never go through
    /// [`Connection::send`]: `write.rs` resolves their lost replies instead.)
    Idempotent,
}

#[derive(Clone)]
enum Inner {
    Multiplexed(ConnectionManager),
    #[cfg(feature = "pool")]
    Pool(crate::pool::RedisPool),
}

/// The store's connection(s). Cloning is cheap.
#[derive(Clone)]
pub(crate) struct Connection {
    inner: Inner,
    url: std::sync::Arc<str>,
    deadline: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.inner {
            Inner::Multiplexed(_) => "multiplexed",
            #[cfg(feature = "pool")]
            Inner::Pool(_) => "pool",
        };
        f.debug_struct("Connection")
            .field("url", &&*self.url)
            .field("mode", &mode)
            .finish()
    }
}

impl Connection {
    /// Connects as `options` say: TCP (+TLS), AUTH, SELECT, then PING, all within the connect
    /// timeout.
    pub(crate) async fn connect(options: &RedisOptions) -> Result<Self> {
        let url = options.redacted_url();
        let client = options.client()?;
        let driver_config = options.connection_config();
        let connect = async {
            // A first, plain connection gives the typed error at once (AUTH refused, SELECT
            // refused, nothing listening): the ConnectionManager would instead retry with
            // backoff for any failure, auth included.
            let mut probe = client
                .get_multiplexed_async_connection_with_config(&driver_config)
                .await
                .map_err(|e| errors::map(e, "connecting", &url))?;
            redis::cmd("PING")
                .query_async::<Value>(&mut probe)
                .await
                .map_err(|e| errors::map(e, "PING after connecting", &url))?;
            drop(probe);
            let inner = match options.mode() {
                ConnectionMode::Multiplexed => {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(options.connect_timeout()))
                        .set_response_timeout(Some(options.command_timeout()))
                        // Reconnects after a drop: a few quick tries, then the next request
                        // starts over. Requests never wait past their own deadline.
                        .set_number_of_retries(3)
                        .set_min_delay(Duration::from_millis(50))
                        .set_max_delay(Duration::from_secs(1));
                    let manager = client
                        .get_connection_manager_with_config(config)
                        .await
                        .map_err(|e| errors::map(e, "connecting", &url))?;
                    Inner::Multiplexed(manager)
                }
                #[cfg(feature = "pool")]
                ConnectionMode::Pool { max_size } => Inner::Pool(crate::pool::RedisPool::new(
                    client.get_connection_info().clone(),
                    driver_config.clone(),
                    max_size,
                    options,
                )?),
                #[cfg(not(feature = "pool"))]
                ConnectionMode::Pool { max_size } => {
                    return Err(Error::config(
                        "REDIS_POOL_SIZE",
                        max_size.to_string(),
                        "the multiplexed mode: session-redis was built without the `pool` feature",
                    ));
                }
            };
            Ok::<_, Error>(inner)
        };
        let inner = tokio::time::timeout(options.connect_timeout(), connect)
            .await
            .map_err(|_| errors::timed_out("connecting", &url, options.connect_timeout()))??;
        Ok(Self {
            inner,
            url: url.into(),
            deadline: options.connect_timeout() + options.command_timeout(),
        })
    }

    /// The redacted URL, for messages.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Sends `request`; `what` names it in errors. An idempotent request that meets a
    /// dropped connection is sent once more.
    pub(crate) async fn send(
        &self,
        request: Request<'_>,
        retry: Retry,
        what: &str,
    ) -> Result<Value> {
        let first = self.send_once(&request).await;
        let result = match first {
            Err(Failure::Redis(e))
                if retry == Retry::Idempotent && errors::is_dropped_connection(&e) =>
            {
                tracing::debug!(
                    component = "session",
                    backend = BACKEND,
                    op = what,
                    error = %e,
                    "connection dropped; retrying once on a new connection"
                );
                self.send_once(&request).await
            }
            other => other,
        };
        result.map_err(|f| match f {
            Failure::Redis(e) => self.error(e, what),
            Failure::TimedOut => errors::timed_out(what, &self.url, self.deadline),
            Failure::Other(e) => e,
        })
    }

    /// Sends `request` once, bounded in time, and reports how it failed without mapping the
    /// failure: the write path decides from it whether the request may have been applied.
    pub(crate) async fn send_once(&self, request: &Request<'_>) -> Result<Value, Failure> {
        // The multiplexed driver bounds every request itself (response timeout, and a
        // connection timeout with bounded retries while it reconnects): a second timer per
        // request would cost a timer-wheel entry on the hot path for nothing. A pooled request
        // may also wait for a free connection, which only the overall deadline bounds.
        if matches!(self.inner, Inner::Multiplexed(_)) {
            return self.send_unbounded(request).await;
        }
        match tokio::time::timeout(self.deadline, self.send_unbounded(request)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::TimedOut),
        }
    }

    /// Sends `request` once, bounded by `limit` whatever the mode (the multiplexed driver may
    /// first wait for a reconnect before its response timeout starts): one timer, for the
    /// write path and its resolves.
    pub(crate) async fn send_within(
        &self,
        request: &Request<'_>,
        limit: Duration,
    ) -> Result<Value, Failure> {
        match tokio::time::timeout(limit, self.send_unbounded(request)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::TimedOut),
        }
    }

    /// A driver error met while doing `what`, as the library's error (the URL redacted).
    pub(crate) fn error(&self, e: RedisError, what: &str) -> Error {
        errors::map(e, what, &self.url)
    }

    async fn send_unbounded(&self, request: &Request<'_>) -> Result<Value, Failure> {
        match &self.inner {
            Inner::Multiplexed(manager) => {
                let mut con = manager.clone();
                request.run(&mut con).await.map_err(Failure::Redis)
            }
            #[cfg(feature = "pool")]
            Inner::Pool(pool) => pool.run(request).await,
        }
    }
}

/// Why one attempt failed.
pub(crate) enum Failure {
    Redis(RedisError),
    TimedOut,
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    Other(Error),
}

impl RedisOptions {
    /// The redis-rs [`Client`] for these options (feature `driver`): the target's address,
    /// TLS for `rediss://` (trusting [`TlsFiles::ca_file`](crate::TlsFiles) or the system
    /// store, presenting the client certificate if one is set), user name, password and
    /// database. Nothing is connected yet; connect it with [`connection_config`](Self::connection_config)
    /// so that the timeouts apply.
    ///
    /// This is how [`RedisStore::connect`](crate::RedisStore::connect) builds its client; use
    /// it for commands the store does not offer, with the same server, credentials and
    /// certificates. The `Client` type is [`redis::Client`] of the redis-rs version this crate
    /// re-exports as [`session_redis::redis`](crate::redis).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when redis-rs refuses the address, when a TLS file cannot be read or
    /// holds no certificate (`REDIS_TLS_CA_FILE`, `REDIS_TLS_CERT_FILE`,
    /// `REDIS_TLS_KEY_FILE`), or for a `rediss://` target when this crate was built without
    /// the `tls` feature. The messages show the redacted URL only.
    ///
    /// ```no_run
    /// use session_redis::RedisOptions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let options = RedisOptions::from_url("redis://localhost:6379/0")?;
    /// let mut con = options
    ///     .client()?
    ///     .get_multiplexed_async_connection_with_config(&options.connection_config())
    ///     .await?;
    /// let info: String = session_redis::redis::cmd("INFO").arg("server").query_async(&mut con).await?;
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> Result<Client> {
        let target = self.target();
        let addr = if target.tls() {
            ConnectionAddr::TcpTls {
                host: target.host().to_owned(),
                port: target.port(),
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(target.host().to_owned(), target.port())
        };
        let mut redis_info = RedisConnectionInfo::default().set_db(i64::from(target.db()));
        if let Some(user) = target.username() {
            redis_info = redis_info.set_username(user);
        }
        if let Some(password) = target.password() {
            redis_info = redis_info.set_password(password.expose());
        }
        let info: ConnectionInfo = addr
            .into_connection_info()
            .map_err(|e| bad_client(self, e))?
            .set_redis_settings(redis_info)
            .set_tcp_settings(tcp_settings());
        if target.tls() {
            tls_client(self, info)
        } else {
            Client::open(info).map_err(|e| bad_client(self, e))
        }
    }

    /// The redis-rs settings for a connection from [`client`](Self::client) (feature
    /// `driver`): the connect timeout and, as the response timeout, the command timeout.
    pub fn connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout()))
            .set_response_timeout(Some(self.command_timeout()))
    }
}

/// How long a connection may sit idle before the kernel starts probing it, and how often it
/// probes then: a peer that vanished (a host down, a cut link) is noticed within minutes
/// instead of the kernel default of two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// `TCP_NODELAY` on (redis-rs 1.x leaves Nagle's algorithm on: a small request written while
/// another is unacknowledged would wait for the ACK) and TCP keepalive on every connection.
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    let keepalive = redis::io::tcp::socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    redis::io::tcp::TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
}

fn bad_client(options: &RedisOptions, e: RedisError) -> Error {
    Error::config(
        "REDIS_URL",
        options.redacted_url(),
        format!("a usable Redis address ({e})"),
    )
}

#[cfg(feature = "tls")]
fn tls_client(options: &RedisOptions, info: ConnectionInfo) -> Result<Client> {
    crate::tls::client(options, info)
}

#[cfg(not(feature = "tls"))]
fn tls_client(options: &RedisOptions, _info: ConnectionInfo) -> Result<Client> {
    Err(Error::config(
        "REDIS_URL",
        options.redacted_url(),
        "a redis:// URL: session-redis was built without the `tls` feature",
    ))
}
