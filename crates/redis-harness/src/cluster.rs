//! A throwaway Redis Cluster: primaries and replicas on free loopback ports, formed with the
//! cluster protocol itself (`CLUSTER ADDSLOTSRANGE`, `MEET`, `REPLICATE`; no `redis-cli`
//! needed, so a Valkey machine without it works too), faults by pid, slot migration by
//! `SETSLOT`/`MIGRATE`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::group::{PORT_ATTEMPTS, Ports, fresh_dir, info_field, kill_9, port_was_taken, wait_for};
use crate::resp::command_items;
use crate::server::{RedisServer, ServerOptions, new_temp_dir};

/// The number of hash slots of a Redis Cluster: every key lives in slot
/// [`key_slot`]`(key)`, `0..SLOTS`.
pub const SLOTS: u16 = 16384;

/// How long forming the cluster (or a node's rejoining) may take. A primary reports
/// `cluster_state:ok` at the earliest 2 s after it started (Redis' writable delay).
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// How many keys one `MIGRATE` moves.
const MIGRATE_BATCH: &str = "100";
/// `MIGRATE`'s own timeout, in milliseconds.
const MIGRATE_TIMEOUT_MS: &str = "5000";

/// How to start a [`RedisCluster`]. The default: 3 primaries, 1 replica each, a node timeout
/// of 2 s, no persistence, no password, in a new temporary directory.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The server binary (`redis-server` or `valkey-server`). Default:
    /// `$SESSION_TEST_REDIS_SERVER`, else `redis-server` on `PATH`.
    pub binary: Option<PathBuf>,
    /// How many primaries share the 16384 slots, in equal ranges. A failover needs a majority
    /// of the primaries to vote, so fault tests want at least 3.
    pub primaries: usize,
    /// How many replicas each primary has.
    pub replicas_per_primary: usize,
    /// `cluster-node-timeout`: how long a node may not answer before it counts as failing.
    /// A replica takes over about one to two timeouts after its primary died.
    pub node_timeout: Duration,
    /// Persist with an append-only file on every node, so [`RedisCluster::restart`] keeps the
    /// data of a primary restarted before any failover.
    pub appendonly: bool,
    /// `save` (RDB snapshots), e.g. `"60 1"`. Default: none (`save ""`).
    pub save: Option<String>,
    /// Require this password on every node (`requirepass`, and `masterauth` for the
    /// replication links).
    pub password: Option<String>,
    /// The parent of the node directories (`node-0/`, `node-1/` ...: `nodes.conf`, log, AOF).
    /// Default: a new temporary directory, removed when the cluster is dropped. A given
    /// directory is created if needed and never removed; the `node-N/` directories in it are
    /// emptied at start.
    pub dir: Option<PathBuf>,
    /// More server arguments for every node, appended last (so they win).
    pub extra_args: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            binary: None,
            primaries: 3,
            replicas_per_primary: 1,
            node_timeout: Duration::from_millis(2000),
            appendonly: false,
            save: None,
            password: None,
            dir: None,
            extra_args: Vec::new(),
        }
    }
}

/// One node as a node of the cluster sees it: a line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNodeInfo {
    /// The node id (40 hex digits).
    pub id: String,
    /// The node's client address.
    pub addr: SocketAddr,
    /// The flags: `myself`, `master`, `slave`, `fail?` (suspected), `fail`, `handshake` ...
    pub flags: Vec<String>,
    /// The id of its primary, for a replica.
    pub primary_id: Option<String>,
    /// The slot ranges it serves, inclusive (slots being imported or migrated are left out).
    pub slots: Vec<(u16, u16)>,
    /// Whether the cluster bus link to it is connected.
    pub connected: bool,
}

impl ClusterNodeInfo {
    /// Whether it has the flag `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Whether it is a primary (flag `master`).
    pub fn is_primary(&self) -> bool {
        self.has_flag("master")
    }

    /// Whether it is a replica (flag `slave`).
    pub fn is_replica(&self) -> bool {
        self.has_flag("slave")
    }

    /// Whether it is suspected (`fail?`) or known (`fail`) to be failing.
    pub fn is_failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }

    /// Whether it serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|&(first, last)| (first..=last).contains(&slot))
    }

    /// How many slots it serves.
    pub fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|&(first, last)| usize::from(last - first) + 1)
            .sum()
    }

    /// Parses one line of `CLUSTER NODES`: `<id> <ip:port@cport[,hostname]> <flags> <primary>
    /// <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> ...`. `None` for a line
    /// without a usable address (a node still in its handshake may have none).
    fn parse(line: &str) -> Option<ClusterNodeInfo> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [id, addr, flags, primary, _, _, _, link, slots @ ..] = fields.as_slice() else {
            return None;
        };
        let addr = addr.split(['@', ',']).next()?.parse().ok()?;
        let slots = slots
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((first, last)) => Some((first.parse().ok()?, last.parse().ok()?)),
                None => s.parse().ok().map(|slot| (slot, slot)),
            })
            .collect();
        Some(ClusterNodeInfo {
            id: (*id).to_owned(),
            addr,
            flags: flags.split(',').map(str::to_owned).collect(),
            primary_id: (*primary != "-").then(|| (*primary).to_owned()),
            slots,
            connected: *link == "connected",
        })
    }
}

/// All the nodes one node knows, from its `CLUSTER NODES` reply.
fn parse_nodes(text: &str) -> Vec<ClusterNodeInfo> {
    text.lines().filter_map(ClusterNodeInfo::parse).collect()
}

/// The hash slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag (the part between the
/// first `{` and the next `}`, when not empty), modulo [`SLOTS`].
pub fn key_slot(key: &[u8]) -> u16 {
    let tag = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = key.get(open + 1..)?;
        let len = rest.iter().position(|&b| b == b'}')?;
        (len > 0).then(|| &rest[..len])
    });
    crc16(tag.unwrap_or(key)) % SLOTS
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
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

/// The slot range primary `index` of `primaries` gets at creation: equal shares, in order.
fn slot_range(index: usize, primaries: usize) -> (u16, u16) {
    let slots = usize::from(SLOTS);
    let first = index * slots / primaries;
    let last = (index + 1) * slots / primaries - 1;
    // Both are below SLOTS, which fits a u16.
    (
        u16::try_from(first).unwrap_or(SLOTS - 1),
        u16::try_from(last).unwrap_or(SLOTS - 1),
    )
}

#[derive(Debug)]
struct Node {
    index: usize,
    server: RedisServer,
    bus_port: u16,
    id: String,
    /// Killed or stopped through the cluster, not started again yet.
    down: bool,
}

impl Node {
    fn command(&self, args: &[&str]) -> io::Result<String> {
        self.server
            .command(args)
            .map_err(|err| io::Error::new(err.kind(), format!("{self}: {}: {err}", args.join(" "))))
    }

    /// `CLUSTER NODES` as this node sees it.
    fn view(&self) -> io::Result<Vec<ClusterNodeInfo>> {
        Ok(parse_nodes(&self.command(&["CLUSTER", "NODES"])?))
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} ({})", self.index, self.server.addr())
    }
}

/// A running Redis Cluster of throwaway servers on `127.0.0.1`: nodes `0..primaries` are the
/// primaries at start, the rest their replicas (node `primaries + k` replicates primary
/// `k % primaries`). Every node runs with `--cluster-enabled yes`, its own `nodes.conf`, a
/// short node timeout, `cluster-replica-validity-factor 0` (a replica always may take over)
/// and the persistence of [`ClusterOptions`].
///
/// Nodes are named by their index, which stays the same across kills, failovers and restarts;
/// which nodes are primaries now comes from the cluster ([`primaries`](Self::primaries),
/// [`topology`](Self::topology)). Dropping the cluster kills its processes (by pid, `kill
/// -9`: nothing of a throwaway cluster needs a clean shutdown) and removes its temporary
/// directory.
///
/// ```no_run
/// use redis_harness::{ClusterOptions, RedisCluster, key_slot};
///
/// # fn main() -> std::io::Result<()> {
/// let mut cluster = RedisCluster::start(ClusterOptions::default())?;
/// cluster.command_for_key("greeting", &["SET", "greeting", "hello"])?;
/// let slot = key_slot(b"greeting");
/// let killed = cluster.kill_primary_of(slot)?; // kill -9
/// let promoted = cluster.wait_for_failover(slot)?; // its replica serves the slot now
/// assert_ne!(killed, promoted);
/// cluster.restart(killed)?; // rejoins as a replica of `promoted`
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    root: PathBuf,
    owns_root: bool,
    options: ClusterOptions,
}

impl RedisCluster {
    /// Starts the nodes, forms the cluster and waits until every node says `cluster_state:ok`,
    /// knows every other node, agrees with the others about roles and slots, and every replica
    /// is attached (`master_link_status:up`).
    ///
    /// Errors say which node failed and how (with the tail of its log for a node that did not
    /// start), or which condition the cluster did not reach in time.
    pub fn start(options: ClusterOptions) -> io::Result<RedisCluster> {
        if options.primaries == 0 || options.primaries > usize::from(SLOTS) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a cluster needs 1 to {SLOTS} primaries, not {}",
                    options.primaries
                ),
            ));
        }
        let (root, owns_root) = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (dir.clone(), false)
            }
            None => (new_temp_dir()?, true),
        };
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            root,
            owns_root,
            options,
        };
        // From here on, dropping `cluster` on an error stops what started and cleans up.
        let total = cluster.options.primaries * (1 + cluster.options.replicas_per_primary);
        let mut ports = Ports::default();
        for index in 0..total {
            let node = cluster.start_node(index, &mut ports)?;
            cluster.nodes.push(node);
        }
        cluster.form()?;
        Ok(cluster)
    }

    fn start_node(&self, index: usize, ports: &mut Ports) -> io::Result<Node> {
        let dir = self.root.join(format!("node-{index}"));
        fresh_dir(&dir)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = ports.pick()?;
            let bus_port = ports.pick()?;
            let options = &self.options;
            let mut args: Vec<String> = vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                dir.join("nodes.conf").display().to_string(),
                "--cluster-node-timeout".into(),
                options.node_timeout.as_millis().to_string(),
                // Not port + 10000, which may not exist: any free port.
                "--cluster-port".into(),
                bus_port.to_string(),
                "--cluster-replica-validity-factor".into(),
                "0".into(),
                // A replica's first sync starts at once, not after 5 s of waiting for more.
                "--repl-diskless-sync-delay".into(),
                "0".into(),
                // Else a node that met nobody yet (a cluster of one) reports no address.
                "--cluster-announce-ip".into(),
                "127.0.0.1".into(),
            ];
            if let Some(password) = &options.password {
                args.extend(["--masterauth".into(), password.clone()]);
            }
            if let Some(save) = &options.save {
                args.extend(["--save".into(), save.clone()]);
            }
            args.extend(options.extra_args.iter().cloned());
            let started = RedisServer::start(ServerOptions {
                binary: options.binary.clone(),
                appendonly: options.appendonly,
                password: options.password.clone(),
                dir: Some(dir.clone()),
                port: Some(port),
                extra_args: args,
                ..ServerOptions::default()
            });
            match started {
                Ok(server) => {
                    let mut node = Node {
                        index,
                        server,
                        bus_port,
                        id: String::new(),
                        down: false,
                    };
                    node.id = node.command(&["CLUSTER", "MYID"])?;
                    return Ok(node);
                }
                Err(err) if attempt < PORT_ATTEMPTS && port_was_taken(&err) => {}
                Err(err) => {
                    return Err(io::Error::new(
                        err.kind(),
                        format!("cluster node {index}: {err}"),
                    ));
                }
            }
        }
    }

    /// Slots, handshakes, replicas, then the wait for a healthy cluster.
    fn form(&self) -> io::Result<()> {
        let primaries = self.options.primaries;
        for node in &self.nodes {
            // Distinct epochs up front, as redis-cli does: no epoch collisions to resolve.
            node.command(&["CLUSTER", "SET-CONFIG-EPOCH", &(node.index + 1).to_string()])?;
        }
        for node in &self.nodes[..primaries] {
            let (first, last) = slot_range(node.index, primaries);
            node.command(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ])?;
        }
        let Some((first, others)) = self.nodes.split_first() else {
            return Ok(());
        };
        for node in others {
            first.command(&[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &node.server.port().to_string(),
                &node.bus_port.to_string(),
            ])?;
        }
        wait_for(
            "cluster creation: every node to know every other",
            FORM_TIMEOUT,
            || {
                for node in &self.nodes {
                    let view = node.view().map_err(|e| e.to_string())?;
                    for other in &self.nodes {
                        match view.iter().find(|entry| entry.id == other.id) {
                            Some(entry) if !entry.has_flag("handshake") => {}
                            _ => return Err(format!("{node} does not know {other} yet")),
                        }
                    }
                }
                Ok(())
            },
        )?;
        for replica in &self.nodes[primaries..] {
            let primary = &self.nodes[(replica.index - primaries) % primaries];
            replica.command(&["CLUSTER", "REPLICATE", &primary.id])?;
        }
        self.wait_until_ok()
    }

    /// How many nodes the cluster has (primaries and replicas, up or down).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The client address of node `node`. Panics if `node` is not below
    /// [`node_count`](Self::node_count) (like every method taking a node index).
    pub fn addr(&self, node: usize) -> SocketAddr {
        self.nodes[node].server.addr()
    }

    /// The client port of node `node`.
    pub fn port(&self, node: usize) -> u16 {
        self.nodes[node].server.port()
    }

    /// The cluster bus port of node `node`.
    pub fn bus_port(&self, node: usize) -> u16 {
        self.nodes[node].bus_port
    }

    /// The process id of node `node` (of its latest start).
    pub fn pid(&self, node: usize) -> u32 {
        self.nodes[node].server.pid()
    }

    /// The node id of node `node` (stays the same across restarts: it is in its
    /// `nodes.conf`).
    pub fn id(&self, node: usize) -> &str {
        &self.nodes[node].id
    }

    /// `redis://127.0.0.1:PORT` of node `node` (with the password, like
    /// [`RedisServer::url`]).
    pub fn url(&self, node: usize) -> String {
        self.nodes[node].server.url()
    }

    /// The URLs of every node, in index order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.server.url()).collect()
    }

    /// The URLs of the primaries now, in index order: what
    /// [`CLUSTER_NODES`](crate::env::CLUSTER_NODES) holds.
    pub fn primary_urls(&self) -> io::Result<Vec<String>> {
        Ok(self
            .primaries()?
            .into_iter()
            .map(|node| self.url(node))
            .collect())
    }

    /// The server process of node `node`: its directory, log, pid ...
    pub fn server(&self, node: usize) -> &RedisServer {
        &self.nodes[node].server
    }

    /// Whether node `node` was killed or stopped through the cluster and not started again.
    pub fn is_down(&self, node: usize) -> bool {
        self.nodes[node].down
    }

    /// The directory holding the `node-N/` directories.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The password every node requires, if any.
    pub fn password(&self) -> Option<&str> {
        self.options.password.as_deref()
    }

    /// The index of the node with id `id`, if it is one of this cluster's.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.id == id)
    }

    /// The cluster as the first node that is up and answers sees it (`CLUSTER NODES`).
    pub fn topology(&self) -> io::Result<Vec<ClusterNodeInfo>> {
        let mut last = None;
        for node in self.nodes.iter().filter(|node| !node.down) {
            match node.view() {
                Ok(view) => return Ok(view),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("every node of the cluster is down")))
    }

    /// The nodes that are primaries serving slots now (as [`topology`](Self::topology) sees
    /// it), in index order.
    pub fn primaries(&self) -> io::Result<Vec<usize>> {
        let view = self.topology()?;
        Ok(self.indices(&view, |entry| {
            entry.is_primary() && !entry.is_failing() && !entry.slots.is_empty()
        }))
    }

    /// The nodes that are replicas now, in index order.
    pub fn replicas(&self) -> io::Result<Vec<usize>> {
        let view = self.topology()?;
        Ok(self.indices(&view, ClusterNodeInfo::is_replica))
    }

    /// The replicas of node `primary` now, in index order.
    pub fn replicas_of(&self, primary: usize) -> io::Result<Vec<usize>> {
        let view = self.topology()?;
        let id = &self.nodes[primary].id;
        Ok(self.indices(&view, |entry| entry.primary_id.as_ref() == Some(id)))
    }

    fn indices(
        &self,
        view: &[ClusterNodeInfo],
        keep: impl Fn(&ClusterNodeInfo) -> bool,
    ) -> Vec<usize> {
        self.nodes
            .iter()
            .filter(|node| view.iter().any(|entry| entry.id == node.id && keep(entry)))
            .map(|node| node.index)
            .collect()
    }

    /// The node serving `slot` now (as [`topology`](Self::topology) sees it: right after a
    /// kill, still the killed node).
    pub fn primary_of_slot(&self, slot: u16) -> io::Result<usize> {
        let view = self.topology()?;
        view.iter()
            .find(|entry| entry.is_primary() && entry.serves(slot))
            .and_then(|entry| self.index_of(&entry.id))
            .ok_or_else(|| io::Error::other(format!("no node of the cluster serves slot {slot}")))
    }

    /// The node serving the slot of `key` now.
    pub fn node_for_key(&self, key: &str) -> io::Result<usize> {
        self.primary_of_slot(key_slot(key.as_bytes()))
    }

    /// The server process of node `node` (by index, as [`command`](Self::command) takes it).
    pub fn node(&self, node: usize) -> &RedisServer {
        &self.nodes[node].server
    }

    /// Sends one command to node `node` (see [`RedisServer::command`]). A key of another
    /// node's slot is answered with an error `MOVED <slot> <addr>`.
    pub fn command(&self, node: usize, args: &[&str]) -> io::Result<String> {
        self.nodes[node].command(args)
    }

    /// Sends one command to the node serving the slot of `key`.
    pub fn command_for_key(&self, key: &str, args: &[&str]) -> io::Result<String> {
        let node = self.node_for_key(key)?;
        self.command(node, args)
    }

    /// `kill -9` of node `node`'s process, by its pid; returns once the process is gone. The
    /// cluster notices after the node timeout.
    pub fn kill(&mut self, node: usize) -> io::Result<()> {
        let target = &mut self.nodes[node];
        if target.server.is_running() {
            kill_9(target.server.pid())?;
            wait_for(
                &format!("{target} to exit"),
                FORM_TIMEOUT,
                || match target.server.is_running() {
                    true => Err("still running".to_owned()),
                    false => Ok(()),
                },
            )?;
        }
        target.down = true;
        Ok(())
    }

    /// Kills (`kill -9`) the primary serving `slot` now and returns its index.
    pub fn kill_primary_of(&mut self, slot: u16) -> io::Result<usize> {
        let node = self.primary_of_slot(slot)?;
        self.kill(node)?;
        Ok(node)
    }

    /// Stops node `node` (`SHUTDOWN`, see [`RedisServer::stop`]).
    pub fn stop(&mut self, node: usize) -> io::Result<()> {
        let target = &mut self.nodes[node];
        target.server.stop()?;
        target.down = true;
        Ok(())
    }

    /// Starts node `node` again (stopping it first if it runs), on the same ports, in the same
    /// directory, with the same node id, and waits until the cluster is healthy again
    /// ([`wait_until_ok`](Self::wait_until_ok)). A primary that was failed over comes back
    /// as a replica of the node that took its slots.
    pub fn restart(&mut self, node: usize) -> io::Result<()> {
        let target = &mut self.nodes[node];
        target.server.restart()?;
        target.down = false;
        self.wait_until_ok()
    }

    /// Waits until a node that is up serves `slot` (after [`kill_primary_of`]: one of the
    /// killed primary's replicas, promoted) and the cluster is healthy
    /// ([`wait_until_ok`](Self::wait_until_ok)); returns that node.
    ///
    /// [`kill_primary_of`]: Self::kill_primary_of
    pub fn wait_for_failover(&self, slot: u16) -> io::Result<usize> {
        wait_for(
            &format!("failover of slot {slot}"),
            self.fault_timeout(),
            || {
                let view = self.health()?;
                view.iter()
                    .find(|entry| entry.is_primary() && entry.serves(slot))
                    .and_then(|entry| self.index_of(&entry.id))
                    .ok_or_else(|| format!("no node serves slot {slot}"))
            },
        )
    }

    /// Waits until the cluster is healthy: every node that is up says `cluster_state:ok`,
    /// knows every other node that is up without flagging it failing, and agrees with the
    /// others about roles and slots; primaries that are up serve all 16384 slots; and every
    /// replica that is up is attached to its primary (`master_link_status:up`).
    pub fn wait_until_ok(&self) -> io::Result<()> {
        wait_for("a healthy cluster", self.fault_timeout(), || {
            self.health().map(drop)
        })
    }

    fn fault_timeout(&self) -> Duration {
        FORM_TIMEOUT.max(self.options.node_timeout * 15)
    }

    /// `Ok(view)` when the cluster is healthy (see [`wait_until_ok`]), else why not.
    ///
    /// [`wait_until_ok`]: Self::wait_until_ok
    fn health(&self) -> Result<Vec<ClusterNodeInfo>, String> {
        type Entry = (String, bool, Option<String>, Vec<(u16, u16)>);
        let up: Vec<&Node> = self.nodes.iter().filter(|node| !node.down).collect();
        let mut agreed: Option<(&Node, Vec<Entry>, Vec<ClusterNodeInfo>)> = None;
        for node in &up {
            let info = node
                .command(&["CLUSTER", "INFO"])
                .map_err(|e| e.to_string())?;
            let state = info_field(&info, "cluster_state").unwrap_or("?");
            if state != "ok" {
                return Err(format!("{node} says cluster_state:{state}"));
            }
            let view = node.view().map_err(|e| e.to_string())?;
            let mut entries = Vec::new();
            for other in &up {
                let entry = view
                    .iter()
                    .find(|entry| entry.id == other.id)
                    .ok_or_else(|| format!("{node} does not know {other}"))?;
                if entry.is_failing() || entry.has_flag("handshake") || entry.has_flag("noaddr") {
                    return Err(format!("{node} flags {other} {}", entry.flags.join(",")));
                }
                entries.push((
                    entry.id.clone(),
                    entry.is_primary(),
                    entry.primary_id.clone(),
                    entry.slots.clone(),
                ));
            }
            let served: usize = view
                .iter()
                .filter(|entry| entry.is_primary() && up.iter().any(|n| n.id == entry.id))
                .map(ClusterNodeInfo::slot_count)
                .sum();
            if served != usize::from(SLOTS) {
                return Err(format!(
                    "{node}: the primaries that are up serve {served} of {SLOTS} slots"
                ));
            }
            match &agreed {
                None => agreed = Some((node, entries, view)),
                Some((first, first_entries, _)) if *first_entries != entries => {
                    return Err(format!("{node} and {first} disagree about roles or slots"));
                }
                Some(_) => {}
            }
        }
        let Some((_, entries, view)) = agreed else {
            return Err("every node of the cluster is down".to_owned());
        };
        for (id, is_primary, _, _) in &entries {
            if *is_primary {
                continue;
            }
            let Some(replica) = up.iter().find(|node| node.id == *id) else {
                continue;
            };
            let info = replica
                .command(&["INFO", "replication"])
                .map_err(|e| e.to_string())?;
            let link = info_field(&info, "master_link_status").unwrap_or("?");
            if link != "up" {
                return Err(format!("{replica}: master_link_status:{link}"));
            }
        }
        Ok(view)
    }

    /// Moves `slot` to node `to` (a primary), keys and all, the way `redis-cli --cluster
    /// reshard` does: `SETSLOT IMPORTING` on `to`, `SETSLOT MIGRATING` on the owner, `MIGRATE`
    /// of its keys in batches, then `SETSLOT NODE` on both and the other primaries; waits until
    /// every node that is up sees `to` serving it. Meanwhile clients meet `ASK` redirections,
    /// as during any resharding, so a test can list keys while it runs (from another thread:
    /// the method takes `&self`). Keys must be UTF-8 (every session key is).
    pub fn migrate_slot(&self, slot: u16, to: usize) -> io::Result<()> {
        self.check_slot(slot)?;
        let from = self.primary_of_slot(slot)?;
        if from == to {
            return Ok(());
        }
        self.check_target(to)?;
        self.move_slot(slot, from, to)?;
        self.wait_for_owner(&[slot], to)
    }

    /// Moves the first `count` slots node `from` serves (fewer when it serves fewer) to node
    /// `to`, one after the other like [`migrate_slot`](Self::migrate_slot); returns them.
    pub fn migrate_slots(&self, from: usize, to: usize, count: usize) -> io::Result<Vec<u16>> {
        if from == to {
            return Ok(Vec::new());
        }
        self.check_target(to)?;
        let view = self.topology()?;
        let source = view
            .iter()
            .find(|entry| entry.id == self.nodes[from].id)
            .ok_or_else(|| {
                io::Error::other(format!("{} is unknown to the cluster", self.nodes[from]))
            })?;
        let slots: Vec<u16> = source
            .slots
            .iter()
            .flat_map(|&(first, last)| first..=last)
            .take(count)
            .collect();
        for &slot in &slots {
            self.move_slot(slot, from, to)?;
        }
        self.wait_for_owner(&slots, to)?;
        Ok(slots)
    }

    fn check_slot(&self, slot: u16) -> io::Result<()> {
        match slot < SLOTS {
            true => Ok(()),
            false => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("slot {slot} does not exist (0 to {})", SLOTS - 1),
            )),
        }
    }

    fn check_target(&self, to: usize) -> io::Result<()> {
        let target = &self.nodes[to];
        let view = self.topology()?;
        match view.iter().find(|entry| entry.id == target.id) {
            Some(entry) if entry.is_primary() && !target.down => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{target} is not a primary that is up: slots can only move to one"),
            )),
        }
    }

    fn move_slot(&self, slot: u16, from: usize, to: usize) -> io::Result<()> {
        let (source, target) = (&self.nodes[from], &self.nodes[to]);
        let context = |err: io::Error| {
            io::Error::new(
                err.kind(),
                format!("migrating slot {slot} from {source} to {target}: {err}"),
            )
        };
        let slot_arg = slot.to_string();
        let slot_arg = slot_arg.as_str();
        target
            .command(&["CLUSTER", "SETSLOT", slot_arg, "IMPORTING", &source.id])
            .map_err(context)?;
        source
            .command(&["CLUSTER", "SETSLOT", slot_arg, "MIGRATING", &target.id])
            .map_err(context)?;
        let target_port = target.server.port().to_string();
        loop {
            let keys = command_items(
                source.server.addr(),
                self.password(),
                &["CLUSTER", "GETKEYSINSLOT", slot_arg, MIGRATE_BATCH],
            )
            .map_err(context)?;
            if keys.is_empty() {
                break;
            }
            let mut args = vec![
                "MIGRATE",
                "127.0.0.1",
                &target_port,
                "",
                "0",
                MIGRATE_TIMEOUT_MS,
            ];
            if let Some(password) = self.password() {
                args.extend(["AUTH", password]);
            }
            args.push("KEYS");
            args.extend(keys.iter().map(String::as_str));
            source.command(&args).map_err(context)?;
        }
        // The target first: once it owns the slot, the source's redirections point there.
        for node in [target, source] {
            node.command(&["CLUSTER", "SETSLOT", slot_arg, "NODE", &target.id])
                .map_err(context)?;
        }
        for node in self
            .nodes
            .iter()
            .filter(|n| !n.down && n.index != from && n.index != to)
        {
            // Only to speed things up (the bumped epoch reaches everyone by gossip anyway),
            // and only primaries accept it: errors do not matter.
            let _ = node.command(&["CLUSTER", "SETSLOT", slot_arg, "NODE", &target.id]);
        }
        Ok(())
    }

    fn wait_for_owner(&self, slots: &[u16], to: usize) -> io::Result<()> {
        let target = &self.nodes[to];
        wait_for(
            &format!("every node to see {target} serving the migrated slots"),
            self.fault_timeout(),
            || {
                for node in self.nodes.iter().filter(|node| !node.down) {
                    let view = node.view().map_err(|e| e.to_string())?;
                    let entry = view.iter().find(|entry| entry.id == target.id);
                    if let Some(slot) = slots
                        .iter()
                        .find(|&&slot| !entry.is_some_and(|e| e.serves(slot)))
                    {
                        return Err(format!("{node} does not see slot {slot} at {target} yet"));
                    }
                }
                Ok(())
            },
        )
    }

    /// Leaves the nodes running after this value is gone: returns their pids (in index order)
    /// and keeps their directories. For `cargo xtask cluster start`; whoever detaches must
    /// stop the pids later.
    pub fn detach(mut self) -> Vec<u32> {
        self.owns_root = false;
        std::mem::take(&mut self.nodes)
            .into_iter()
            .map(|node| node.server.detach())
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            // Errors cannot be reported from drop; the server's own drop escalates anyway.
            if node.server.is_running() {
                let _ = kill_9(node.server.pid());
            }
        }
        // Each server's drop reaps its process.
        self.nodes.clear();
        if self.owns_root {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_of_redis() {
        // The reference values of the Redis Cluster specification and CLUSTER KEYSLOT.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn slots_are_shared_in_equal_ranges() {
        assert_eq!(slot_range(0, 1), (0, 16383));
        assert_eq!(slot_range(0, 3), (0, 5460));
        assert_eq!(slot_range(1, 3), (5461, 10921));
        assert_eq!(slot_range(2, 3), (10922, 16383));
    }

    #[test]
    fn cluster_nodes_lines_parse() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1] 16000
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 handshake - 0 0 0 disconnected
";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 3, "the node without an address is left out");
        assert!(nodes[0].is_replica());
        assert_eq!(
            nodes[0].primary_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert_eq!(nodes[0].addr.port(), 30004);
        assert!(nodes[1].is_primary() && nodes[1].serves(10922) && !nodes[1].serves(10923));
        assert_eq!(nodes[2].slots, [(0, 5460), (16000, 16000)]);
        assert_eq!(nodes[2].slot_count(), 5462);
        assert!(nodes[2].has_flag("myself") && nodes[2].connected);
    }
}
