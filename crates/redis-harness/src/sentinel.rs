//! A throwaway Sentinel setup: a master, a replica and sentinels monitoring them, on free
//! loopback ports; failovers asked for (`SENTINEL FAILOVER`) or caused (`kill -9`).

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::group::{
    PORT_ATTEMPTS, Ports, fresh_dir, info_field, kill_9, pair_value, port_was_taken, wait_for,
};
use crate::resp::command_at;
use crate::server::{
    RedisServer, ServerOptions, new_temp_dir, percent_encode, resolve_binary, wait_for_exit,
};

/// How long the set may take to form: the sentinels find each other through hello messages
/// they publish every 2 s.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a sentinel may take to answer its first `PING`.
const SENTINEL_STARTUP: Duration = Duration::from_secs(20);
/// A sentinel's log: its stdout and stderr.
const LOG_FILE: &str = "sentinel.log";
/// A sentinel's configuration (it rewrites the file as it learns).
const CONFIG_FILE: &str = "sentinel.conf";

/// How to start a [`SentinelSet`]. The default: master `mymaster` with one replica, 3
/// sentinels with a quorum of 2, down after 1 s, failover timeout 5 s, no passwords, no
/// persistence, in a new temporary directory.
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    /// The server binary (`redis-server` or `valkey-server`), for the data nodes and, with
    /// `--sentinel`, for the sentinels. Default: `$SESSION_TEST_REDIS_SERVER`, else
    /// `redis-server` on `PATH`.
    pub binary: Option<PathBuf>,
    /// The name the sentinels monitor the master under.
    pub master_name: String,
    /// How many replicas the master has at start.
    pub replicas: usize,
    /// How many sentinels run.
    pub sentinels: usize,
    /// How many sentinels must agree that the master is down before a failover.
    pub quorum: usize,
    /// `down-after-milliseconds`: how long the master may not answer before a sentinel
    /// considers it down.
    pub down_after: Duration,
    /// `failover-timeout`.
    pub failover_timeout: Duration,
    /// The password of the data nodes (`requirepass` and `masterauth`; the sentinels get it as
    /// `auth-pass`).
    pub password: Option<String>,
    /// The password of the sentinels themselves (`requirepass` and `sentinel sentinel-pass` in
    /// their configuration), separate from the data nodes'.
    pub sentinel_password: Option<String>,
    /// Persist the data nodes with an append-only file.
    pub appendonly: bool,
    /// The parent of the node directories (`data-0/`, `data-1/`, `sentinel-0/` ...). Default:
    /// a new temporary directory, removed when the set is dropped. A given directory is created
    /// if needed and never removed; the node directories in it are emptied at start.
    pub dir: Option<PathBuf>,
}

impl Default for SentinelOptions {
    fn default() -> Self {
        SentinelOptions {
            binary: None,
            master_name: "mymaster".to_owned(),
            replicas: 1,
            sentinels: 3,
            quorum: 2,
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(5000),
            password: None,
            sentinel_password: None,
            appendonly: false,
            dir: None,
        }
    }
}

/// One sentinel process.
#[derive(Debug)]
struct Sentinel {
    index: usize,
    port: u16,
    pid: u32,
    dir: PathBuf,
    child: Option<Child>,
}

impl Sentinel {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    fn stop(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_none() {
            // A sentinel holds nothing worth a clean shutdown.
            child.kill()?;
            wait_for_exit(&mut child, Duration::from_secs(10))?;
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        match fs::read(self.dir.join(LOG_FILE)) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(20)..].join("\n")
            }
            Err(err) => format!("(log unreadable: {err})"),
        }
    }
}

impl fmt::Display for Sentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sentinel {} (127.0.0.1:{})", self.index, self.port)
    }
}

/// A data node: the master or a replica at start.
#[derive(Debug)]
struct DataNode {
    index: usize,
    server: RedisServer,
    /// Killed through the set, not started again yet.
    down: bool,
}

impl fmt::Display for DataNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "data node {} ({})", self.index, self.server.addr())
    }
}

/// A running Sentinel setup on `127.0.0.1`: data node 0 is the master at start, the others
/// its replicas (`--replicaof`), and sentinels (`<server> sentinel.conf --sentinel`) monitor
/// it under [`master_name`](Self::master_name). [`start`](Self::start) returns once every
/// sentinel sees the master, every replica and every other sentinel.
///
/// Dropping the set kills the sentinels first (so that nothing fails over while the rest
/// goes), then the data nodes, each by its pid, and removes its temporary directory.
///
/// ```no_run
/// use redis_harness::{SentinelOptions, SentinelSet};
///
/// # fn main() -> std::io::Result<()> {
/// let mut set = SentinelSet::start(SentinelOptions::default())?;
/// println!("sentinels: {:?}, master {}", set.sentinel_urls(), set.master_name());
/// let old = set.kill_master()?; // kill -9
/// let new = set.wait_for_new_master(old)?; // the replica, promoted
/// assert_ne!(old, new);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SentinelSet {
    data: Vec<DataNode>,
    sentinels: Vec<Sentinel>,
    binary: PathBuf,
    root: PathBuf,
    owns_root: bool,
    options: SentinelOptions,
}

impl SentinelSet {
    /// Starts the master, its replicas (waiting until each is attached), then the sentinels,
    /// and waits until every sentinel sees the master up, every replica and every other
    /// sentinel.
    pub fn start(options: SentinelOptions) -> io::Result<SentinelSet> {
        if options.sentinels == 0 || options.quorum == 0 || options.quorum > options.sentinels {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a quorum of {} of {} sentinels cannot work",
                    options.quorum, options.sentinels
                ),
            ));
        }
        if !valid_master_name(&options.master_name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "master name {:?}: use letters, digits, `-`, `_` and `.`",
                    options.master_name
                ),
            ));
        }
        let (root, owns_root) = match &options.dir {
            Some(dir) => {
                fs::create_dir_all(dir)?;
                (dir.clone(), false)
            }
            None => (new_temp_dir()?, true),
        };
        let binary = resolve_binary(options.binary.as_deref());
        let mut set = SentinelSet {
            data: Vec::new(),
            sentinels: Vec::new(),
            binary,
            root,
            owns_root,
            options,
        };
        // From here on, dropping `set` on an error stops what started and cleans up.
        for index in 0..=set.options.replicas {
            let node = set.start_data_node(index)?;
            set.data.push(node);
        }
        wait_for("the replicas to attach", FORM_TIMEOUT, || {
            set.replicas_attached_to(0)
        })?;
        let mut ports = Ports::default();
        for index in 0..set.options.sentinels {
            let sentinel = set.start_sentinel(index, &mut ports)?;
            set.sentinels.push(sentinel);
        }
        set.wait_until_ready()?;
        Ok(set)
    }

    fn start_data_node(&self, index: usize) -> io::Result<DataNode> {
        let dir = self.root.join(format!("data-{index}"));
        fresh_dir(&dir)?;
        // A replica's first sync starts at once, not after 5 s of waiting for more.
        let mut extra_args = vec!["--repl-diskless-sync-delay".to_owned(), "0".to_owned()];
        if let Some(password) = &self.options.password {
            // For whichever node is a replica, now or after a failover.
            extra_args.extend(["--masterauth".to_owned(), password.clone()]);
        }
        if let Some(master) = self.data.first() {
            extra_args.extend([
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                master.server.port().to_string(),
            ]);
        }
        let server = RedisServer::start(ServerOptions {
            binary: Some(self.binary.clone()),
            appendonly: self.options.appendonly,
            password: self.options.password.clone(),
            dir: Some(dir),
            extra_args,
            ..ServerOptions::default()
        })
        .map_err(|err| io::Error::new(err.kind(), format!("data node {index}: {err}")))?;
        Ok(DataNode {
            index,
            server,
            down: false,
        })
    }

    fn start_sentinel(&self, index: usize, ports: &mut Ports) -> io::Result<Sentinel> {
        let dir = self.root.join(format!("sentinel-{index}"));
        fresh_dir(&dir)?;
        let master_port = self.data.first().map_or(0, |node| node.server.port());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = ports.pick()?;
            fs::write(
                dir.join(CONFIG_FILE),
                sentinel_config(&self.options, &dir, port, master_port),
            )?;
            let log = File::create(dir.join(LOG_FILE))?;
            let child = Command::new(&self.binary)
                .arg(dir.join(CONFIG_FILE))
                .arg("--sentinel")
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!(
                            "cannot run {} --sentinel ({err}): install redis-server, put it on \
                             PATH or set {}",
                            self.binary.display(),
                            crate::env::SERVER
                        ),
                    )
                })?;
            let mut sentinel = Sentinel {
                index,
                port,
                pid: child.id(),
                dir: dir.clone(),
                child: Some(child),
            };
            match self.wait_for_sentinel(&mut sentinel) {
                Ok(()) => return Ok(sentinel),
                Err(err) => {
                    let _ = sentinel.stop();
                    if !(attempt < PORT_ATTEMPTS && port_was_taken(&err)) {
                        return Err(err);
                    }
                }
            }
        }
    }

    /// Waits until `sentinel` answers `PING` and is the process we spawned.
    fn wait_for_sentinel(&self, sentinel: &mut Sentinel) -> io::Result<()> {
        let password = self.options.sentinel_password.clone();
        let result = wait_for(
            &format!("{sentinel} to answer PING"),
            SENTINEL_STARTUP,
            || {
                if let Some(child) = &mut sentinel.child
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Ok(Err(format!("exited with {status}")));
                }
                let addr = sentinel.addr();
                match command_at(addr, password.as_deref(), &["INFO", "server"]) {
                    Ok(info)
                        if info_field(&info, "process_id")
                            == Some(sentinel.pid.to_string().as_str()) =>
                    {
                        Ok(Ok(()))
                    }
                    Ok(_) => Err("another process answers on that port".to_owned()),
                    Err(err) => Err(err.to_string()),
                }
            },
        );
        let failure = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(exited)) => exited,
            Err(err) => err.to_string(),
        };
        Err(io::Error::other(format!(
            "{sentinel}: {failure} (dir {}); last lines of its log:\n{}",
            sentinel.dir.display(),
            sentinel.log_tail()
        )))
    }

    /// `Ok` when every replica at start that is up reports `master_link_status:up` to data
    /// node `master`.
    fn replicas_attached_to(&self, master: usize) -> Result<(), String> {
        let master_port = self.data[master].server.port().to_string();
        for node in self.data.iter().filter(|n| !n.down && n.index != master) {
            let info = node
                .server
                .command(&["INFO", "replication"])
                .map_err(|e| format!("{node}: {e}"))?;
            let link = info_field(&info, "master_link_status").unwrap_or("?");
            if info_field(&info, "master_port") != Some(master_port.as_str()) || link != "up" {
                return Err(format!("{node}: master_link_status:{link}"));
            }
        }
        Ok(())
    }

    /// Waits until every sentinel reports the same master, which is up and says `role:master`,
    /// every other data node that is up is attached to it (`master_link_status:up`), and every
    /// sentinel sees the master up, those replicas (not down, not disconnected) and every other
    /// sentinel.
    pub fn wait_until_ready(&self) -> io::Result<()> {
        wait_for("the sentinels to see everyone", FORM_TIMEOUT, || {
            self.readiness()
        })
    }

    fn readiness(&self) -> Result<(), String> {
        let name = self.master_name();
        let master = self.agreed_master(None)?;
        let master = self
            .data_node_at(master)
            .ok_or_else(|| format!("the sentinels report a master at {master}, not ours"))?;
        self.replicas_attached_to(master)?;
        let data_up = self.data.iter().filter(|node| !node.down).count();
        for sentinel in &self.sentinels {
            let master = self
                .sentinel_lines(sentinel, &["SENTINEL", "MASTER", name])
                .map_err(|e| format!("{sentinel}: {e}"))?;
            let master: Vec<&str> = master.lines().collect();
            let flags = pair_value(&master, "flags").unwrap_or("?");
            if flags != "master" {
                return Err(format!("{sentinel} flags the master {flags}"));
            }
            let others = pair_value(&master, "num-other-sentinels").unwrap_or("?");
            if others != (self.sentinels.len() - 1).to_string() {
                return Err(format!("{sentinel} knows {others} other sentinels"));
            }
            let replicas = self
                .sentinel_lines(sentinel, &["SENTINEL", "REPLICAS", name])
                .map_err(|e| format!("{sentinel}: {e}"))?;
            let replicas: Vec<&str> = replicas.lines().collect();
            let healthy = replicas
                .chunks(2)
                .filter(|pair| {
                    matches!(pair, [key, flags] if *key == "flags"
                        && !flags.contains("down") && !flags.contains("disconnected"))
                })
                .count();
            if healthy + 1 < data_up {
                return Err(format!(
                    "{sentinel} sees {healthy} healthy replicas of {}",
                    data_up - 1
                ));
            }
        }
        Ok(())
    }

    fn sentinel_lines(&self, sentinel: &Sentinel, args: &[&str]) -> io::Result<String> {
        command_at(
            sentinel.addr(),
            self.options.sentinel_password.as_deref(),
            args,
        )
    }

    /// The name the sentinels monitor the master under.
    pub fn master_name(&self) -> &str {
        &self.options.master_name
    }

    /// The sentinels' addresses.
    pub fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.sentinels.iter().map(Sentinel::addr).collect()
    }

    /// `redis://127.0.0.1:PORT` of every sentinel (with the sentinel password, percent-encoded,
    /// when there is one): what [`SENTINELS`](crate::env::SENTINELS) holds.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|sentinel| match &self.options.sentinel_password {
                Some(pw) => format!("redis://:{}@{}", percent_encode(pw), sentinel.addr()),
                None => format!("redis://{}", sentinel.addr()),
            })
            .collect()
    }

    /// The sentinels' process ids.
    pub fn sentinel_pids(&self) -> Vec<u32> {
        self.sentinels.iter().map(|sentinel| sentinel.pid).collect()
    }

    /// The password of the data nodes, if any.
    pub fn password(&self) -> Option<&str> {
        self.options.password.as_deref()
    }

    /// The password of the sentinels, if any.
    pub fn sentinel_password(&self) -> Option<&str> {
        self.options.sentinel_password.as_deref()
    }

    /// How many data nodes (master and replicas, up or down) the set has.
    pub fn data_node_count(&self) -> usize {
        self.data.len()
    }

    /// The server process of data node `node` (0 is the master at start). Panics if `node`
    /// is not below [`data_node_count`](Self::data_node_count) (like every method taking a
    /// data node index).
    pub fn data_node(&self, node: usize) -> &RedisServer {
        &self.data[node].server
    }

    /// Whether data node `node` was killed through the set and not started again.
    pub fn is_down(&self, node: usize) -> bool {
        self.data[node].down
    }

    /// The index of the data node listening on `addr`.
    pub fn data_node_at(&self, addr: SocketAddr) -> Option<usize> {
        self.data.iter().position(|node| node.server.addr() == addr)
    }

    /// The directory holding the node directories.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Sends one command to sentinel `sentinel` (authenticating with the sentinel password).
    pub fn sentinel_command(&self, sentinel: usize, args: &[&str]) -> io::Result<String> {
        self.sentinel_lines(&self.sentinels[sentinel], args)
    }

    /// The master's address as the first sentinel that answers reports it
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    pub fn master_addr(&self) -> io::Result<SocketAddr> {
        let mut last = None;
        for sentinel in &self.sentinels {
            match self.reported_master(sentinel) {
                Ok(addr) => return Ok(addr),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no sentinel answers")))
    }

    /// The master's URL (`redis://[:password@]127.0.0.1:PORT`).
    pub fn master_url(&self) -> io::Result<String> {
        let addr = self.master_addr()?;
        Ok(match &self.options.password {
            Some(pw) => format!("redis://:{}@{addr}", percent_encode(pw)),
            None => format!("redis://{addr}"),
        })
    }

    fn reported_master(&self, sentinel: &Sentinel) -> io::Result<SocketAddr> {
        let reply = self.sentinel_lines(
            sentinel,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name()],
        )?;
        let mut lines = reply.lines();
        match (lines.next(), lines.next()) {
            (Some(ip), Some(port)) => format!("{ip}:{port}").parse().map_err(|_| {
                io::Error::other(format!("{sentinel} reports a master at {ip:?}:{port:?}"))
            }),
            _ => Err(io::Error::other(format!(
                "{sentinel} knows no master {:?} ({reply})",
                self.master_name()
            ))),
        }
    }

    /// Asks a sentinel for a failover (`SENTINEL FAILOVER`, which needs no agreement) and
    /// returns the master's address before it; wait for the outcome with
    /// [`wait_for_new_master`](Self::wait_for_new_master). The old master stays a master
    /// for about 10 s more, until the sentinels turn it into a replica (see
    /// [`follow`](Self::follow)), as with any Sentinel failover.
    pub fn failover(&self) -> io::Result<SocketAddr> {
        let old = self.master_addr()?;
        let mut last = None;
        for sentinel in &self.sentinels {
            match self.sentinel_lines(sentinel, &["SENTINEL", "FAILOVER", self.master_name()]) {
                Ok(_) => return Ok(old),
                Err(err) => last = Some(io::Error::new(err.kind(), format!("{sentinel}: {err}"))),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no sentinel answers")))
    }

    /// `kill -9` of the master the sentinels report now, by its pid; returns its address once
    /// the process is gone. The sentinels fail over after `down_after`.
    pub fn kill_master(&mut self) -> io::Result<SocketAddr> {
        let addr = self.master_addr()?;
        let index = self.data_node_at(addr).ok_or_else(|| {
            io::Error::other(format!("the sentinels report a master at {addr}, not ours"))
        })?;
        self.kill(index)?;
        Ok(addr)
    }

    /// `kill -9` of data node `node`, by its pid; returns once the process is gone.
    pub fn kill(&mut self, node: usize) -> io::Result<()> {
        let target = &mut self.data[node];
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

    /// Starts data node `node` again (stopping it first if it runs), on the same port, in the
    /// same directory, and when the sentinels report another master, makes it a replica of
    /// that one (`REPLICAOF`: what the sentinels do themselves, but only 8 s after a node
    /// came back with the wrong role). [`wait_until_ready`](Self::wait_until_ready) waits
    /// until it is attached and the sentinels see it.
    pub fn restart(&mut self, node: usize) -> io::Result<()> {
        let target = &mut self.data[node];
        target.server.restart()?;
        target.down = false;
        self.follow(node)
    }

    /// Makes data node `node` a replica of the master the sentinels report (`REPLICAOF`),
    /// unless it is that master. The sentinels do so themselves with an old master that is
    /// still up after [`failover`](Self::failover), but only about 10 s later (their `INFO`
    /// period for replicas, and a wait of 8 s for a node that reports the wrong role).
    pub fn follow(&self, node: usize) -> io::Result<()> {
        let master = self.master_addr()?;
        let target = &self.data[node];
        if target.server.addr() == master {
            return Ok(());
        }
        let port = master.port().to_string();
        target
            .server
            .command(&["REPLICAOF", "127.0.0.1", &port])
            .map(drop)
            .map_err(|e| io::Error::new(e.kind(), format!("{target}: REPLICAOF: {e}")))
    }

    /// Waits until every sentinel that answers reports the same master, not at `old`, and that
    /// data node says `role:master`; returns its address. The other data nodes may still be
    /// switching over to it then.
    pub fn wait_for_new_master(&self, old: SocketAddr) -> io::Result<SocketAddr> {
        let timeout = FORM_TIMEOUT.max(self.options.failover_timeout * 4);
        wait_for(&format!("a new master instead of {old}"), timeout, || {
            self.agreed_master(Some(old))
        })
    }

    /// The master every sentinel reports, when they agree, it is not `old`, and it says
    /// `role:master`.
    fn agreed_master(&self, old: Option<SocketAddr>) -> Result<SocketAddr, String> {
        let mut agreed = None;
        for sentinel in &self.sentinels {
            let addr = self.reported_master(sentinel).map_err(|e| e.to_string())?;
            if Some(addr) == old {
                return Err(format!("{sentinel} still reports {addr}"));
            }
            match agreed {
                Some(first) if first != addr => {
                    return Err(format!("the sentinels report {first} and {addr}"));
                }
                _ => agreed = Some(addr),
            }
        }
        let addr = agreed.ok_or("no sentinel")?;
        let node = self
            .data_node_at(addr)
            .ok_or_else(|| format!("the sentinels report a master at {addr}, not ours"))?;
        let node = &self.data[node];
        if node.down {
            return Err(format!("the sentinels report {node}, which is down"));
        }
        let info = node
            .server
            .command(&["INFO", "replication"])
            .map_err(|e| format!("{node}: {e}"))?;
        match info_field(&info, "role") {
            Some("master") => Ok(addr),
            role => Err(format!("{node} says role:{}", role.unwrap_or("?"))),
        }
    }

    /// Leaves every process running after this value is gone: returns the data nodes' pids,
    /// then the sentinels', and keeps the directories. For `cargo xtask sentinel start`;
    /// whoever detaches must stop the pids later.
    pub fn detach(mut self) -> Vec<u32> {
        self.owns_root = false;
        let mut pids: Vec<u32> = std::mem::take(&mut self.data)
            .into_iter()
            .map(|node| node.server.detach())
            .collect();
        for mut sentinel in std::mem::take(&mut self.sentinels) {
            sentinel.child = None;
            pids.push(sentinel.pid);
        }
        pids
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        // Errors cannot be reported from drop. Sentinels first: none may fail over while the
        // data nodes go.
        for sentinel in &mut self.sentinels {
            let _ = sentinel.stop();
        }
        for node in &mut self.data {
            if node.server.is_running() {
                let _ = kill_9(node.server.pid());
            }
        }
        // Each server's drop reaps its process.
        self.data.clear();
        if self.owns_root {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

fn valid_master_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A value in a configuration file: quoted, with `\` and `"` escaped.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `sentinel.conf` of one sentinel.
fn sentinel_config(options: &SentinelOptions, dir: &Path, port: u16, master_port: u16) -> String {
    let name = &options.master_name;
    let mut config = format!(
        "# written by redis-harness; the sentinel rewrites it as it learns\n\
         port {port}\n\
         bind 127.0.0.1\n\
         protected-mode yes\n\
         daemonize no\n\
         dir {dir}\n\
         sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
         sentinel down-after-milliseconds {name} {down}\n\
         sentinel failover-timeout {name} {failover}\n\
         sentinel parallel-syncs {name} 1\n",
        dir = quoted(&dir.display().to_string()),
        quorum = options.quorum,
        down = options.down_after.as_millis(),
        failover = options.failover_timeout.as_millis(),
    );
    if let Some(password) = &options.password {
        config.push_str(&format!("sentinel auth-pass {name} {}\n", quoted(password)));
    }
    if let Some(password) = &options.sentinel_password {
        // The sentinels authenticate to each other with it too.
        config.push_str(&format!("requirepass {}\n", quoted(password)));
        config.push_str(&format!("sentinel sentinel-pass {}\n", quoted(password)));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_quotes_what_needs_it() {
        let options = SentinelOptions {
            password: Some("p w\"\\".to_owned()),
            sentinel_password: Some("s".to_owned()),
            ..SentinelOptions::default()
        };
        let config = sentinel_config(&options, Path::new("/tmp/a b"), 40001, 40000);
        assert!(config.contains("port 40001\n"));
        assert!(config.contains("dir \"/tmp/a b\"\n"));
        assert!(config.contains("sentinel monitor mymaster 127.0.0.1 40000 2\n"));
        assert!(config.contains("sentinel down-after-milliseconds mymaster 1000\n"));
        assert!(config.contains("sentinel auth-pass mymaster \"p w\\\"\\\\\"\n"));
        assert!(config.contains("requirepass \"s\"\nsentinel sentinel-pass \"s\"\n"));
        assert!(valid_master_name("my-master_1.a"));
        assert!(!valid_master_name("my master") && !valid_master_name(""));
    }
}
