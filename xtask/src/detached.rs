//! Groups of servers that outlive xtask (`cargo xtask cluster|sentinel start`): a state file
//! records each process's role, pid and port; `status` checks that the pid still answers on
//! its port; `stop` stops exactly those pids.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use redis_harness::command_on;

use crate::provide::Kind;
use crate::{Result, process};

/// One process of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// `primary`, `replica`, `master`, `sentinel` ...: what it was at start.
    pub(crate) role: String,
    pub(crate) pid: u32,
    pub(crate) port: u16,
}

impl Member {
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Running and ours: the pid is alive and the server on the port reports that pid.
    pub(crate) fn answers(&self) -> bool {
        process::pid_alive(self.pid)
            && command_on(self.port, None, &["INFO", "server"]).is_ok_and(|info| {
                info.lines()
                    .any(|l| l.trim() == format!("process_id:{}", self.pid))
            })
    }
}

/// What `start` left behind for `status` and `stop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) server: Kind,
    /// The Sentinel master name (`sentinel` only).
    pub(crate) master_name: Option<String>,
    pub(crate) members: Vec<Member>,
}

impl Record {
    pub(crate) fn read(path: &Path) -> Result<Option<Record>> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(format!("cannot read {}: {err}", path.display()).into()),
        };
        Record::parse(&text)
            .map(Some)
            .ok_or_else(|| format!("{} is damaged; remove it", path.display()).into())
    }

    fn parse(text: &str) -> Option<Record> {
        let mut server = None;
        let mut master_name = None;
        let mut members = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            match line.split_once('=') {
                Some(("server", "redis")) => server = Some(Kind::Redis),
                Some(("server", "valkey")) => server = Some(Kind::Valkey),
                Some(("master_name", name)) => master_name = Some(name.trim().to_owned()),
                Some(("node", value)) => {
                    let mut fields = value.split_whitespace();
                    members.push(Member {
                        role: fields.next()?.to_owned(),
                        pid: fields.next()?.parse().ok()?,
                        port: fields.next()?.parse().ok()?,
                    });
                }
                Some(_) => return None,
                None if line.trim().is_empty() => {}
                None => return None,
            }
        }
        if members.is_empty() {
            return None;
        }
        Some(Record {
            server: server?,
            master_name,
            members,
        })
    }

    pub(crate) fn write(&self, path: &Path, by: &str) -> Result<()> {
        let mut text = format!("# written by `{by}`\nserver={}\n", self.server.name());
        if let Some(name) = &self.master_name {
            text.push_str(&format!("master_name={name}\n"));
        }
        for member in &self.members {
            text.push_str(&format!(
                "node={} {} {}\n",
                member.role, member.pid, member.port
            ));
        }
        fs::write(path, text).map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        Ok(())
    }

    /// The members whose pid is still alive (answering or not).
    pub(crate) fn alive(&self) -> Vec<&Member> {
        self.members
            .iter()
            .filter(|m| process::pid_alive(m.pid))
            .collect()
    }
}

/// Stops `members` in the order given: `SHUTDOWN NOSAVE` when the server on the port is that
/// pid, else SIGTERM when the pid is still a redis-server / valkey-server (a pid reused by
/// anything else is left alone). Returns a line per member; an error when one did not stop.
pub(crate) fn stop(members: &[&Member]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for member in members {
        let what = format!("{} pid {} (port {})", member.role, member.pid, member.port);
        if !process::pid_alive(member.pid) {
            lines.push(format!("{what}: already gone"));
            continue;
        }
        if member.answers() {
            // Only after checking that the server on the port is our pid.
            let _ = command_on(member.port, None, &["SHUTDOWN", "NOSAVE"]);
            if wait_gone(member.pid, Duration::from_secs(10)) {
                lines.push(format!("{what}: stopped"));
                continue;
            }
        }
        if !is_server_process(member.pid) {
            lines.push(format!(
                "{what}: the pid is no redis-server or valkey-server any more; left it alone"
            ));
            continue;
        }
        let term = Command::new("kill")
            .args(["-TERM", &member.pid.to_string()])
            .stderr(Stdio::null())
            .status()?;
        if term.success() && wait_gone(member.pid, Duration::from_secs(10)) {
            lines.push(format!("{what}: stopped with SIGTERM"));
        } else {
            failed.push(what);
        }
    }
    if !failed.is_empty() {
        return Err(format!(
            "did not stop: {}; check with `ps -p PID`",
            failed.join(", ")
        )
        .into());
    }
    Ok(lines)
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while process::pid_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    true
}

fn is_server_process(pid: u32) -> bool {
    let is_server = |text: &str| text.contains("redis-server") || text.contains("valkey-server");
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => is_server(&String::from_utf8_lossy(&cmdline)),
        // Without /proc there is no cheap check; `ps` is everywhere else.
        Err(_) => Command::new("ps")
            .args(["-o", "comm=", "-p", &pid.to_string()])
            .output()
            .is_ok_and(|out| is_server(&String::from_utf8_lossy(&out.stdout))),
    }
}

#[cfg(test)]
mod tests {
    use super::{Kind, Member, Record};

    #[test]
    fn records_round_trip_and_reject_damage() {
        let record = Record {
            server: Kind::Valkey,
            master_name: Some("mymaster".to_owned()),
            members: vec![
                Member {
                    role: "master".to_owned(),
                    pid: 42,
                    port: 40001,
                },
                Member {
                    role: "sentinel".to_owned(),
                    pid: 43,
                    port: 40002,
                },
            ],
        };
        let dir = std::env::temp_dir().join(format!("xtask-detached-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        record.write(&path, "cargo xtask sentinel start").unwrap();
        assert_eq!(Record::read(&path).unwrap(), Some(record));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(Record::parse("server=redis\n"), None, "no members");
        assert_eq!(Record::parse("server=redis\nnode=primary x 1\n"), None);
        assert_eq!(Record::parse("node=primary 1 2\n"), None, "no server");
        assert_eq!(
            Record::parse("server=redis\nnode=primary 1 2\njunk\n"),
            None
        );
    }
}
