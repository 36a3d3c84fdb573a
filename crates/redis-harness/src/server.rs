//! Spawning, health-checking, stopping and restarting one `redis-server` process.

use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::group::wait_for;
use crate::resp::command_at;
use crate::tls::TlsFiles;

/// How long `start` waits for the first `PONG` (loading a big AOF counts).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `stop` waits after `SHUTDOWN`, then after SIGTERM, before SIGKILL.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times `start` retries with new ports when a port it picked was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// The log file in the server's directory: the server's stdout and stderr.
const LOG_FILE: &str = "redis.log";
/// Redis' well-known port, which the harness never uses (a developer's own Redis lives there).
const DEFAULT_REDIS_PORT: u16 = 6379;

/// How to start a [`RedisServer`]. `ServerOptions::default()` is a plain, non-persistent server
/// on a free port in a new temporary directory.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// The `redis-server` binary. Default: `$SESSION_TEST_REDIS_SERVER`, else `redis-server` on
    /// `PATH`.
    pub binary: Option<PathBuf>,
    /// Persist with an append-only file (`appendonly yes`), so [`RedisServer::restart`] keeps
    /// the data. RDB snapshots are always off (`save ""`) unless `extra_args` turn them on.
    pub appendonly: bool,
    /// Require this password (`requirepass`).
    pub password: Option<String>,
    /// Also listen on a TLS port, with a CA, server and client certificate generated into the
    /// server's directory (see [`RedisServer::tls_files`]). Clients may but need not present a
    /// certificate (`tls-auth-clients optional`). The plain port stays open.
    pub tls: bool,
    /// The working directory (AOF, log, TLS files). Default: a new temporary directory, owned by
    /// the server and removed when it is dropped. A given directory is created if needed and
    /// never removed.
    pub dir: Option<PathBuf>,
    /// The plain port. Default: a free loopback port. Port 6379 is refused.
    pub port: Option<u16>,
    /// More `redis-server` arguments, appended last (so they win), e.g. `["--maxmemory", "10mb"]`.
    pub extra_args: Vec<String>,
    /// Runs the server inside this network namespace (`ip netns exec NAME redis-server ...`),
    /// e.g. one a [`Partition`](crate::Partition) made. The pid stays the server's own.
    pub netns: Option<String>,
    /// The address to listen on instead of `127.0.0.1`. Anything but a loopback address is
    /// accepted only together with [`netns`](Self::netns) (an address that exists only in a
    /// namespace of the test's own, see [`Partition::server_options`](crate::Partition)), and
    /// turns protected mode off: the clients come from the other end of the namespace's
    /// link.
    pub bind: Option<Ipv4Addr>,
}

/// One client connection a server reports in `CLIENT LIST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The connection's id (`CLIENT ID`): unique for the server's lifetime, never reused.
    pub id: u64,
    /// The client's address, `ip:port`.
    pub addr: String,
    /// The flags: `N` for a normal client, `M` for a replica's link to its master ...
    pub flags: String,
    /// The last command the connection ran (`get`, `evalsha`, `client|list` ...).
    pub cmd: String,
}

impl ClientInfo {
    /// Parses one line of `CLIENT LIST`.
    fn parse(line: &str) -> Option<ClientInfo> {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
        };
        Some(ClientInfo {
            id: field("id")?.parse().ok()?,
            addr: field("addr")?,
            flags: field("flags")?,
            cmd: field("cmd").unwrap_or_default(),
        })
    }
}

/// A running `redis-server` child process, listening on `127.0.0.1` only.
///
/// Dropping it stops the process (by its pid) and removes the temporary directory it created.
#[derive(Debug)]
pub struct RedisServer {
    options: ServerOptions,
    binary: PathBuf,
    dir: PathBuf,
    owns_dir: bool,
    port: u16,
    tls_port: Option<u16>,
    tls_files: Option<TlsFiles>,
    child: Option<Child>,
    pid: u32,
}

impl RedisServer {
    /// Spawns `redis-server` as `opts` say and waits until it answers `PING`.
    ///
    /// Errors say what failed: the binary cannot be found or run, the certificates cannot be
    /// generated, or the server exited or did not answer in time (with the tail of its log).
    pub fn start(opts: ServerOptions) -> io::Result<RedisServer> {
        if opts.port == Some(DEFAULT_REDIS_PORT) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "redis-harness never uses port 6379: leave `port` unset to get a free port",
            ));
        }
        if let Some(bind) = opts.bind
            && !bind.is_loopback()
            && opts.netns.is_none()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "redis-harness binds {bind} only inside a network namespace of the test's own \
                     (set `netns`, e.g. from a Partition)"
                ),
            ));
        }
        let binary = resolve_binary(opts.binary.as_deref());
        let (dir, owns_dir) = match &opts.dir {
            Some(dir) => {
                fs::create_dir_all(dir)?;
                (dir.clone(), false)
            }
            None => (new_temp_dir()?, true),
        };
        let mut server = RedisServer {
            options: opts,
            binary,
            dir,
            owns_dir,
            port: 0,
            tls_port: None,
            tls_files: None,
            child: None,
            pid: 0,
        };
        // From here on, dropping `server` on an error cleans up the directory.
        if server.options.tls {
            server.tls_files = Some(TlsFiles::generate(&server.dir)?);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            server.port = match server.options.port {
                Some(port) => port,
                None => free_port()?,
            };
            server.tls_port = match server.options.tls {
                true => Some(free_port_except(server.port)?),
                false => None,
            };
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(err) if server.options.port.is_none() && attempt < PORT_ATTEMPTS => {
                    if !server.log_tail(40).contains("Address already in use") {
                        return Err(err);
                    }
                    // Another process took a port between `free_port` and the bind: try others.
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// The plain (non-TLS) port on `127.0.0.1` (or on [`host`](Self::host)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on: `127.0.0.1`, or [`ServerOptions::bind`].
    pub fn host(&self) -> Ipv4Addr {
        self.options.bind.unwrap_or(Ipv4Addr::LOCALHOST)
    }

    /// [`host`](Self::host) and [`port`](Self::port).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.host(), self.port))
    }

    /// The TLS port on `127.0.0.1`, when started with `tls: true`.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The process id of the `redis-server` child (of the latest start, after a restart).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The server's working directory: AOF, `redis.log`, TLS files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The password the server requires, if any.
    pub fn password(&self) -> Option<&str> {
        self.options.password.as_deref()
    }

    /// `redis://127.0.0.1:PORT`, or `redis://:PASSWORD@127.0.0.1:PORT` with a password (the
    /// password percent-encoded).
    pub fn url(&self) -> String {
        let host = self.host();
        match &self.options.password {
            Some(pw) => format!("redis://:{}@{host}:{}", percent_encode(pw), self.port),
            None => format!("redis://{host}:{}", self.port),
        }
    }

    /// `rediss://127.0.0.1:TLSPORT` (with the password like [`RedisServer::url`]), when started
    /// with `tls: true`.
    pub fn tls_url(&self) -> Option<String> {
        let port = self.tls_port?;
        let host = self.host();
        Some(match &self.options.password {
            Some(pw) => format!("rediss://:{}@{host}:{port}", percent_encode(pw)),
            None => format!("rediss://{host}:{port}"),
        })
    }

    /// The generated CA, server and client certificates and keys, when started with `tls: true`.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls_files.as_ref()
    }

    /// The path of the server's log (its stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// Whether the child process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the server: `SHUTDOWN` (which flushes the AOF), else SIGTERM to its pid, else
    /// SIGKILL, and waits for the process to exit. Calling it on a stopped server does nothing.
    pub fn stop(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        let shutdown = command_at(self.addr(), self.password(), &["SHUTDOWN"]);
        if shutdown.is_ok() && wait_for_exit(&mut child, SHUTDOWN_TIMEOUT)? {
            return Ok(());
        }
        // `kill` the command, not a signal call: the crate forbids unsafe code.
        let term = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        if term.is_ok_and(|s| s.success()) && wait_for_exit(&mut child, SHUTDOWN_TIMEOUT)? {
            return Ok(());
        }
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Stops the server and starts it again with the same options, on the same port(s) and in
    /// the same directory, so data persisted with `appendonly` survives. The pid changes.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.spawn_and_wait()
    }

    /// Stops the server, lets `prepare` change its directory (put an older `dump.rdb` there,
    /// remove the AOF ...), and starts it again on the same port(s): a restart from whatever
    /// `prepare` left, e.g. from an older snapshot, losing what was written since.
    pub fn restart_with(
        &mut self,
        prepare: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<()> {
        self.stop()?;
        prepare(&self.dir)?;
        self.spawn_and_wait()
    }

    /// Sends one command on the plain port (authenticating first when the server has a password)
    /// and returns a readable rendering of the reply; an error reply is an `Err`. See
    /// [`command_on`](crate::command_on) for the rendering.
    pub fn command(&self, args: &[&str]) -> io::Result<String> {
        command_at(self.addr(), self.password(), args)
    }

    /// Waits until at least `replicas` replicas have every write this server took so far:
    /// `WAIT replicas 1000` asked again (it answers how many confirmed, fewer when it timed
    /// out) until it says enough, for at most `within`. A replica that `INFO` shows attached
    /// may still owe its first acknowledgement.
    pub fn wait_replicated(&self, replicas: usize, within: Duration) -> io::Result<()> {
        let want = replicas.to_string();
        let what = format!(
            "{}: {replicas} replica(s) confirming the writes",
            self.addr()
        );
        wait_for(&what, within, || {
            let acked = self
                .command(&["WAIT", &want, "1000"])
                .map_err(|e| e.to_string())?;
            match acked.parse::<usize>() {
                Ok(n) if n >= replicas => Ok(()),
                _ => Err(format!("WAIT answered {acked}")),
            }
        })
    }

    /// The client connections of the server (`CLIENT LIST`), without the one that asks: to
    /// see whether a client replaced its connection (the ids change), or how many it holds.
    pub fn clients(&self) -> io::Result<Vec<ClientInfo>> {
        let list = self.command(&["CLIENT", "LIST"])?;
        Ok(list
            .lines()
            .filter_map(ClientInfo::parse)
            .filter(|client| client.cmd != "client|list")
            .collect())
    }

    /// The server's version (`redis_version` of `INFO server`), when it answers.
    pub fn version(&self) -> Option<String> {
        let info = self.command(&["INFO", "server"]).ok()?;
        info.lines().find_map(|l| {
            l.strip_prefix("redis_version:")
                .map(|v| v.trim().to_owned())
        })
    }

    /// Leaves the server running after this value is gone: returns its pid and keeps its
    /// directory. For `cargo xtask redis start`; whoever detaches must stop the pid later.
    pub fn detach(mut self) -> u32 {
        self.child = None;
        self.owns_dir = false;
        self.pid
    }

    fn args(&self) -> Vec<String> {
        let bind = self.host();
        let mut args: Vec<String> = [
            "--bind",
            &bind.to_string(),
            "--protected-mode",
            if bind.is_loopback() { "yes" } else { "no" },
            "--daemonize",
            "no",
            "--save",
            "",
            "--loglevel",
            "notice",
        ]
        .map(String::from)
        .into();
        args.push("--port".into());
        args.push(self.port.to_string());
        args.push("--dir".into());
        args.push(self.dir.display().to_string());
        args.push("--appendonly".into());
        args.push(if self.options.appendonly { "yes" } else { "no" }.into());
        if let Some(password) = &self.options.password {
            args.push("--requirepass".into());
            args.push(password.clone());
        }
        if let (Some(tls_port), Some(files)) = (self.tls_port, &self.tls_files) {
            args.push("--tls-port".into());
            args.push(tls_port.to_string());
            for (flag, path) in [
                ("--tls-cert-file", &files.server_cert),
                ("--tls-key-file", &files.server_key),
                ("--tls-ca-cert-file", &files.ca_cert),
            ] {
                args.push(flag.into());
                args.push(path.display().to_string());
            }
            args.push("--tls-auth-clients".into());
            args.push("optional".into());
        }
        args.extend(self.options.extra_args.iter().cloned());
        args
    }

    fn spawn_and_wait(&mut self) -> io::Result<()> {
        let log = File::create(self.log_path())?;
        let mut command = match &self.options.netns {
            // `ip netns exec` execs the server in the namespace: the pid is the server's.
            Some(netns) => {
                let mut command = Command::new(crate::partition::ip_binary());
                command.args(["netns", "exec", netns]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        let child = command
            .args(self.args())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!(
                        "cannot run {} ({err}): install redis-server, put it on PATH or set {} \
                         (`cargo xtask test` provides one)",
                        self.binary.display(),
                        crate::env::SERVER
                    ),
                )
            })?;
        self.pid = child.id();
        self.child = Some(child);
        match self.wait_until_ready() {
            Ok(()) => Ok(()),
            Err(err) => {
                // Leave nothing behind; the original error is what matters.
                let _ = self.stop();
                Err(err)
            }
        }
    }

    fn wait_until_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(self.startup_error(&format!("redis-server exited with {status}")));
            }
            let last_error = match self.answers_as_our_process() {
                Ok(true) => return Ok(()),
                Ok(false) => "another process answers on that port".to_owned(),
                Err(err) => err.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(self.startup_error(&format!(
                    "redis-server did not answer PING within {}s ({last_error})",
                    STARTUP_TIMEOUT.as_secs()
                )));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// PING answers PONG and INFO names our pid: a server that already held the port (and made
    /// ours fail to bind) must not be mistaken for ours.
    fn answers_as_our_process(&self) -> io::Result<bool> {
        if self.command(&["PING"])? != "PONG" {
            return Ok(false);
        }
        let info = self.command(&["INFO", "server"])?;
        let pid = format!("process_id:{}", self.pid);
        Ok(info.lines().any(|line| line.trim() == pid))
    }

    fn startup_error(&self, what: &str) -> io::Error {
        io::Error::other(format!(
            "{what} (port {}, dir {}); last lines of {}:\n{}",
            self.port,
            self.dir.display(),
            self.log_path().display(),
            self.log_tail(20)
        ))
    }

    fn log_tail(&self, lines: usize) -> String {
        match fs::read(self.log_path()) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(err) => format!("(log unreadable: {err})"),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; `stop` escalates to SIGKILL on its own.
        let _ = self.stop();
        if self.owns_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A free TCP port on `127.0.0.1` (bind to port 0, read the port, close). Never 6379.
///
/// Another process may take the port before it is used; [`RedisServer::start`] retries then.
pub fn free_port() -> io::Result<u16> {
    free_port_except(DEFAULT_REDIS_PORT)
}

fn free_port_except(taken: u16) -> io::Result<u16> {
    for _ in 0..32 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        if port != DEFAULT_REDIS_PORT && port != taken {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "no free loopback port found",
    ))
}

/// `given`, else `$SESSION_TEST_REDIS_SERVER`, else `redis-server` (on `PATH`).
pub(crate) fn resolve_binary(given: Option<&Path>) -> PathBuf {
    if let Some(path) = given {
        return path.to_path_buf();
    }
    match std::env::var_os(crate::env::SERVER) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from("redis-server"),
    }
}

/// Waits up to `timeout` for `child` to exit; `Ok(false)` when it is still running.
pub(crate) fn wait_for_exit(child: &mut Child, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn new_temp_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "redis-harness-{}-{nanos:09}-{n}",
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::other(
        "cannot create a unique temporary directory",
    ))
}

pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
