//! `cargo xtask redis start|stop|status`: one long-lived development Redis per checkout.
//!
//! It lives in `.xtask/redis/` (gitignored): `data/` is its working directory (AOF, log),
//! `server.state` records its pid and port, `last-port` the port to try again next time. It outlives xtask; `stop` stops exactly that pid.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use redis_harness::{RedisServer, ServerOptions, command_on};

use crate::{Result, process, provide};

fn state_dir() -> PathBuf {
    process::workspace_root().join(".xtask").join("redis")
}

fn state_file() -> PathBuf {
    state_dir().join("server.state")
}

/// What `start` left behind for `status` and `stop`.
#[derive(Debug, PartialEq)]
struct State {
    pid: u32,
    port: u16,
}

impl State {
    fn read() -> Result<Option<State>> {
        let path = state_file();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(format!("cannot read {}: {err}", path.display()).into()),
        };
        State::parse(&text)
            .map(Some)
            .ok_or_else(|| format!("{} is damaged; remove it", path.display()).into())
    }

    fn parse(text: &str) -> Option<State> {
        let mut pid = None;
        let mut port = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("pid", value)) => pid = value.trim().parse().ok(),
                Some(("port", value)) => port = value.trim().parse().ok(),
                _ => {}
            }
        }
        Some(State {
            pid: pid?,
            port: port?,
        })
    }

    fn write(&self) -> Result<()> {
        let text = format!(
            "# written by `cargo xtask redis start`\npid={}\nport={}\n",
            self.pid, self.port
        );
        fs::write(state_file(), text)?;
        Ok(())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Running and ours: the pid is alive and the server on the port reports that pid.
    fn is_running(&self) -> bool {
        process::pid_alive(self.pid)
            && command_on(self.port, None, &["INFO", "server"]).is_ok_and(|info| {
                info.lines()
                    .any(|l| l.trim() == format!("process_id:{}", self.pid))
            })
    }
}

/// `cargo xtask redis start`.
pub(crate) fn start() -> Result<ExitCode> {
    let previous = State::read()?;
    if let Some(state) = &previous
        && state.is_running()
    {
        println!(
            "xtask: Redis already running: {} (pid {})",
            state.url(),
            state.pid
        );
        print_hint(state);
        return Ok(ExitCode::SUCCESS);
    }
    let binary = provide::redis_server()?;
    // The same port as last time when it is free, so a URL in a shell or .env stays valid.
    let last_port = state_dir().join("last-port");
    let port = previous
        .map(|state| state.port)
        .or_else(|| fs::read_to_string(&last_port).ok()?.trim().parse().ok())
        .filter(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_ok());
    let data = state_dir().join("data");
    let server = RedisServer::start(ServerOptions {
        binary: Some(binary.path),
        appendonly: true,
        dir: Some(data.clone()),
        port,
        ..ServerOptions::default()
    })?;
    let state = State {
        pid: server.pid(),
        port: server.port(),
    };
    // Record the pid before anything else can fail, then let the server outlive xtask.
    let written = state.write();
    let pid = server.detach();
    written?;
    // Only a convenience for the next start: losing it just means another port.
    let _ = fs::write(&last_port, format!("{}\n", state.port));
    println!("xtask: Redis running: {} (pid {pid})", state.url());
    println!("  data (AOF) and log: {}", data.display());
    println!("  stop it with `cargo xtask redis stop`");
    print_hint(&state);
    Ok(ExitCode::SUCCESS)
}

fn print_hint(state: &State) {
    println!("  export REDIS_URL={}", state.url());
    println!(
        "  (or SESSION_TEST_REDIS_URL={} for the tests)",
        state.url()
    );
}

/// `cargo xtask redis status`: exit code 0 when running, 1 when not.
pub(crate) fn status() -> Result<ExitCode> {
    match State::read()? {
        Some(state) if state.is_running() => {
            println!("running: {} (pid {}, answers PING)", state.url(), state.pid);
            Ok(ExitCode::SUCCESS)
        }
        Some(state) if process::pid_alive(state.pid) => {
            println!(
                "not answering: pid {} is alive but no Redis with that pid answers on port {}",
                state.pid, state.port
            );
            Ok(ExitCode::FAILURE)
        }
        Some(state) => {
            println!(
                "not running (pid {} from {} is gone)",
                state.pid,
                state_file().display()
            );
            Ok(ExitCode::FAILURE)
        }
        None => {
            println!("not running (start it with `cargo xtask redis start`)");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `cargo xtask redis stop`: SHUTDOWN (flushes the AOF), else SIGTERM to the recorded pid.
pub(crate) fn stop() -> Result<ExitCode> {
    let Some(state) = State::read()? else {
        println!("not running (no {})", state_file().display());
        return Ok(ExitCode::SUCCESS);
    };
    if !process::pid_alive(state.pid) {
        fs::remove_file(state_file())?;
        println!("not running (pid {} was already gone)", state.pid);
        return Ok(ExitCode::SUCCESS);
    }
    if state.is_running() {
        // Only after checking that the server on the port is our pid.
        let _ = command_on(state.port, None, &["SHUTDOWN"]);
        if wait_gone(state.pid, Duration::from_secs(10)) {
            fs::remove_file(state_file())?;
            println!(
                "stopped pid {} (data kept in {})",
                state.pid,
                state_dir().join("data").display()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    // The pid might have been reused by an unrelated process since `start`: signal it only
    // when it is a redis-server.
    if !is_redis_server(state.pid) {
        fs::remove_file(state_file())?;
        println!(
            "pid {} is not a redis-server any more; left it alone and removed the stale state",
            state.pid
        );
        return Ok(ExitCode::SUCCESS);
    }
    let term = Command::new("kill")
        .args(["-TERM", &state.pid.to_string()])
        .stderr(Stdio::null())
        .status()?;
    if term.success() && wait_gone(state.pid, Duration::from_secs(10)) {
        fs::remove_file(state_file())?;
        println!("stopped pid {} with SIGTERM", state.pid);
        return Ok(ExitCode::SUCCESS);
    }
    Err(format!(
        "pid {} did not stop; check it with `ps -p {}`",
        state.pid, state.pid
    )
    .into())
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

fn is_redis_server(pid: u32) -> bool {
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => String::from_utf8_lossy(&cmdline).contains("redis-server"),
        // Without /proc there is no cheap check; `ps` is everywhere else.
        Err(_) => Command::new("ps")
            .args(["-o", "comm=", "-p", &pid.to_string()])
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("redis-server")),
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn state_round_trips_and_rejects_damage() {
        let state = State::parse("# comment\npid=42\nport=40001\n");
        assert_eq!(
            state,
            Some(State {
                pid: 42,
                port: 40001
            })
        );
        assert_eq!(State::parse("pid=42\n"), None);
        assert_eq!(State::parse("pid=x\nport=1\n"), None);
    }
}
