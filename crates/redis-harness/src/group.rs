//! What the setups of several servers ([`RedisCluster`](crate::RedisCluster),
//! [`SentinelSet`](crate::SentinelSet)) share: distinct free ports, waiting for a state of the
//! whole group, signalling one pid, fresh node directories.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::server::free_port;

/// How often a wait asks the servers again.
const POLL: Duration = Duration::from_millis(50);
/// How many times a node is started again on new ports when one it picked was taken meanwhile.
pub(crate) const PORT_ATTEMPTS: usize = 5;

/// Free loopback ports, none handed out twice by the same picker (a port the kernel just
/// reported free is likely to be reported again before anything binds it).
#[derive(Debug, Default)]
pub(crate) struct Ports {
    taken: HashSet<u16>,
}

impl Ports {
    /// A free port (never 6379) this picker has not handed out before.
    pub(crate) fn pick(&mut self) -> io::Result<u16> {
        for _ in 0..64 {
            let port = free_port()?;
            if self.taken.insert(port) {
                return Ok(port);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "no free loopback port found that was not already handed out",
        ))
    }
}

/// Whether a start failed only because a port was taken between picking and binding.
pub(crate) fn port_was_taken(err: &io::Error) -> bool {
    err.to_string().contains("Address already in use")
}

/// Calls `check` until it returns `Ok`, every [`POLL`], for at most `timeout`; then fails with
/// `what` and the last reason `check` gave.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> io::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(why) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{what}: not within {:.1}s (last: {why})",
                        timeout.as_secs_f64()
                    ),
                ));
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Sends SIGKILL to `pid` (the `kill` command: the crate forbids unsafe code).
pub(crate) fn kill_9(pid: u32) -> io::Result<()> {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -KILL {pid} failed ({status})"
        )))
    }
}

/// Empties `dir` (removing what an earlier run left) and creates it.
pub(crate) fn fresh_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(io::Error::new(
                err.kind(),
                format!("cannot empty {}: {err}", dir.display()),
            ));
        }
    }
    fs::create_dir_all(dir)
}

/// The `key:value` fields of an `INFO` reply (or of `CLUSTER INFO`).
pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
}

/// The value after `key` in a flattened reply of key/value pairs (`SENTINEL MASTER`): the
/// lines alternate key, value.
pub(crate) fn pair_value<'a>(pairs: &[&'a str], key: &str) -> Option<&'a str> {
    pairs.chunks(2).find_map(|pair| match pair {
        [k, v] if *k == key => Some(*v),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_and_pairs_are_found_by_exact_name() {
        let info = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n";
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "master_link"), None);
        let pairs = ["name", "mymaster", "flags", "master", "num-slaves", "1"];
        assert_eq!(pair_value(&pairs, "flags"), Some("master"));
        assert_eq!(pair_value(&pairs, "master"), None);
    }

    #[test]
    fn ports_are_never_handed_out_twice() -> io::Result<()> {
        let mut ports = Ports::default();
        let picked: Vec<u16> = (0..20).map(|_| ports.pick()).collect::<io::Result<_>>()?;
        let distinct: HashSet<u16> = picked.iter().copied().collect();
        assert_eq!(distinct.len(), picked.len());
        assert!(!picked.contains(&6379));
        Ok(())
    }
}
