//! A TCP fault-injection proxy between a Redis client and a real `redis-server`: lost replies,
//! lost requests, cut connections and a hung network, caused for real on loopback sockets.
//!
//! Threads, std only: one accept thread, and two per proxied connection (client to server and
//! server to client). Every socket has a short read timeout, so each thread notices within a
//! few milliseconds that the proxy was dropped or its connection closed; dropping the
//! [`FaultProxy`] joins them all.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Redis' well-known port, which the harness never uses (a developer's own Redis lives there).
const DEFAULT_REDIS_PORT: u16 = 6379;
/// How long a connection attempt to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Read timeout of every proxied socket: how often a blocked thread looks at the flags.
const POLL: Duration = Duration::from_millis(10);
/// Write timeout of every proxied socket (a write that times out is retried, flags permitting).
const WRITE_POLL: Duration = Duration::from_millis(100);
/// How long the accept thread sleeps when there is no connection to accept.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// A lost reply: once the server sent reply bytes, the connection is closed after this long
/// without more of them.
pub const LOST_REPLY_QUIET: Duration = Duration::from_millis(50);
/// A lost reply: the connection is closed at the latest this long after the request was
/// forwarded, even when the server never answered.
pub const LOST_REPLY_MAX_WAIT: Duration = Duration::from_secs(2);
/// Needles match across read boundaries when at most this long plus one byte.
const TAIL_MAX: usize = 4096;
/// Size of each pump's read buffer.
const BUFFER: usize = 16 * 1024;

/// A TCP proxy on a free `127.0.0.1` port that forwards every connection it accepts to one
/// upstream (a `redis-server`) and injects faults on demand: a lost reply
/// ([`FaultProxy::drop_reply_after`]), a lost request ([`FaultProxy::drop_request`]), every
/// connection cut at once ([`FaultProxy::cut_all`]) or a hung network
/// ([`FaultProxy::set_stalled`]).
///
/// Faults are matched on raw bytes of the client-to-server stream; the proxy does not parse
/// RESP. Dropping the proxy closes its listener and every proxied connection and joins all of its
/// threads.
///
/// ```no_run
/// use redis_harness::{FaultProxy, RedisServer, ServerOptions, command_on};
///
/// # fn main() -> std::io::Result<()> {
/// let server = RedisServer::start(ServerOptions::default())?;
/// let proxy = FaultProxy::start(([127, 0, 0, 1], server.port()).into())?;
/// proxy.drop_reply_after(b"INCR");
/// assert!(command_on(proxy.port(), None, &["INCR", "counter"]).is_err()); // reply lost ...
/// assert_eq!(server.command(&["GET", "counter"])?, "1"); // ... but the write was applied
/// # Ok(())
/// # }
/// ```
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("faults_fired", &self.faults_fired())
            .field("stalled", &self.shared.stalled.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Listens on a free `127.0.0.1` port and forwards every accepted connection to `upstream`
    /// (a new upstream connection per client connection; when the upstream refuses, the client
    /// connection is closed at once).
    ///
    /// `upstream` must be a loopback address and not port 6379 (the harness never talks to a
    /// developer's own Redis): anything else is an [`io::ErrorKind::InvalidInput`] error.
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("FaultProxy only forwards to loopback addresses, not {upstream}"),
            ));
        }
        if upstream.port() == DEFAULT_REDIS_PORT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "redis-harness never uses port 6379: proxy to a server the harness started",
            ));
        }
        let listener = bind_loopback()?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared::new(upstream));
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("fault-proxy-{}-accept", addr.port()))
                .spawn(move || accept_loop(&shared, listener))?
        };
        Ok(FaultProxy {
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// The port the proxy listens on (on `127.0.0.1`; never 6379).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address the proxy listens on: `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// `redis://127.0.0.1:PORT`: the URL a client uses to connect through the proxy (add the
    /// password yourself when the upstream needs one).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    /// Arms a one-shot "lost reply": the server applies a request, the client never sees the
    /// reply.
    ///
    /// The next chunk the proxy reads from any client that contains `needle` (raw bytes, e.g.
    /// `b"EVALSHA"` or a key name; a needle may span two reads, and an empty needle matches the
    /// next chunk) is forwarded to the server in full, and so is everything that client sends
    /// afterwards (the rest of a large request). From then on every byte the server sends on
    /// that connection is dropped; once the server sent some and then nothing for
    /// [`LOST_REPLY_QUIET`] (or [`LOST_REPLY_MAX_WAIT`] after the request, if it never answers),
    /// both sides of that connection, client and upstream, are closed. The client sees its
    /// connection close (EOF) without a reply.
    ///
    /// Fires for exactly one occurrence across all connections; replies to other requests in
    /// flight on the same connection are lost too. Faults armed several times fire in the order
    /// they were armed, one per matching chunk.
    pub fn drop_reply_after(&self, needle: &[u8]) {
        self.shared
            .arm(needle, FaultKind::DropReply { then_stall: false });
    }

    /// Like [`FaultProxy::drop_reply_after`], and the whole proxy stalls (as
    /// [`FaultProxy::set_stalled`]`(true)`) the moment the server's first reply byte to that
    /// request arrives: the request was executed, and nothing the client does next (a new
    /// connection that asks what happened, say) reaches the server until the test calls
    /// `set_stalled(false)`. A test that stalled the proxy itself once the fault fired could not
    /// tell whether the request had been forwarded yet: a fault counts as fired before its
    /// chunk is forwarded, so a stall set then may hold the request itself.
    pub fn drop_reply_after_then_stall(&self, needle: &[u8]) {
        self.shared
            .arm(needle, FaultKind::DropReply { then_stall: true });
    }

    /// Arms a one-shot "lost request": the request never reaches the server.
    ///
    /// The next chunk the proxy reads from any client that contains `needle` (raw bytes, like
    /// [`FaultProxy::drop_reply_after`]) is not forwarded (nor anything after it on that
    /// connection), and both sides of that connection are closed at once. When the needle spans
    /// two reads, the bytes of the earlier read were already forwarded, which leaves the server
    /// with an incomplete request that it never executes. Fires for exactly one occurrence
    /// across all connections.
    pub fn drop_request(&self, needle: &[u8]) {
        self.shared.arm(needle, FaultKind::DropRequest);
    }

    /// How many armed faults ([`FaultProxy::drop_reply_after`], [`FaultProxy::drop_request`])
    /// fired so far. A fault counts as fired as soon as its needle matched, before its
    /// connection is closed.
    pub fn faults_fired(&self) -> usize {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// How many armed faults have not fired yet.
    pub fn faults_armed(&self) -> usize {
        lock(&self.shared.armed).len()
    }

    /// Disarms every fault that has not fired yet.
    pub fn disarm(&self) {
        lock(&self.shared.armed).clear();
    }

    /// How many proxied connections are open (connected to the upstream and not yet closed).
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.conns)
            .values()
            .filter(|conn| !conn.is_closed())
            .count()
    }

    /// Closes every open proxied connection now, both sides (like a server restart seen from
    /// the client), and leaves the listener up so that new connections work. When it returns,
    /// the clients' sockets are shut down: their next read sees EOF.
    pub fn cut_all(&self) {
        self.shared.close_all();
    }

    /// While `true`, the network hangs: no bytes are forwarded in either direction, on existing
    /// and new connections (new ones are still accepted and connected upstream); bytes already
    /// read are held. Setting it back to `false` forwards everything held, in order.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Whether the network hangs now ([`FaultProxy::set_stalled`],
    /// [`FaultProxy::drop_reply_after_then_stall`]).
    pub fn is_stalled(&self) -> bool {
        self.shared.stalled()
    }

    /// The connections open now hang for good: nothing more is forwarded on them, either way
    /// (bytes already read are held), until [`FaultProxy::cut_all`] or the proxy's drop, while
    /// connections accepted afterwards work normally. A connection that stopped answering
    /// without closing (a lost NAT entry, a server behind a failover), which only a client
    /// that gives up on it and connects anew gets past. Returns how many hang.
    pub fn hang_open_connections(&self) -> usize {
        let conns = lock(&self.shared.conns);
        let open = conns.values().filter(|conn| !conn.is_closed());
        open.map(|conn| conn.hung.store(true, Ordering::SeqCst))
            .count()
    }
}

impl Drop for FaultProxy {
    /// Stops the listener (the port refuses connections once this returns), closes every
    /// proxied connection and joins all of the proxy's threads.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.close_all();
        if let Some(accept) = self.accept.take() {
            // A panicked thread has nothing left to clean up; drop cannot report it.
            let _ = accept.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    /// The request is forwarded, its reply dropped; with `then_stall`, the proxy stalls when
    /// the reply's first byte arrives.
    DropReply {
        then_stall: bool,
    },
    DropRequest,
}

struct Armed {
    needle: Vec<u8>,
    kind: FaultKind,
}

struct Shared {
    upstream: SocketAddr,
    stop: AtomicBool,
    stalled: AtomicBool,
    armed: Mutex<Vec<Armed>>,
    fired: AtomicUsize,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Shared {
    fn new(upstream: SocketAddr) -> Self {
        Shared {
            upstream,
            stop: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            armed: Mutex::new(Vec::new()),
            fired: AtomicUsize::new(0),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn stalled(&self) -> bool {
        self.stalled.load(Ordering::SeqCst)
    }

    fn arm(&self, needle: &[u8], kind: FaultKind) {
        lock(&self.armed).push(Armed {
            needle: needle.to_vec(),
            kind,
        });
    }

    /// The first armed fault whose needle ends inside `chunk` (`tail` being the bytes that came
    /// just before it on the same connection), disarmed and counted as fired.
    fn take_fault(&self, tail: &[u8], chunk: &[u8]) -> Option<FaultKind> {
        let mut armed = lock(&self.armed);
        if armed.is_empty() {
            return None;
        }
        let window = [tail, chunk].concat();
        let index = armed
            .iter()
            .position(|fault| ends_in_chunk(&window, tail.len(), &fault.needle))?;
        let fault = armed.remove(index);
        self.fired.fetch_add(1, Ordering::SeqCst);
        Some(fault.kind)
    }

    fn close_all(&self) {
        for conn in lock(&self.conns).values() {
            conn.close();
        }
    }
}

/// Whether `needle` occurs in `window` ending after its first `tail_len` bytes (matches wholly
/// inside the tail were looked at with the previous chunk).
fn ends_in_chunk(window: &[u8], tail_len: usize, needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let start = tail_len.saturating_sub(needle.len() - 1);
    window
        .get(start..)
        .is_some_and(|rest| rest.windows(needle.len()).any(|w| w == needle))
}

/// One proxied connection: the client's socket and the upstream socket.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    closed: AtomicBool,
    /// Set by [`FaultProxy::hang_open_connections`]: nothing is forwarded any more.
    hung: AtomicBool,
    /// Set when a lost-reply fault fired on this connection.
    lost_reply: Mutex<Option<LostReply>>,
}

#[derive(Debug, Clone, Copy)]
struct LostReply {
    /// When the request was forwarded.
    since: Instant,
    /// When the server last sent bytes after that (all dropped).
    last_reply: Option<Instant>,
    /// Stall the proxy when the first reply byte arrives (`FaultKind::DropReply { then_stall }`).
    stall_on_reply: bool,
}

impl LostReply {
    fn should_close(&self, now: Instant) -> bool {
        now.duration_since(self.since) >= LOST_REPLY_MAX_WAIT
            || self
                .last_reply
                .is_some_and(|at| now.duration_since(at) >= LOST_REPLY_QUIET)
    }
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn is_hung(&self) -> bool {
        self.hung.load(Ordering::SeqCst)
    }

    /// Shuts both sockets down (both directions): the peers see EOF, and the pumps stop.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }

    fn lost_reply(&self) -> MutexGuard<'_, Option<LostReply>> {
        lock(&self.lost_reply)
    }

    /// Whether a pump should stop: the proxy is dropped or this connection closed.
    fn done(&self, shared: &Shared) -> bool {
        shared.stopping() || self.is_closed()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bind_loopback() -> io::Result<TcpListener> {
    for _ in 0..32 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        if listener.local_addr()?.port() != DEFAULT_REDIS_PORT {
            return Ok(listener);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "no free loopback port found",
    ))
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping() {
        match listener.accept() {
            Ok((client, _)) => {
                let shared_for_conn = Arc::clone(shared);
                let spawned = thread::Builder::new()
                    .name(format!("fault-proxy-{}-conn", shared.upstream.port()))
                    .spawn(move || run_connection(&shared_for_conn, client));
                // A connection whose thread cannot start is dropped (closed) with the closure.
                if let Ok(handle) = spawned {
                    threads.push(handle);
                }
            }
            Err(err) if is_timeout(&err) => thread::sleep(ACCEPT_POLL),
            // E.g. too many open files: wait a little rather than spin.
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
        // Join the threads of connections that ended, so the list stays short.
        let (finished, running): (Vec<_>, Vec<_>) =
            threads.into_iter().partition(JoinHandle::is_finished);
        threads = running;
        for handle in finished {
            let _ = handle.join();
        }
    }
    drop(listener);
    shared.close_all();
    for handle in threads {
        let _ = handle.join();
    }
}

/// Connects upstream and pumps both directions until the connection closes or the proxy stops.
fn run_connection(shared: &Arc<Shared>, client: TcpStream) {
    let Ok(upstream) = TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT) else {
        return; // dropping `client` closes it: the client sees its connection refused late
    };
    if configure(&client).and(configure(&upstream)).is_err() {
        return;
    }
    let conn = Arc::new(Conn {
        client,
        upstream,
        closed: AtomicBool::new(false),
        hung: AtomicBool::new(false),
        lost_reply: Mutex::new(None),
    });
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    lock(&shared.conns).insert(id, Arc::clone(&conn));
    // `Drop` sets `stop` before it closes the registered connections: either it saw this one,
    // or this check sees `stop`.
    if shared.stopping() {
        conn.close();
    }
    let replies = {
        let shared = Arc::clone(shared);
        let conn = Arc::clone(&conn);
        thread::Builder::new()
            .name(format!("fault-proxy-{}-reply", shared.upstream.port()))
            .spawn(move || server_to_client(&shared, &conn))
    };
    match replies {
        Ok(replies) => {
            client_to_server(shared, &conn);
            let _ = replies.join();
        }
        Err(_) => conn.close(),
    }
    conn.close();
    lock(&shared.conns).remove(&id);
}

fn configure(stream: &TcpStream) -> io::Result<()> {
    // Accepted sockets inherit the listener's non-blocking mode on some platforms.
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(WRITE_POLL))
}

/// Waits while the network is stalled (or this connection hangs); `false` when the connection
/// ended meanwhile.
fn wait_while_stalled(shared: &Shared, conn: &Conn) -> bool {
    while shared.stalled() || conn.is_hung() {
        if conn.done(shared) {
            return false;
        }
        thread::sleep(POLL);
    }
    !conn.done(shared)
}

/// Writes all of `bytes` to `to`, retrying timed-out writes until the connection ends.
fn forward(shared: &Shared, conn: &Conn, mut to: &TcpStream, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        if conn.done(shared) {
            return false;
        }
        match to.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(err) if is_timeout(&err) => {}
            Err(_) => return false,
        }
    }
    true
}

fn client_to_server(shared: &Shared, conn: &Conn) {
    let mut buf = vec![0u8; BUFFER];
    let mut tail: Vec<u8> = Vec::new();
    let mut from = &conn.client;
    loop {
        if !wait_while_stalled(shared, conn) {
            return;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                // The client is done sending: pass the half-close on, and let the other pump
                // deliver what the server still answers.
                let _ = conn.upstream.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(err) if is_timeout(&err) => continue,
            Err(_) => {
                conn.close();
                return;
            }
        };
        let chunk = buf.get(..n).unwrap_or_default();
        // A connection already losing a reply is doomed: it takes no further faults.
        let doomed = conn.lost_reply().is_some();
        match (!doomed).then(|| shared.take_fault(&tail, chunk)).flatten() {
            Some(FaultKind::DropRequest) => {
                conn.close();
                return;
            }
            Some(FaultKind::DropReply { then_stall }) => {
                // Before forwarding: no byte of the reply may reach the client.
                *conn.lost_reply() = Some(LostReply {
                    since: Instant::now(),
                    last_reply: None,
                    stall_on_reply: then_stall,
                });
            }
            None => {}
        }
        remember_tail(&mut tail, chunk);
        if !wait_while_stalled(shared, conn) || !forward(shared, conn, &conn.upstream, chunk) {
            conn.close();
            return;
        }
    }
}

fn remember_tail(tail: &mut Vec<u8>, chunk: &[u8]) {
    tail.extend_from_slice(chunk);
    let excess = tail.len().saturating_sub(TAIL_MAX);
    tail.drain(..excess);
}

fn server_to_client(shared: &Shared, conn: &Conn) {
    let mut buf = vec![0u8; BUFFER];
    let mut from = &conn.upstream;
    loop {
        if conn.done(shared) {
            return;
        }
        let lost = *conn.lost_reply();
        if lost.is_some_and(|lost| lost.should_close(Instant::now())) {
            conn.close();
            return;
        }
        if shared.stalled() || conn.is_hung() {
            thread::sleep(POLL);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(n) if n > 0 => n,
            Err(err) if is_timeout(&err) => continue,
            // The server hung up (after a lost-reply request too: that reply is lost all the
            // same), or the socket failed: close the client's side as well.
            Ok(_) | Err(_) => {
                conn.close();
                return;
            }
        };
        if let Some(lost) = conn.lost_reply().as_mut() {
            if lost.last_reply.is_none() && lost.stall_on_reply {
                shared.stalled.store(true, Ordering::SeqCst);
            }
            lost.last_reply = Some(Instant::now());
            continue; // dropped
        }
        let chunk = buf.get(..n).unwrap_or_default();
        if !wait_while_stalled(shared, conn) || !forward(shared, conn, &conn.client, chunk) {
            conn.close();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needles_match_only_when_they_end_in_the_new_chunk() {
        // Wholly in the tail: already looked at.
        assert!(!ends_in_chunk(b"INCRxyz", 4, b"INCR"));
        // Spanning the boundary.
        assert!(ends_in_chunk(b"INCRxyz", 2, b"INCR"));
        // Wholly in the chunk.
        assert!(ends_in_chunk(b"abINCR", 2, b"INCR"));
        assert!(!ends_in_chunk(b"abINC", 2, b"INCR"));
        // Empty needles match anything, long needles nothing shorter.
        assert!(ends_in_chunk(b"x", 0, b""));
        assert!(!ends_in_chunk(b"ab", 0, b"abc"));
    }

    #[test]
    fn the_tail_keeps_the_last_bytes_only() {
        let mut tail = Vec::new();
        remember_tail(&mut tail, &[1; TAIL_MAX]);
        remember_tail(&mut tail, &[2; 10]);
        assert_eq!(tail.len(), TAIL_MAX);
        assert_eq!(tail.get(TAIL_MAX - 10..), Some(&[2; 10][..]));
    }

    #[test]
    fn a_fault_fires_once() {
        let shared = Shared::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)));
        shared.arm(b"INCR", FaultKind::DropRequest);
        shared.arm(b"GET", FaultKind::DropReply { then_stall: false });
        assert_eq!(shared.take_fault(b"", b"SET k v"), None);
        assert_eq!(
            shared.take_fault(b"", b"GET INCR"),
            Some(FaultKind::DropRequest)
        );
        assert_eq!(shared.take_fault(b"", b"INCR"), None);
        assert_eq!(
            shared.take_fault(b"", b"GET"),
            Some(FaultKind::DropReply { then_stall: false })
        );
        assert_eq!(shared.take_fault(b"", b"GET"), None);
        assert_eq!(shared.fired.load(Ordering::SeqCst), 2);
    }
}
