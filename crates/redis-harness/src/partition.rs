//! A network partition for real: a network namespace of the test's own, joined to the host
//! by a veth pair, whose link can be cut so that packets vanish (no RST, no ICMP: a connect or
//! a command then hangs instead of failing, as behind a dead switch or a firewall that drops).

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::env;
use crate::server::ServerOptions;

/// Where the `/30` links of partitions are carved from: 10.192.0.0/10, a block no usual
/// network uses. Each partition takes one `/30` (host end `.1`, namespace end `.2`).
const LINK_BLOCK: u32 = u32::from_be_bytes([10, 192, 0, 0]);
/// `/30` links in [`LINK_BLOCK`].
const LINKS: u32 = 1 << 20;

/// A network namespace with one veth link to the host: a server started in it
/// ([`Partition::server_options`]) is reachable from the host at [`Partition::address`] while
/// the link is up, and silently unreachable after [`Partition::cut`], until
/// [`Partition::heal`].
///
/// The addresses exist only on the two ends of the link. Creating one needs root (or
/// `CAP_NET_ADMIN`) and the `ip` command of iproute2; [`Partition::for_test`] skips the test
/// (or fails it when Redis tests are required) where that is missing. Dropping the partition
/// deletes the link and the namespace; it kills no process: stop the server in it first (a
/// [`RedisServer`](crate::RedisServer) declared after the partition is dropped before it).
///
/// ```no_run
/// use redis_harness::{Partition, RedisServer, ServerOptions};
///
/// # fn main() -> std::io::Result<()> {
/// let Some(partition) = Partition::for_test("my_test") else { return Ok(()) };
/// let server = RedisServer::start(partition.server_options(ServerOptions::default()))?;
/// println!("connect to {}", server.url()); // redis://10.x.y.2:PORT
/// partition.cut()?; // packets to and from the server vanish
/// partition.heal()?;
/// # Ok(())
/// # }
/// ```
pub struct Partition {
    ip: PathBuf,
    name: String,
    host_if: String,
    ns_if: String,
    host_addr: Ipv4Addr,
    ns_addr: Ipv4Addr,
    /// What exists so far, for `Drop` to remove after a setup that failed half-way.
    made_netns: bool,
    made_link: bool,
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("netns", &self.name)
            .field("host", &format!("{} ({})", self.host_addr, self.host_if))
            .field("namespace", &format!("{} ({})", self.ns_addr, self.ns_if))
            .finish()
    }
}

impl Partition {
    /// A partition for `test`, or `None` after the `SKIPPED` line when this machine cannot
    /// make one (not root, no `ip`, namespaces refused). Panics instead, naming `test` and the
    /// reason, when Redis tests are required ([`env::REQUIRE`]) unless [`env::REQUIRE_NETNS`]
    /// is `0`.
    pub fn for_test(test: &str) -> Option<Partition> {
        let why = if !is_root() {
            "not root: creating a network namespace needs root (or CAP_NET_ADMIN)".to_owned()
        } else if !ip_binary().is_file() {
            "no `ip` command (iproute2) to create a network namespace".to_owned()
        } else {
            match Partition::create() {
                Ok(partition) => return Some(partition),
                Err(err) => format!("cannot create a network namespace: {err}"),
            }
        };
        env::skip_or_require_netns(test, &why)
    }

    /// Creates the namespace, the veth pair and the addresses, and brings the link up.
    ///
    /// Errors: an `ip` command failed (its stderr is in the message). Whatever was created
    /// before the failure is removed again.
    pub fn create() -> io::Result<Partition> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Unique per process and partition; interface names have at most 15 bytes.
        let tag = format!("{:05x}{:02x}", pid & 0xf_ffff, n & 0xff);
        let link = (pid.wrapping_mul(64).wrapping_add(n)) % LINKS;
        let base = LINK_BLOCK + link * 4;
        let mut partition = Partition {
            ip: ip_binary(),
            name: format!("rh-{tag}"),
            host_if: format!("rh{tag}h"),
            ns_if: format!("rh{tag}n"),
            host_addr: Ipv4Addr::from(base + 1),
            ns_addr: Ipv4Addr::from(base + 2),
            made_netns: false,
            made_link: false,
        };
        partition.ip(["netns", "add", &partition.name])?;
        partition.made_netns = true;
        // Fixed, locally administered MACs, so that each end can know the other's for good.
        let mac = |end: u8| {
            let [_, a, b, c] = pid.to_be_bytes();
            format!("02:{a:02x}:{b:02x}:{c:02x}:{:02x}:{end:02x}", n & 0xff)
        };
        let (host_mac, ns_mac) = (mac(1), mac(2));
        partition.ip([
            "link",
            "add",
            "name",
            &partition.host_if,
            "address",
            &host_mac,
            "type",
            "veth",
            "peer",
            "name",
            &partition.ns_if,
            "address",
            &ns_mac,
        ])?;
        partition.made_link = true;
        partition.ip(["link", "set", &partition.ns_if, "netns", &partition.name])?;
        let host_cidr = format!("{}/30", partition.host_addr);
        partition.ip(["addr", "add", &host_cidr, "dev", &partition.host_if])?;
        partition.ip(["link", "set", &partition.host_if, "up"])?;
        let ns_cidr = format!("{}/30", partition.ns_addr);
        partition.ip_in_ns(["addr", "add", &ns_cidr, "dev", &partition.ns_if])?;
        partition.ip_in_ns(["link", "set", "lo", "up"])?;
        partition.heal()?;
        // Permanent neighbour entries on both ends: without them, ARP fails a few seconds
        // into a cut and the kernel answers "no route to host", which is a refusal, not a
        // partition. With them, packets are sent and vanish.
        let ns_addr = partition.ns_addr.to_string();
        partition.ip([
            "neigh",
            "replace",
            &ns_addr,
            "lladdr",
            &ns_mac,
            "dev",
            &partition.host_if,
            "nud",
            "permanent",
        ])?;
        let host_addr = partition.host_addr.to_string();
        let ns_if = partition.ns_if.clone();
        partition.ip_in_ns([
            "neigh",
            "replace",
            &host_addr,
            "lladdr",
            &host_mac,
            "dev",
            &ns_if,
            "nud",
            "permanent",
        ])?;
        Ok(partition)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn namespace(&self) -> &str {
        &self.name
    }

    /// The namespace's end of the link: where a server in it listens.
    pub fn address(&self) -> Ipv4Addr {
        self.ns_addr
    }

    /// The host's end of the link: where the server's clients come from.
    pub fn host_address(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// `base` for a server inside the namespace, listening on [`address`](Self::address).
    pub fn server_options(&self, base: ServerOptions) -> ServerOptions {
        ServerOptions {
            netns: Some(self.name.clone()),
            bind: Some(self.ns_addr),
            ..base
        }
    }

    /// `address:port`.
    pub fn socket_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ns_addr, port))
    }

    /// Cuts the link: the namespace's end goes down, and every packet between host and
    /// namespace is dropped without a word (the host's end stays up, so the route stays:
    /// nothing answers "unreachable"). Connections stay open on both sides, hanging.
    pub fn cut(&self) -> io::Result<()> {
        self.ip_in_ns(["link", "set", &self.ns_if, "down"])
    }

    /// Brings the link back up: packets flow again, and connections that survived resume.
    pub fn heal(&self) -> io::Result<()> {
        self.ip_in_ns(["link", "set", &self.ns_if, "up"])
    }

    fn ip<I, S>(&self, args: I) -> io::Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&self.ip, args)
    }

    fn ip_in_ns<'a>(&'a self, args: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend(args);
        self.ip(all)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both. Errors cannot be reported from drop.
        if self.made_link {
            let _ = run(&self.ip, ["link", "del", &self.host_if]);
        }
        if self.made_netns {
            let _ = run(&self.ip, ["netns", "del", &self.name]);
        }
    }
}

fn run<I, S>(ip: &Path, args: I) -> io::Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let output = Command::new(ip).args(&args).stdin(Stdio::null()).output()?;
    if output.status.success() {
        return Ok(());
    }
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    Err(io::Error::other(format!(
        "`ip {}` failed ({}): {}",
        shown.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// The `ip` command: on `PATH`, else where distributions put it (`/usr/sbin`, `/sbin`, which
/// a non-root `PATH` may lack).
pub(crate) fn ip_binary() -> PathBuf {
    env::find_on_path("ip")
        .or_else(|| {
            ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("ip"))
}

/// Whether this process runs as root (uid 0), from `/proc/self/status` (no libc call: the
/// crate forbids unsafe code).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_stay_inside_their_block_and_do_not_overlap() {
        let last = LINK_BLOCK + (LINKS - 1) * 4 + 3;
        assert_eq!(Ipv4Addr::from(last), Ipv4Addr::new(10, 255, 255, 255));
        assert_eq!(Ipv4Addr::from(LINK_BLOCK), Ipv4Addr::new(10, 192, 0, 0));
    }
}
