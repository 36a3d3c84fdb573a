//! The primaries behind the options, for the commands the store does not offer (SCAN +
//! UNLINK, PTTL, GET or HGETALL, INFO, CONFIG GET): the one server; the master the sentinels name
//! (`SENTINEL get-master-addr-by-name`); or every primary of a cluster (`CLUSTER NODES`),
//! with its slots, so that a key's command goes to the node that holds it.

use redis::aio::MultiplexedConnection;
use session_redis::{RedisOptions, RedisTarget};

use crate::{
    error::{CliError, CliResult},
    target::redis_error,
};

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// One primary: its address, options for a plain connection to it (the deployment's
/// credentials, TLS files and timeouts) and, in a cluster, the slot ranges it serves.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// `host:port`.
    pub(crate) address: String,
    /// Options naming this node alone.
    pub(crate) options: RedisOptions,
    /// The slot ranges (inclusive); the whole range outside a cluster.
    pub(crate) slots: Vec<(u16, u16)>,
}

impl Node {
    /// Connects a plain connection to this node.
    pub(crate) async fn connect(&self) -> CliResult<MultiplexedConnection> {
        let url = self.options.redacted_url();
        let client = self
            .options
            .client()
            .map_err(|e| CliError::from_store(e, &url))?;
        client
            .get_multiplexed_async_connection_with_config(&self.options.connection_config())
            .await
            .map_err(|e| redis_error(e, "connecting", &url))
    }

    /// Whether this node serves `slot`.
    fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }

    /// The slot ranges as `0-5460,10923-16383`.
    pub(crate) fn slots_text(&self) -> String {
        self.slots
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Options like `options` (credentials, database, TLS, TLS files, prefix, timeouts) for the
/// one server at `host:port`.
fn at(options: &RedisOptions, host: &str, port: u16) -> CliResult<RedisOptions> {
    let data = options.target();
    let target = RedisTarget::new(host, port)
        .map_err(|e| CliError::failure(format!("unusable node address {host}:{port}: {e}")))?
        .with_db(data.db())
        .with_tls(data.tls())
        .with_username(data.username().unwrap_or_default())
        .with_password(data.password().map(|p| p.expose()).unwrap_or_default());
    let node = RedisOptions::new(target)
        .with_key_prefix(options.key_prefix())
        .map_err(|e| CliError::failure(e.to_string()))?
        .with_connect_timeout(options.connect_timeout())
        .with_command_timeout(options.command_timeout())
        .with_tls_files(options.tls_files().clone());
    Ok(node)
}

/// The primaries: one for one server and for Sentinel (the current master), every master
/// of a cluster.
pub(crate) async fn primaries(options: &RedisOptions) -> CliResult<Vec<Node>> {
    if options.is_cluster() {
        return cluster_primaries(options).await;
    }
    if let Some(sentinel) = options.sentinel() {
        let (host, port) = sentinel_master(options, &sentinel.sentinels, &sentinel.master).await?;
        return Ok(vec![Node {
            address: format!("{host}:{port}"),
            options: at(options, &host, port)?,
            slots: vec![(0, SLOTS - 1)],
        }]);
    }
    let target = options.target();
    Ok(vec![Node {
        address: format!("{}:{}", target.host(), target.port()),
        options: options.clone(),
        slots: vec![(0, SLOTS - 1)],
    }])
}

/// The primary that holds `key`.
pub(crate) async fn primary_for(options: &RedisOptions, key: &str) -> CliResult<Node> {
    let slot = key_slot(key.as_bytes());
    let nodes = primaries(options).await?;
    let count = nodes.len();
    nodes
        .into_iter()
        .find(|n| count == 1 || n.serves(slot))
        .ok_or_else(|| {
            CliError::failure(format!(
                "no primary serves slot {slot} (of {key:?}) on {}: is the cluster whole?",
                options.redacted_url()
            ))
        })
}

/// Asks the sentinels in turn for the master's address.
pub(crate) async fn sentinel_master(
    options: &RedisOptions,
    sentinels: &[RedisTarget],
    master: &str,
) -> CliResult<(String, u16)> {
    let mut errors = Vec::new();
    // The sentinels' own credentials come from the first sentinel URL (as the store does).
    let first = sentinels.first();
    for sentinel in sentinels {
        let mut target = RedisTarget::new(sentinel.host(), sentinel.port())
            .map_err(|e| CliError::failure(e.to_string()))?
            .with_tls(sentinel.tls());
        if let Some(first) = first {
            target = target
                .with_username(first.username().unwrap_or_default())
                .with_password(first.password().map(|p| p.expose()).unwrap_or_default());
        }
        let node = RedisOptions::new(target)
            .with_connect_timeout(options.connect_timeout())
            .with_command_timeout(options.command_timeout())
            .with_tls_files(options.tls_files().clone());
        let url = node.redacted_url();
        let asked = async {
            let client = node.client().map_err(|e| e.to_string())?;
            let mut con = client
                .get_multiplexed_async_connection_with_config(&node.connection_config())
                .await
                .map_err(|e| e.to_string())?;
            let reply: Option<Vec<String>> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master)
                .query_async(&mut con)
                .await
                .map_err(|e| e.to_string())?;
            match reply.as_deref() {
                Some([host, port]) => port
                    .parse::<u16>()
                    .map(|port| (host.clone(), port))
                    .map_err(|_| format!("an unusable port {port:?}")),
                _ => Err(format!("no master named {master:?}")),
            }
        };
        match asked.await {
            Ok(found) => return Ok(found),
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    Err(CliError::failure(format!(
        "no sentinel named the master {master:?}: {}",
        errors.join("; ")
    ))
    .hint("check REDIS_SENTINELS, REDIS_SENTINEL_MASTER and the sentinels' credentials"))
}

/// `CLUSTER NODES` from the first seed that answers: its masters with their slots.
async fn cluster_primaries(options: &RedisOptions) -> CliResult<Vec<Node>> {
    let mut errors = Vec::new();
    for seed in options.cluster_nodes() {
        let seed_options = at(options, seed.host(), seed.port())?;
        let url = seed_options.redacted_url();
        let node = Node {
            address: format!("{}:{}", seed.host(), seed.port()),
            options: seed_options,
            slots: Vec::new(),
        };
        let text: Result<String, String> = async {
            let mut con = node.connect().await.map_err(|e| e.to_string())?;
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut con)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match text {
            Ok(text) => {
                let mut nodes = Vec::new();
                for (host, port, slots) in parse_cluster_nodes(&text) {
                    nodes.push(Node {
                        address: format!("{host}:{port}"),
                        options: at(options, &host, port)?,
                        slots,
                    });
                }
                if nodes.is_empty() {
                    errors.push(format!("{url}: CLUSTER NODES lists no primary"));
                    continue;
                }
                nodes.sort_by_key(|n| n.slots.first().copied());
                return Ok(nodes);
            }
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    Err(CliError::failure(format!(
        "no seed node of the cluster answered CLUSTER NODES: {}",
        errors.join("; ")
    ))
    .hint("check REDIS_CLUSTER_NODES and the cluster's credentials"))
}

/// A primary as `CLUSTER NODES` lists it: host, port, slot ranges.
type Listed = (String, u16, Vec<(u16, u16)>);

/// The masters of a `CLUSTER NODES` reply that are not failed: host, port and slot ranges
/// (importing/migrating markers skipped).
fn parse_cluster_nodes(text: &str) -> Vec<Listed> {
    let mut found = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_id, address, flags, ..] = fields.as_slice() else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if !flags.contains(&"master") || flags.iter().any(|f| f.starts_with("fail")) {
            continue;
        }
        // ip:port@cport[,hostname]
        let address = address.split('@').next().unwrap_or_default();
        let Some((host, port)) = address.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let slots = fields
            .iter()
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|n| (n, n)),
            })
            .collect();
        found.push((host.to_owned(), port, slots));
    }
    found
}

/// The hash slot of a key: CRC16 (XMODEM) of the key, or of its hash tag (`{...}`, when
/// not empty), modulo 16384.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis() {
        // CLUSTER KEYSLOT answers: foo 12182, bar 5061, {user1}.a and {user1}.b alike.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1}.a"), key_slot(b"user1"));
        assert_eq!(key_slot(b"{}x"), key_slot(b"{}x"));
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn cluster_nodes_lists_live_masters_with_their_slots() {
        let text = "\
a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922 [5461->-c]
c 127.0.0.1:7002@17002,host-c master,fail - 0 0 3 connected 10923-16383
d 127.0.0.1:7003@17003 slave a 0 0 1 connected
";
        let found = parse_cluster_nodes(text);
        assert_eq!(
            found,
            [
                ("127.0.0.1".to_owned(), 7000, vec![(0, 5460)]),
                ("127.0.0.1".to_owned(), 7001, vec![(5461, 10922)]),
            ]
        );
    }
}
