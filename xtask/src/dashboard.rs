//! `cargo xtask dashboard`: the demo's dashboard page, checked in headless Chromium.
//!
//! 1. Finds Chromium (`$CHROMIUM`, else `chromium`, `chromium-browser`, `google-chrome` on
//!    `PATH`); on Debian as root it installs the `chromium` package when there is none.
//! 2. Builds `session-demo` (debug) and starts it on the in-memory store (clean environment,
//!    `USE_REDIS=false`) on a free loopback port.
//! 3. Creates sessions in different states through the HTTP API: `diagnosing`,
//!    `awaiting_feedback` (attempt 2), `resolved`, `escalated`. (`new_problem` is never
//!    stored: the first message already moves the agent on.)
//! 4. Runs `chromium --headless --no-sandbox --disable-gpu ...` twice on `http://127.0.0.1:PORT/`:
//!    - `--dump-dom`, to check that the rendered page shows each session id in a row with its
//!      state, the backend badge `backend: memory`, a TTL bar per session, and the store panel
//!      on memory (the DOM goes to `target/xtask/dashboard.html`);
//!    - driven over the DevTools protocol ([`cdp`]), as a person would: it clicks the row of
//!      `wifi-kitchen` and checks the panel that opens (the conversation, turn by turn with
//!      roles, the state, the version, TTL and size `GET /sessions/wifi-kitchen` reports),
//!      saves `target/xtask/dashboard.png` with the panel open, then sends a message full of
//!      HTML to a fifth session, opens it, and checks the markup shows as text and never runs;
//!      finally closes the panel.
//! 5. Stops the demo (SIGTERM by pid, then SIGKILL if it lingers).
//! 6. When `SESSION_TEST_REDIS_URL` names a Redis (the shared test server's contract), does it
//!    again on a demo on that Redis (`USE_REDIS=true`, `SESSION_FALLBACK=none`, a key prefix of
//!    this run's own, its sessions deleted at the end): the store panel must show the server's
//!    version, memory, eviction policy and persistence, and no address; the click must open a
//!    session read from Redis; the picture goes to `target/xtask/dashboard-redis.png`.
//!
//! Exits non-zero if any check failed.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis_harness::env::find_on_path;
use serde_json::json;

use crate::provide::{apt_get, is_root};
use crate::{Result, process};

mod cdp;
mod driven;

/// The sessions the page must show: id, the messages that lead there, the state reached.
const SESSIONS: &[(&str, &[&str], &str)] = &[
    ("printer-42", &["my printer is offline"], "diagnosing"),
    (
        "wifi-kitchen",
        &[
            "the wifi drops every few minutes",
            "since the router update on monday",
            "no, it still drops",
        ],
        "awaiting_feedback",
    ),
    (
        "laptop-7",
        &[
            "my laptop does not boot",
            "black screen since this morning",
            "yes, that fixed it",
        ],
        "resolved",
    ),
    (
        "router-lobby",
        &[
            "the router keeps rebooting",
            "every ten minutes since yesterday",
            "no",
            "nope",
            "still broken",
        ],
        "escalated",
    ),
];

/// The session whose row the check clicks (it has the longest conversation but one).
const CLICKED: &str = "wifi-kitchen";
/// A session whose message is HTML: the panel must show it as text.
const MARKUP_SESSION: &str = "markup-1";
const MARKUP_MESSAGE: &str = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script> \
                              <b>bold</b> & \"quotes\"";

/// The page's size in both runs, in CSS pixels.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;

/// How long the page may take to show something it was asked for.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Chromium's flags for both runs (headless, as root in a container, no network chatter).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--window-size=1280,900",
];

/// How long one Chromium run may take.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the demo may take to answer `/healthz`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `cargo xtask dashboard`.
pub(crate) fn run(interrupted: &AtomicBool) -> Result<ExitCode> {
    step(interrupted).map(ExitCode::from)
}

/// The dashboard step, shared with `cargo xtask ci`: 0 when every check passed, 1 when one
/// failed, 130 when interrupted; `Err` when it could not check at all.
pub(crate) fn step(interrupted: &AtomicBool) -> Result<u8> {
    let chromium = chromium()?;
    println!("xtask dashboard: chromium: {}", chromium.display());
    let demo_bin = build_demo()?;
    // target/<profile>/session-demo -> target/xtask/
    let out_dir = demo_bin
        .parent()
        .and_then(Path::parent)
        .map_or_else(
            || process::workspace_root().join("target"),
            Path::to_path_buf,
        )
        .join("xtask");
    fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let scratch = Scratch::new()?;
    let mut demo = Demo::start(&demo_bin, scratch.path(), None)?;
    let result = check(&chromium, &demo, scratch.path(), &out_dir, interrupted);
    let stopped = demo.stop();
    let mut failures = result?;
    stopped?;
    match std::env::var(redis_harness::env::URL) {
        Ok(url) if !url.is_empty() && !interrupted.load(Ordering::Relaxed) => {
            println!(
                "xtask dashboard: again on the Redis of {}",
                redis_harness::env::URL
            );
            failures.extend(redis_check(
                &chromium,
                &demo_bin,
                &url,
                scratch.path(),
                &out_dir,
            )?);
        }
        _ => println!(
            "xtask dashboard: {} is not set: no run on Redis",
            redis_harness::env::URL
        ),
    }
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("xtask dashboard: interrupted");
        return Ok(130);
    }
    if failures.is_empty() {
        println!("xtask dashboard: all checks passed");
        Ok(0)
    } else {
        eprintln!(
            "xtask dashboard: {} check(s) FAILED (the DOM is in {})",
            failures.len(),
            out_dir.join("dashboard.html").display()
        );
        Ok(1)
    }
}

/// Creates the sessions, renders the page, checks it; returns the failed checks.
fn check(
    chromium: &Path,
    demo: &Demo,
    scratch: &Path,
    out_dir: &Path,
    interrupted: &AtomicBool,
) -> Result<Vec<String>> {
    for (id, messages, state) in SESSIONS {
        let mut last = String::new();
        for message in *messages {
            last = say(demo.port, id, message)?;
        }
        if !last.contains(&format!("\"state\":\"{state}\"")) {
            return Err(format!("session {id} should be {state}, the demo said {last}").into());
        }
        println!("xtask dashboard: session {id}: {state}");
    }
    if interrupted.load(Ordering::Relaxed) {
        return Ok(vec!["interrupted".to_owned()]);
    }

    let url = format!("http://127.0.0.1:{}/", demo.port);
    // Lets the page's first refresh (its fetches) finish before the DOM is taken.
    let dump = ["--dump-dom", "--virtual-time-budget=5000"];
    let dom = run_chromium(chromium, &scratch.join("chromium-dump"), &dump, &url)?;
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    let dom_path = out_dir.join("dashboard.html");
    fs::write(&dom_path, &dom).map_err(|e| format!("cannot write {}: {e}", dom_path.display()))?;
    let mut checks = dom_checks(&dom);

    let screenshot = out_dir.join("dashboard.png");
    // A stale picture from an earlier run must not pass for this one.
    if screenshot.exists() {
        fs::remove_file(&screenshot)
            .map_err(|e| format!("cannot remove {}: {e}", screenshot.display()))?;
    }
    if !interrupted.load(Ordering::Relaxed) {
        let mut browser = cdp::Browser::launch(
            chromium,
            CHROMIUM_FLAGS,
            &scratch.join("chromium-driven"),
            &scratch.join("chromium.log"),
        )?;
        let driven = driven::drive(&mut browser, demo.port, &url, &screenshot);
        let closed = browser.close();
        checks.extend(driven?);
        closed?;
    }
    checks.push(png_check(&screenshot));
    let failures = report(checks);
    println!("xtask dashboard: screenshot: {}", screenshot.display());
    println!("xtask dashboard: DOM:        {}", dom_path.display());
    Ok(failures)
}

/// Prints each check; returns the failed ones.
fn report(checks: Vec<(bool, String)>) -> Vec<String> {
    let mut failures = Vec::new();
    for (ok, what) in checks {
        println!("  [{}] {what}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failures.push(what);
        }
    }
    failures
}

/// The same page on the shared test Redis (`SESSION_TEST_REDIS_URL`, under a key prefix of
/// this run's own): the store panel shows the server's facts, and a click opens a session
/// stored there. The sessions are deleted afterwards.
fn redis_check(
    chromium: &Path,
    demo_bin: &Path,
    url: &str,
    scratch: &Path,
    out_dir: &Path,
) -> Result<Vec<String>> {
    let redis = Redis {
        url: url.to_owned(),
        prefix: format!("xtask-dashboard-{}:", std::process::id()),
    };
    let mut demo = Demo::start(demo_bin, scratch, Some(&redis))?;
    let screenshot = out_dir.join("dashboard-redis.png");
    let result = (|| -> Result<Vec<(bool, String)>> {
        for (id, messages, _) in SESSIONS {
            for message in *messages {
                say(demo.port, id, message)?;
            }
        }
        let mut browser = cdp::Browser::launch(
            chromium,
            CHROMIUM_FLAGS,
            &scratch.join("chromium-redis"),
            &scratch.join("chromium-redis.log"),
        )?;
        let page = format!("http://127.0.0.1:{}/", demo.port);
        let driven = driven::drive_redis(&mut browser, demo.port, &page, url, &screenshot);
        let closed = browser.close();
        let checks = driven?;
        closed?;
        for (id, _, _) in SESSIONS {
            request(demo.port, "DELETE", &format!("/sessions/{id}"), "")?;
        }
        Ok(checks)
    })();
    let stopped = demo.stop();
    let mut checks = result?;
    stopped?;
    checks.push(png_check(&screenshot));
    let failures = report(checks);
    println!("xtask dashboard: screenshot: {}", screenshot.display());
    Ok(failures)
}

/// What the rendered DOM must show: `(passed, description)` per check.
fn dom_checks(dom: &str) -> Vec<(bool, String)> {
    let mut checks = vec![
        (
            dom.contains("class=\"badge memory\"") && dom.contains(">backend: memory<"),
            "the backend badge says `backend: memory`".to_owned(),
        ),
        (
            dom.contains(">ok<"),
            "the status badge says `ok`".to_owned(),
        ),
    ];
    let panel = dom
        .split_once("<section id=\"store\"")
        .and_then(|(_, rest)| rest.split_once("</section>"))
        .map_or("", |(panel, _)| panel);
    let tag = panel.split_once('>').map_or("", |(tag, _)| tag);
    checks.push((
        tag.contains("data-backend=\"memory\"")
            && tag.contains("data-fallback=\"none\"")
            && panel.contains(">memory<")
            && panel.contains("USE_REDIS=false")
            && panel.contains(">not configured<"),
        "the store panel says: memory in this process, no fallback, Redis not configured"
            .to_owned(),
    ));
    let rows: Vec<&str> = dom.split("<tr").collect();
    for (id, _, state) in SESSIONS {
        let row = rows.iter().find(|row| row.contains(&format!(">{id}<")));
        checks.push((
            row.is_some_and(|row| {
                row.contains(&format!("class=\"state {state}\">{state}<"))
                    && row.contains("class=\"ttl\"")
                    && row.contains("class=\"bar\"")
            }),
            format!("a row shows session `{id}`, state `{state}` and a TTL bar"),
        ));
    }
    let bars = dom.matches("class=\"bar\"").count();
    checks.push((
        bars == SESSIONS.len(),
        format!(
            "{} TTL bars, one per session (found {bars})",
            SESSIONS.len()
        ),
    ));
    checks
}

/// Sends `message` to session `id` through the API; the reply's body.
fn say(port: u16, id: &str, message: &str) -> Result<String> {
    let body = json!({ "message": message }).to_string();
    let path = format!("/sessions/{id}/messages");
    let (status, reply) = request(port, "POST", &path, &body)?;
    if status != 200 {
        return Err(format!("POST {path}: {status} {reply}").into());
    }
    Ok(reply)
}

/// The screenshot exists and is a PNG of a real page, not an empty file.
fn png_check(path: &Path) -> (bool, String) {
    let mut head = [0u8; 8];
    let ok = File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == *b"\x89PNG\r\n\x1a\n"
        && fs::metadata(path).is_ok_and(|m| m.len() > 10_000);
    (ok, format!("the screenshot {} is a PNG", path.display()))
}

/// One headless Chromium run on `url`; fails on a non-zero exit or after the timeout.
fn run_chromium(
    chromium: &Path,
    profile: &Path,
    extra: &[&str],
    url: &str,
) -> Result<std::process::Output> {
    let mut cmd = Command::new(chromium);
    cmd.args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!("$ {}", render(&cmd));
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", chromium.display()))?;
    let output = wait_output(child, CHROMIUM_TIMEOUT)?;
    if !output.status.success() {
        return Err(format!(
            "chromium failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(output)
}

/// Waits for `child` with a deadline, reading its output meanwhile; kills it (by pid) when the
/// deadline passes.
fn wait_output(mut child: Child, timeout: Duration) -> Result<std::process::Output> {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(stdout.map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(stderr.map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("chromium did not finish within {timeout:?}; killed").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// `cargo build -p session-demo`; the path of the binary, from cargo's JSON messages.
fn build_demo() -> Result<PathBuf> {
    let mut cmd = process::cargo();
    cmd.args([
        "build",
        "-p",
        "session-demo",
        "--message-format=json-render-diagnostics",
    ])
    .stdout(Stdio::piped());
    println!("$ {}", render(&cmd));
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !output.status.success() {
        return Err(format!("`cargo build -p session-demo` failed ({})", output.status).into());
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|line| json_string_field(line, "executable"))
        .find(|exe| {
            Path::new(exe)
                .file_stem()
                .is_some_and(|stem| stem == "session-demo")
        })
        .map(PathBuf::from)
        .ok_or_else(|| "cargo build reported no session-demo executable".into())
}

/// The string value of `"field":"..."` in one line of cargo's JSON (no escapes expected in a
/// path; a value with escapes is not returned).
fn json_string_field(line: &str, field: &str) -> Option<String> {
    let start = line.find(&format!("\"{field}\":\""))? + field.len() + 4;
    let rest = line.get(start..)?;
    let value = &rest[..rest.find('"')?];
    (!value.contains('\\')).then(|| value.to_owned())
}

/// The Redis a demo runs on: the server, and the key prefix of this run.
struct Redis {
    url: String,
    prefix: String,
}

/// The demo process, on the memory store or on a [`Redis`].
struct Demo {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Demo {
    fn start(binary: &Path, scratch: &Path, redis: Option<&Redis>) -> Result<Demo> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let backend = if redis.is_some() { "redis" } else { "memory" };
        let log = scratch.join(format!("session-demo-{backend}.log"));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(binary);
        // A clean environment: no REDIS_URL, USE_REDIS or .env of the caller's leaks in.
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CONFIG_DIR", process::workspace_root().join("config"))
            .env("APP_ENV", "development")
            .env("USE_REDIS", if redis.is_some() { "true" } else { "false" })
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .current_dir(scratch)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some(redis) = redis {
            // A Redis problem fails the demo instead of sending it to memory.
            cmd.env("REDIS_URL", &redis.url)
                .env("REDIS_KEY_PREFIX", &redis.prefix)
                .env("SESSION_FALLBACK", "none");
        }
        println!("$ {}", render(&cmd));
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        println!(
            "xtask dashboard: session-demo pid {} on http://127.0.0.1:{port}/ ({backend} store)",
            child.id()
        );
        let mut demo = Demo {
            child: Some(child),
            port,
            log,
        };
        demo.wait_healthy(backend)?;
        Ok(demo)
    }

    fn wait_healthy(&mut self, backend: &str) -> Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(format!(
                    "session-demo exited during start-up ({status}):\n{}",
                    self.log_text()
                )
                .into());
            }
            if let Ok((200, body)) = request(self.port, "GET", "/healthz", "") {
                if body.contains(&format!("\"backend\":\"{backend}\"")) {
                    return Ok(());
                }
                return Err(
                    format!("/healthz reports another backend than {backend}: {body}").into(),
                );
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "session-demo did not answer /healthz within {STARTUP_TIMEOUT:?}:\n{}",
                    self.log_text()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM by pid, wait up to 10 s, then SIGKILL.
    fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                println!("xtask dashboard: session-demo (pid {pid}) stopped: {status}");
                return check_exit(status, &self.log_text());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "session-demo (pid {pid}) ignored SIGTERM for 10 s; killed it"
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn check_exit(status: ExitStatus, log: &str) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        Err(format!("session-demo exited with {status} after SIGTERM:\n{log}").into())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`: status and body (the demo sends
/// `Content-Length`, never chunks, for these routes).
fn request(port: u16, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no HTTP response"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// `$CHROMIUM`, else a Chromium on `PATH`, else (Debian, root) the `chromium` package.
fn chromium() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        return Err(format!("CHROMIUM={} is not a file", path.display()).into());
    }
    if let Some(path) = find_chromium() {
        return Ok(path);
    }
    let debian = cfg!(target_os = "linux")
        && Path::new("/etc/debian_version").is_file()
        && find_on_path("apt-get").is_some();
    if !debian || !is_root() {
        return Err(
            "no Chromium found (looked at $CHROMIUM, then chromium, chromium-browser, \
                    google-chrome on PATH). Install it: `sudo apt-get install chromium` on \
                    Debian (as root `cargo xtask dashboard` does this itself), or set CHROMIUM \
                    to a Chromium or Chrome binary."
                .into(),
        );
    }
    println!(
        "xtask dashboard: Chromium not found; installing the Debian package `chromium` with \
         apt-get (running as root)"
    );
    apt_get(&["update"])?;
    apt_get(&["install", "-y", "chromium"])?;
    find_chromium().ok_or_else(|| "apt-get installed chromium but no binary was found".into())
}

fn find_chromium() -> Option<PathBuf> {
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .find_map(|name| find_on_path(name))
}

fn render(cmd: &Command) -> String {
    let mut shown = vec![cmd.get_program().to_string_lossy().into_owned()];
    shown.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    shown.join(" ")
}

/// A temporary directory (the demo's log and working directory, Chromium's profile), removed
/// when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("xtask-dashboard-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Scratch(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            eprintln!("xtask: warning: cannot remove {}: {e}", self.0.display());
        }
    }
}
