//! The store's connections, as [`RedisOptions`] say: one multiplexed connection
//! (`multiplexed.rs`) or a pool (`pool.rs`), behind one `send`. Both are [`Transport`]s: the
//! deadline, the retry policy and when a connection is replaced are decided in `transport.rs`,
//! once for both. Here: connecting, and the redis-rs [`Client`] every connection is made with
//! (TLS, credentials, `TCP_NODELAY` and TCP keepalive).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, Value,
};
use session_core::{Error, Result};

use crate::{
    errors,
    multiplexed::Multiplexed,
    options::{ConnectionMode, RedisOptions},
    transport::{self, Failure, Request, Retry, Timeouts, Transport},
};

/// The ways of holding connections.
#[derive(Clone)]
enum Links {
    Multiplexed(Multiplexed),
    #[cfg(feature = "pool")]
    Pool(crate::pool::RedisPool),
    #[cfg(feature = "cluster")]
    Cluster(crate::cluster::ClusterLink),
}

/// The store's connection(s). Cloning is cheap.
#[derive(Clone)]
pub(crate) struct Connection {
    links: Links,
    url: Arc<str>,
    timeouts: Timeouts,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.links {
            Links::Multiplexed(_) => "multiplexed",
            #[cfg(feature = "pool")]
            Links::Pool(_) => "pool",
            #[cfg(feature = "cluster")]
            Links::Cluster(_) => "cluster",
        };
        f.debug_struct("Connection")
            .field("url", &&*self.url)
            .field("mode", &mode)
            .finish()
    }
}

impl Connection {
    /// Connects as `options` say: TCP (+TLS), AUTH, SELECT, then PING, all within the connect
    /// timeout (and before `deadline`). In pool mode the connection that answers the PING
    /// stays in the pool.
    pub(crate) async fn connect(options: &RedisOptions, deadline: Instant) -> Result<Self> {
        let url: Arc<str> = options.redacted_url().into();
        let client = options.client()?;
        // The transport bounds every request itself: no second timer in the driver.
        let driver_config = options.connection_config().set_response_timeout(None);
        let connect_timeout = options.connect_timeout();
        let connected_by = (Instant::now() + connect_timeout).min(deadline);
        let links = match options.mode() {
            _ if options.is_cluster() => {
                cluster_links(options, connect_timeout, &url, connected_by).await?
            }
            ConnectionMode::Multiplexed => {
                // The first connection is made here, not in the background: its error is the
                // caller's (refused credentials, nothing listening), typed.
                let maker = crate::multiplexed::Maker::Direct(client);
                let maker = match options.sentinel() {
                    Some(_) => sentinel_maker(options)?,
                    None => maker,
                };
                let connect =
                    Multiplexed::connect(maker, driver_config, connect_timeout, Arc::clone(&url));
                let link = tokio::time::timeout_at(connected_by.into(), connect)
                    .await
                    .map_err(|_| errors::timed_out("connecting", &url, connect_timeout))?
                    .map_err(|e| errors::map(e, "connecting", &url))?;
                Links::Multiplexed(link)
            }
            #[cfg(feature = "pool")]
            ConnectionMode::Pool { .. } if options.sentinel().is_some() => {
                return Err(Error::config(
                    "REDIS_POOL_SIZE",
                    options.redacted_url(),
                    "the multiplexed mode with Sentinel (a pool of Sentinel-found connections is \
                     not supported yet)",
                ));
            }
            #[cfg(feature = "pool")]
            ConnectionMode::Pool { max_size } => Links::Pool(crate::pool::RedisPool::new(
                client.get_connection_info().clone(),
                driver_config,
                max_size,
                options,
                Arc::clone(&url),
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
        let conn = Self {
            links,
            url,
            timeouts: Timeouts {
                connect: connect_timeout,
                command: options.command_timeout(),
            },
        };
        let ping = redis::cmd("PING");
        conn.send_once(&Request::Cmd(&ping), connected_by)
            .await
            .map_err(|f| conn.failure(f, "PING after connecting"))?;
        Ok(conn)
    }

    /// The redacted URL, for messages.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The timeouts, and the bounds derived from them.
    pub(crate) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The deadline of one round trip started now.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + self.timeouts.round_trip()
    }

    /// Sends `request` within one round trip's bound; `what` names it in errors. An
    /// idempotent request that meets a dropped connection is sent once more.
    pub(crate) async fn send(
        &self,
        request: Request<'_>,
        retry: Retry,
        what: &str,
    ) -> Result<Value> {
        self.send_by(&request, retry, what, self.deadline()).await
    }

    /// [`send`](Self::send), ending by `deadline` at the latest.
    pub(crate) async fn send_by(
        &self,
        request: &Request<'_>,
        retry: Retry,
        what: &str,
        deadline: Instant,
    ) -> Result<Value> {
        let result = match &self.links {
            Links::Multiplexed(link) => {
                transport::send(link, self.timeouts, request, retry, deadline, &self.url).await
            }
            #[cfg(feature = "pool")]
            Links::Pool(pool) => {
                transport::send(pool, self.timeouts, request, retry, deadline, &self.url).await
            }
            #[cfg(feature = "cluster")]
            Links::Cluster(link) => {
                transport::send(link, self.timeouts, request, retry, deadline, &self.url).await
            }
        };
        result.map_err(|f| self.failure(f, what))
    }

    /// Sends `request` once, by `deadline` at the latest, and reports how it failed without
    /// mapping the failure: the write path decides from it whether the request may have been
    /// applied.
    pub(crate) async fn send_once(
        &self,
        request: &Request<'_>,
        deadline: Instant,
    ) -> Result<Value, Failure> {
        match &self.links {
            Links::Multiplexed(link) => once(link, self, request, deadline).await,
            #[cfg(feature = "pool")]
            Links::Pool(pool) => once(pool, self, request, deadline).await,
            #[cfg(feature = "cluster")]
            Links::Cluster(link) => once(link, self, request, deadline).await,
        }
    }

    /// Whether the connection is to a cluster (requests may be routed to nodes).
    pub(crate) fn is_cluster(&self) -> bool {
        match &self.links {
            #[cfg(feature = "cluster")]
            Links::Cluster(_) => true,
            _ => false,
        }
    }

    /// A driver error met while doing `what`, as the library's error (the URL redacted).
    pub(crate) fn error(&self, e: RedisError, what: &str) -> Error {
        errors::map(e, what, &self.url)
    }

    /// A failed attempt as the library's error.
    pub(crate) fn failure(&self, failure: Failure, what: &str) -> Error {
        match failure {
            Failure::Redis(e) => self.error(e, what),
            Failure::TimedOut => errors::timed_out(what, &self.url, self.timeouts.command),
            Failure::NoConnection(e) => e,
        }
    }
}

/// A maker that asks the sentinels for the master on every connect: the sentinels'
/// addresses and their own user and password (from the first sentinel URL), the data nodes'
/// user, password, database and TLS from the options' target.
#[cfg(feature = "sentinel")]
pub(crate) fn sentinel_maker(options: &RedisOptions) -> Result<crate::multiplexed::Maker> {
    use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
    let Some(sentinel) = options.sentinel() else {
        return Err(Error::config("REDIS_SENTINELS", "", "sentinel addresses"));
    };
    let bad = |e: RedisError| {
        Error::config(
            "REDIS_SENTINELS",
            options.redacted_url(),
            format!("usable sentinel addresses ({e})"),
        )
    };
    let addrs = sentinel.sentinels.iter().map(|s| {
        if s.tls() {
            ConnectionAddr::TcpTls {
                host: s.host().to_owned(),
                port: s.port(),
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(s.host().to_owned(), s.port())
        }
    });
    let mut builder =
        SentinelClientBuilder::new(addrs, &sentinel.master, SentinelServerType::Master)
            .map_err(bad)?
            .set_client_to_redis_db(i64::from(options.target().db()))
            .set_client_to_redis_tcp_settings(tcp_settings())
            .set_client_to_sentinel_tcp_settings(tcp_settings());
    let data = options.target();
    if let Some(user) = data.username() {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = data.password() {
        builder = builder.set_client_to_redis_password(password.expose());
    }
    if data.tls() {
        builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        #[cfg(feature = "tls")]
        {
            builder = builder.set_client_to_redis_certificates(crate::tls::certificates(options)?);
        }
    }
    if let Some(first) = sentinel.sentinels.first() {
        if let Some(user) = first.username() {
            builder = builder.set_client_to_sentinel_username(user);
        }
        if let Some(password) = first.password() {
            builder = builder.set_client_to_sentinel_password(password.expose());
        }
        if first.tls() {
            builder = builder.set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
        }
    }
    let client = builder.build().map_err(bad)?;
    Ok(crate::multiplexed::Maker::Sentinel(
        tokio::sync::Mutex::new(client),
    ))
}

#[cfg(not(feature = "sentinel"))]
pub(crate) fn sentinel_maker(options: &RedisOptions) -> Result<crate::multiplexed::Maker> {
    Err(Error::config(
        "REDIS_SENTINELS",
        options.redacted_url(),
        "one server: session-redis was built without the `sentinel` feature",
    ))
}

#[cfg(feature = "cluster")]
async fn cluster_links(
    options: &RedisOptions,
    connect_timeout: Duration,
    url: &Arc<str>,
    connected_by: Instant,
) -> Result<Links> {
    let connect = crate::cluster::ClusterLink::connect(options, connect_timeout, Arc::clone(url));
    let link = tokio::time::timeout_at(connected_by.into(), connect)
        .await
        .map_err(|_| errors::timed_out("connecting to the cluster", url, connect_timeout))??;
    Ok(Links::Cluster(link))
}

#[cfg(not(feature = "cluster"))]
async fn cluster_links(
    options: &RedisOptions,
    _connect_timeout: Duration,
    _url: &Arc<str>,
    _connected_by: Instant,
) -> Result<Links> {
    Err(Error::config(
        "REDIS_CLUSTER_NODES",
        options.redacted_url(),
        "one server: session-redis was built without the `cluster` feature",
    ))
}

async fn once<T: Transport>(
    transport: &T,
    conn: &Connection,
    request: &Request<'_>,
    deadline: Instant,
) -> Result<Value, Failure> {
    transport::once(transport, conn.timeouts, request, deadline, &conn.url).await
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
pub(crate) fn tcp_settings() -> redis::io::tcp::TcpSettings {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection of the store (the first, its replacements, pooled ones) is made from
    /// this client's connection info, so the settings live there.
    #[test]
    fn the_client_sets_nodelay_and_keepalive_for_every_connection() {
        let options = RedisOptions::from_url("redis://127.0.0.1:1/0").unwrap();
        let client = options.client().unwrap();
        let tcp = client.get_connection_info().tcp_settings();
        assert!(tcp.nodelay());
        assert!(tcp.keepalive().is_some());
    }
}
