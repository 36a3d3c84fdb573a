//! What the demo tests (`demo_e2e.rs`, `demo_faults.rs`) share: building the binaries, real
//! `session-demo` processes on free loopback ports, a minimal HTTP/1.1 client, and a scratch
//! directory for their logs.
//!
//! The binaries `session-demo` and `sessionctl` are built with
//! `$CARGO build -p session-demo -p sessionctl --all-features` (cargo sets `CARGO` for tests;
//! a no-op when they are fresh) and taken from the target directory next to the test's
//! executable. The children run with a clean environment: `PATH`, the repository's `config/`
//! with `APP_ENV=test`, `USE_REDIS`, `SESSION_FALLBACK=none` (a Redis problem fails the demo
//! instead of sending it to memory), `REDIS_URL`, `REDIS_KEY_PREFIX`, `LOG_FORMAT=json`;
//! [`Demo::start_with`] adds variables of the test's own (another `SESSION_FALLBACK`, short
//! Redis timeouts) and can wait for a demo that starts on a fallback.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::{
    fs::File,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use integration_tests::unique;
use serde_json::{Value, json};

/// How long a demo may take to answer `/healthz` after it is started.
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a demo may take to exit after SIGTERM.
pub(crate) const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// The name of the running test, for messages (libtest names each test's thread after it).
fn test_name() -> String {
    thread::current().name().unwrap_or("demo test").to_owned()
}

/// The `(role, content)` pairs of a `GET /sessions/{id}` body.
pub(crate) fn history(view: &Value) -> Vec<(String, String)> {
    view["conversation_history"]
        .as_array()
        .unwrap_or_else(|| panic!("no conversation_history: {view}"))
        .iter()
        .map(|turn| {
            (
                turn["role"].as_str().unwrap().to_owned(),
                turn["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The user's messages of a `GET /sessions/{id}` body, in order.
pub(crate) fn user_messages(view: &Value) -> Vec<String> {
    history(view)
        .into_iter()
        .filter(|(role, _)| role == "user")
        .map(|(_, text)| text)
        .collect()
}

/// The binaries under test.
pub(crate) struct Binaries {
    pub(crate) demo: PathBuf,
    pub(crate) sessionctl: PathBuf,
}

impl Binaries {
    /// Builds `session-demo` and `sessionctl` (a no-op when fresh) and finds them in the
    /// target directory of this test executable (`target/<profile>/deps/..`).
    pub(crate) fn build() -> Self {
        let exe = std::env::current_exe().unwrap();
        let dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .unwrap_or_else(|| panic!("no target directory above {}", exe.display()))
            .to_path_buf();
        if let Some(cargo) = std::env::var_os("CARGO") {
            let mut cmd = Command::new(cargo);
            cmd.args([
                "build",
                "-p",
                "session-demo",
                "-p",
                "sessionctl",
                "--all-features",
            ]);
            if dir.file_name().is_some_and(|p| p == "release") {
                cmd.arg("--release");
            }
            // `CARGO_TARGET_DIR` is inherited, so the binaries land beside this executable.
            cmd.current_dir(workspace_root());
            eprintln!("{}: building the binaries: {cmd:?}", test_name());
            let status = cmd.status().unwrap();
            assert!(
                status.success(),
                "building session-demo and sessionctl failed"
            );
        } else {
            eprintln!(
                "{}: CARGO is not set: using the binaries in {}",
                test_name(),
                dir.display()
            );
        }
        let find = |name: &str| {
            let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
            assert!(path.is_file(), "no {} (build it first)", path.display());
            path
        };
        Self {
            demo: find("session-demo"),
            sessionctl: find("sessionctl"),
        }
    }

    /// `sessionctl --url URL --prefix PREFIX show ID`: the state, as JSON.
    pub(crate) fn sessionctl_show(
        &self,
        url: &str,
        prefix: &str,
        id: &str,
        workdir: &Path,
    ) -> Value {
        let output = Command::new(&self.sessionctl)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CONFIG_DIR", workspace_root().join("config"))
            .env("APP_ENV", "test")
            .current_dir(workdir)
            .args(["--url", url, "--prefix", prefix, "show", id])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "sessionctl show failed ({}): {stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("sessionctl show printed no JSON ({e}): {stdout}"))
    }
}

pub(crate) fn workspace_root() -> PathBuf {
    // This crate lives in `<root>/tests`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// What every demo process gets.
pub(crate) struct DemoEnv {
    pub(crate) redis_url: String,
    pub(crate) prefix: String,
    pub(crate) workdir: PathBuf,
    /// Keep sessions in Redis (else in the process's memory).
    pub(crate) use_redis: bool,
}

/// A running `session-demo`, killed when dropped (SIGKILL, as a last resort on failure).
pub(crate) struct Demo {
    name: &'static str,
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

/// What [`Demo::start_with`] waits for before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Awaited {
    /// `/healthz` says `ok` on the configured backend (Redis reachable, or memory).
    Healthy,
    /// `/healthz` answers 200, whatever it reports (a fallback, an unavailable store).
    Serving,
}

impl Demo {
    /// Starts a demo on a free loopback port and waits until `/healthz` reports Redis.
    pub(crate) fn start(binary: &Path, env: &DemoEnv, name: &'static str, logs: &Path) -> Self {
        Self::start_with(binary, env, name, logs, &[], Awaited::Healthy)
    }

    /// Starts a demo with more environment variables `vars` (set after the defaults, so
    /// `SESSION_FALLBACK` can be overridden) and waits for `until`.
    pub(crate) fn start_with(
        binary: &Path,
        env: &DemoEnv,
        name: &'static str,
        logs: &Path,
        vars: &[(&str, &str)],
        until: Awaited,
    ) -> Self {
        let mut last_failure = String::new();
        // A free port can be taken between our probe and the demo's bind: try again then.
        for attempt in 0..3 {
            let port = free_port();
            let log = logs.join(format!("{name}-{attempt}.log"));
            let child = spawn_demo(binary, env, vars, port, &log);
            let mut demo = Demo {
                name,
                child: Some(child),
                port,
                log,
            };
            match demo.wait_started(env.use_redis, until) {
                Ok(()) => return demo,
                Err(why) => {
                    last_failure = format!("{why}\n--- log of {name} ---\n{}", demo.log_text());
                    if let Some(mut child) = demo.child.take() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
            }
        }
        panic!("demo {name} did not start: {last_failure}");
    }

    /// Runs a demo that is expected to refuse to start: its exit status (within
    /// [`STARTUP_TIMEOUT`], else it is killed and the test fails) and everything it printed.
    pub(crate) fn run_to_exit(
        binary: &Path,
        env: &DemoEnv,
        name: &'static str,
        logs: &Path,
        vars: &[(&str, &str)],
    ) -> (ExitStatus, String) {
        let log = logs.join(format!("{name}.log"));
        let mut child = spawn_demo(binary, env, vars, free_port(), &log);
        let status = wait_with_timeout(&mut child, STARTUP_TIMEOUT);
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        match status {
            Some(status) => (status, output),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("demo {name} still runs {STARTUP_TIMEOUT:?} after its start:\n{output}");
            }
        }
    }

    fn wait_started(&mut self, redis: bool, until: Awaited) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                return Err(format!("exited during start-up ({status})"));
            }
            if let Ok(response) = try_request(self.port, "GET", "/healthz", &[], None)
                && response.status == 200
            {
                if until == Awaited::Serving {
                    return Ok(());
                }
                let health: Value = serde_json::from_str(&response.body).unwrap();
                let backend_ok = if redis {
                    health["backend"] == "redis" && health["redis"]["reachable"] == true
                } else {
                    health["backend"] == "memory"
                };
                if backend_ok && health["status"] == "ok" {
                    return Ok(());
                }
                return Err(format!(
                    "/healthz does not report a reachable Redis: {health}"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("no /healthz answer within {STARTUP_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` (`/healthz`, `/readyz`): the status and the report.
    pub(crate) fn health(&self, path: &str) -> (u16, Value) {
        let response = self.request_with("GET", path, &[], None);
        let status = response.status;
        (status, response.json())
    }

    /// The demo's name, as given to [`Demo::start`].
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// `POST /sessions/{id}/messages`; the reply, which must be 200.
    pub(crate) fn say(&self, id: &str, message: &str) -> Value {
        let body = json!({ "message": message }).to_string();
        let (status, reply) =
            self.request("POST", &format!("/sessions/{id}/messages"), Some(&body));
        assert_eq!(status, 200, "{} said {reply}", self.name);
        serde_json::from_str(&reply).unwrap()
    }

    /// `GET /sessions/{id}`, which must be 200.
    pub(crate) fn session(&self, id: &str) -> Value {
        let (status, body) = self.request("GET", &format!("/sessions/{id}"), None);
        assert_eq!(status, 200, "{} said {body}", self.name);
        serde_json::from_str(&body).unwrap()
    }

    /// `GET /sessions?limit=1000`.
    pub(crate) fn list(&self) -> Value {
        let (status, body) = self.request("GET", "/sessions?limit=1000", None);
        assert_eq!(status, 200, "{} said {body}", self.name);
        serde_json::from_str(&body).unwrap()
    }

    /// One request: status and body. Panics (with the demo's log) when there is no response.
    pub(crate) fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let response = self.request_with(method, path, &[], body);
        (response.status, response.body)
    }

    /// One request with extra request `headers` (name, value): the whole response. Panics
    /// (with the demo's log) when there is no response.
    pub(crate) fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Response {
        try_request(self.port, method, path, headers, body).unwrap_or_else(|e| {
            panic!(
                "{method} {path} on demo {}: {e}\n--- log ---\n{}",
                self.name,
                self.log_text()
            )
        })
    }

    /// SIGTERM, then waits: a graceful shutdown exits 0 and logs `server_stopped`.
    pub(crate) fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {} failed", child.id());
        let exit = wait_with_timeout(&mut child, SHUTDOWN_TIMEOUT).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "demo {} did not stop within {SHUTDOWN_TIMEOUT:?} of SIGTERM\n{}",
                self.name,
                self.log_text()
            )
        });
        assert!(
            exit.success(),
            "demo {} exited with {exit} after SIGTERM\n{}",
            self.name,
            self.log_text()
        );
        let log = self.log_text();
        assert!(
            log.contains("\"event_type\":\"server_stopped\""),
            "demo {} logged no server_stopped:\n{log}",
            self.name
        );
    }

    /// Everything the demo logged so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if thread::panicking() {
                eprintln!("--- log of demo {} ---\n{}", self.name, self.log_text());
            }
        }
    }
}

/// The admin token every test demo is started with (`SESSION_ADMIN_TOKEN`).
pub(crate) const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

/// Spawns `session-demo` on `port` with the clean environment of [`DemoEnv`], then `vars`;
/// stdout and stderr go to `log`.
fn spawn_demo(binary: &Path, env: &DemoEnv, vars: &[(&str, &str)], port: u16, log: &Path) -> Child {
    let out = File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CONFIG_DIR", workspace_root().join("config"))
        .env("APP_ENV", "test")
        .env("USE_REDIS", env.use_redis.to_string())
        .env("SESSION_FALLBACK", "none")
        .env("REDIS_URL", &env.redis_url)
        .env("REDIS_KEY_PREFIX", &env.prefix)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("SESSION_ADMIN_TOKEN", ADMIN_TOKEN);
    for (name, value) in vars {
        command.env(name, value);
    }
    command
        .current_dir(&env.workdir)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP response: status, headers (names in lower case, in the order received) and body
/// (de-chunked).
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Response {
    /// The value of the first header called `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics, showing the response, when it is not JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {self:?}"))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), with extra request
/// `headers`: the response.
fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Response, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let raw = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {raw:?}"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| "truncated chunk".to_owned())?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = after
            .get(..size)
            .ok_or_else(|| "truncated chunk".to_owned())?;
        body.push_str(chunk);
        rest = after.get(size + 2..).unwrap_or("");
    }
}

/// A directory of its own under the system's temporary directory, removed at the end (kept,
/// with the demos' logs, when the test fails).
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new() -> Self {
        let path = std::env::temp_dir().join(unique("demo-e2e"));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}: logs kept in {}", test_name(), self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
