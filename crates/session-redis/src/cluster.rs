//! The cluster mode (feature `cluster`): one redis-rs async cluster connection, which keeps a
//! multiplexed connection per node, follows `MOVED`/`ASK`, retries `TRYAGAIN` and refreshes
//! the slot map after a failover. It is a [`Transport`] like the others: every request is
//! bounded by the deadline of `transport.rs`, and a connection that let a request time out (or
//! dropped) is replaced by a new cluster connection, made by one caller at a time.
//!
//! Requests for one node (`SCAN` of a primary, a listing's reads of the keys found there) and
//! for every primary (`SCRIPT LOAD`) are routed here ([`RunOn`]); the topology the listing
//! walks comes from `CLUSTER SHARDS` ([`primaries`]).

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use redis::{
    RedisError, RedisResult, Value,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    cluster_routing::{
        MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo,
    },
};
use session_core::{Error, Result};

use crate::{
    errors::{self, BACKEND},
    options::RedisOptions,
    transport::{Condemned, Node, NodeRequest, Request, RunOn, Transport},
};

/// The store's cluster connection. Cloning is cheap (the state is shared).
#[derive(Clone)]
pub(crate) struct ClusterLink {
    shared: Arc<Shared>,
}

struct Shared {
    client: ClusterClient,
    /// The connection in service and its generation; `None` after one was condemned.
    current: Mutex<Option<(u64, ClusterConnection)>>,
    /// Held by the one caller making a new connection.
    connecting: tokio::sync::Mutex<()>,
    url: Arc<str>,
}

/// One request's hold on the connection.
pub(crate) struct Lease {
    generation: u64,
    conn: ClusterConnection,
}

impl ClusterLink {
    /// A cluster client for `options` (its seed nodes, the first node's credentials and TLS)
    /// and the first connection, made here so that its error is the caller's.
    pub(crate) async fn connect(
        options: &RedisOptions,
        connect_timeout: Duration,
        url: Arc<str>,
    ) -> Result<Self> {
        let client = client(options, connect_timeout)?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|e| errors::map(e, "connecting to the cluster", &url))?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                current: Mutex::new(Some((0, conn))),
                connecting: tokio::sync::Mutex::new(()),
                url,
            }),
        })
    }

    fn current(&self) -> Option<(u64, ClusterConnection)> {
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Transport for ClusterLink {
    type Lease = Lease;
    type Conn = ClusterConnection;

    async fn checkout(&self, by: Instant) -> Result<Lease> {
        if let Some((generation, conn)) = self.current() {
            return Ok(Lease { generation, conn });
        }
        let url = &self.shared.url;
        let no_connection = || Error::Unavailable {
            backend: BACKEND,
            reason: format!("{url}: no cluster connection within the connect timeout"),
            source: None,
        };
        let _guard = tokio::time::timeout_at(by.into(), self.shared.connecting.lock())
            .await
            .map_err(|_| no_connection())?;
        // Another caller may have made it while this one waited.
        if let Some((generation, conn)) = self.current() {
            return Ok(Lease { generation, conn });
        }
        let conn = tokio::time::timeout_at(by.into(), self.shared.client.get_async_connection())
            .await
            .map_err(|_| no_connection())?
            .map_err(|e| errors::map(e, "connecting to the cluster", url))?;
        let mut current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = match &*current {
            Some((g, _)) => g.wrapping_add(1),
            None => fastrand::u64(..),
        };
        *current = Some((generation, conn.clone()));
        Ok(Lease { generation, conn })
    }

    fn connection(lease: &mut Lease) -> &mut ClusterConnection {
        &mut lease.conn
    }

    fn condemn(&self, lease: Lease, why: &Condemned) {
        let mut current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|(g, _)| *g == lease.generation)
        {
            *current = None;
            tracing::debug!(
                component = "session",
                backend = BACKEND,
                reason = ?why,
                "cluster connection replaced"
            );
        }
    }
}

impl RunOn for ClusterConnection {
    async fn run_routed<'a>(&'a mut self, request: &'a Request<'a>) -> RedisResult<Value> {
        match request {
            Request::OnNode(node, NodeRequest::Cmd(cmd)) => {
                self.route_command((*cmd).clone(), by_address(node)).await
            }
            Request::OnNode(node, NodeRequest::Pipe(pipe)) => {
                let route = SingleNodeRoutingInfo::ByAddress {
                    host: node.host.clone(),
                    port: node.port,
                };
                self.route_pipeline((*pipe).clone(), 0, pipe.len(), route)
                    .await
                    .map(Value::Array)
            }
            Request::AllPrimaries(cmd) => {
                let routing = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                ));
                self.route_command((*cmd).clone(), routing).await
            }
            Request::Cmd(_) | Request::Pipe(_) | Request::Script(_) => Err(RedisError::from((
                redis::ErrorKind::Client,
                "not a routed request",
            ))),
        }
    }
}

fn by_address(node: &Node) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: node.host.clone(),
        port: node.port,
    })
}

/// The cluster client: every seed node's address, the first node's user and password, TLS
/// as the scheme says, the connect timeout, `TCP_NODELAY` and keepalive. Responses are
/// bounded by the transport (no timer of the driver's own); redis-rs retries `MOVED`, `ASK`
/// and `TRYAGAIN` within the request's time.
fn client(options: &RedisOptions, connect_timeout: Duration) -> Result<ClusterClient> {
    let first = options.target();
    let nodes: Vec<String> = options
        .cluster_nodes()
        .iter()
        .map(|node| {
            let scheme = if node.tls() { "rediss" } else { "redis" };
            format!("{scheme}://{}:{}", host_for_url(node.host()), node.port())
        })
        .collect();
    let mut builder = ClusterClientBuilder::new(nodes)
        .connection_timeout(connect_timeout)
        .tcp_settings(crate::connection::tcp_settings());
    if let Some(user) = first.username() {
        builder = builder.username(user);
    }
    if let Some(password) = first.password() {
        builder = builder.password(password.expose());
    }
    if first.tls() {
        builder = tls(options, builder)?;
    }
    builder.build().map_err(|e| {
        Error::config(
            "REDIS_CLUSTER_NODES",
            options.redacted_url(),
            format!("usable cluster node addresses ({e})"),
        )
    })
}

/// An IPv6 address in brackets, as a URL needs it.
fn host_for_url(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(feature = "tls")]
fn tls(options: &RedisOptions, builder: ClusterClientBuilder) -> Result<ClusterClientBuilder> {
    Ok(builder
        .tls(redis::TlsMode::Secure)
        .certs(crate::tls::certificates(options)?))
}

#[cfg(not(feature = "tls"))]
fn tls(options: &RedisOptions, _builder: ClusterClientBuilder) -> Result<ClusterClientBuilder> {
    Err(Error::config(
        "REDIS_CLUSTER_NODES",
        options.redacted_url(),
        "redis:// URLs: session-redis was built without the `tls` feature",
    ))
}

/// One primary and the slot ranges it serves, from `CLUSTER SHARDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Primary {
    pub(crate) node: Node,
    /// Inclusive slot ranges.
    pub(crate) slots: Vec<(u16, u16)>,
}

impl Primary {
    /// The lowest slot it serves: the order of the walk.
    pub(crate) fn first_slot(&self) -> u16 {
        self.slots.iter().map(|(a, _)| *a).min().unwrap_or(u16::MAX)
    }
}

/// Parses a `CLUSTER SHARDS` reply (RESP2: arrays of alternating names and values) into the
/// primaries that serve slots, ordered by their lowest slot.
pub(crate) fn parse_shards(reply: &Value) -> std::result::Result<Vec<Primary>, String> {
    let Value::Array(shards) = reply else {
        return Err("CLUSTER SHARDS did not answer an array".to_owned());
    };
    let mut primaries = Vec::new();
    for shard in shards {
        let slots = match field(shard, "slots") {
            Some(Value::Array(bounds)) => {
                let numbers: Vec<u16> = bounds.iter().filter_map(as_u16).collect();
                numbers
                    .chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (c[0], c[1]))
                    .collect()
            }
            _ => Vec::new(),
        };
        if slots.is_empty() {
            continue;
        }
        let Some(Value::Array(nodes)) = field(shard, "nodes") else {
            return Err("a shard without nodes".to_owned());
        };
        let primary = nodes.iter().find(|n| {
            text(field(n, "role")).as_deref() == Some("master")
                && text(field(n, "health")).as_deref() != Some("fail")
        });
        let Some(primary) = primary else {
            return Err("a shard that serves slots has no healthy primary".to_owned());
        };
        let host = text(field(primary, "ip"))
            .filter(|h| !h.is_empty() && h != "?")
            .or_else(|| text(field(primary, "endpoint")))
            .ok_or("a primary without an address")?;
        let port = field(primary, "port")
            .and_then(as_u16)
            .or_else(|| field(primary, "tls-port").and_then(as_u16))
            .ok_or("a primary without a port")?;
        primaries.push(Primary {
            node: Node { host, port },
            slots,
        });
    }
    primaries.sort_by_key(Primary::first_slot);
    Ok(primaries)
}

/// The value after `name` in a flat name/value array (or a RESP3 map).
fn field<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    match value {
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| text(pair.first()).as_deref() == Some(name))
            .and_then(|pair| pair.get(1)),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(Some(k)).as_deref() == Some(name))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn as_u16(value: &Value) -> Option<u16> {
    match value {
        Value::Int(n) => u16::try_from(*n).ok(),
        other => text(Some(other)).and_then(|t| t.parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn node(role: &str, ip: &str, port: i64, health: &str) -> Value {
        Value::Array(vec![
            bulk("id"),
            bulk("abc"),
            bulk("port"),
            Value::Int(port),
            bulk("ip"),
            bulk(ip),
            bulk("endpoint"),
            bulk(ip),
            bulk("role"),
            bulk(role),
            bulk("health"),
            bulk(health),
        ])
    }

    #[test]
    fn shards_give_the_healthy_primaries_in_slot_order() {
        let shard = |lo: i64, hi: i64, nodes: Vec<Value>| {
            Value::Array(vec![
                bulk("slots"),
                Value::Array(vec![Value::Int(lo), Value::Int(hi)]),
                bulk("nodes"),
                Value::Array(nodes),
            ])
        };
        let reply = Value::Array(vec![
            shard(
                10923,
                16383,
                vec![
                    node("master", "127.0.0.1", 7003, "fail"),
                    node("master", "127.0.0.1", 7006, "online"),
                ],
            ),
            shard(
                0,
                5460,
                vec![
                    node("replica", "127.0.0.1", 7004, "online"),
                    node("master", "127.0.0.1", 7001, "online"),
                ],
            ),
            // A shard without slots (a primary with nothing assigned) is not walked.
            Value::Array(vec![
                bulk("slots"),
                Value::Array(vec![]),
                bulk("nodes"),
                Value::Array(vec![node("master", "127.0.0.1", 7009, "online")]),
            ]),
        ]);
        let primaries = parse_shards(&reply).unwrap();
        let ports: Vec<u16> = primaries.iter().map(|p| p.node.port).collect();
        assert_eq!(ports, [7001, 7006]);
        assert_eq!(primaries[1].slots, [(10923, 16383)]);
    }
}
