//! Cross-crate integration tests: the library on real `redis-server` processes.
//!
//! The scenarios live in `tests/*.rs`; this library holds what they share: the agent state of
//! the original service, unique ids, stores on the shared test server, and a runner for the real
//! `redis-cli`. Redis comes from the environment contract of `redis_harness::env`: without it
//! the tests print `SKIPPED ...` and pass; `cargo xtask test` makes them mandatory.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use session_core::{SessionId, Summarize, Summary};
use session_redis::{RedisOptions, RedisStore, RedisTarget};

/// The repair agent's state, as the original service keeps it per conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// The state machine's state (`new_problem`, `diagnosing` ...).
    pub state: String,
    /// Attempts so far.
    pub current_attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The conversation.
    pub history: Vec<String>,
    /// Whether retrieval is on.
    pub use_rag: bool,
}

impl Agent {
    /// A fresh agent.
    pub fn new() -> Self {
        Self {
            state: "new_problem".into(),
            current_attempt: 0,
            max_attempts: 3,
            history: Vec::new(),
            use_rag: true,
        }
    }
}

impl Default for Agent {
    fn default() -> Self {
        Self::new()
    }
}

impl Summarize for Agent {
    fn summary(&self) -> Summary {
        Summary::new()
            .with("state", &self.state)
            .with("current_attempt", self.current_attempt)
    }
}

/// A string no other test or run uses: `<tag>-<pid>-<time>-<n>` (valid in ids and prefixes).
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A session id no other test uses.
pub fn unique_id(tag: &str) -> SessionId {
    SessionId::new(unique(tag)).unwrap_or_else(|e| panic!("{e}"))
}

/// Options for `url` with a key prefix no other test uses.
pub fn options_with_unique_prefix(url: &str, tag: &str) -> RedisOptions {
    RedisOptions::from_url(url)
        .and_then(|o| o.with_key_prefix(format!("itest:{}:", unique(tag))))
        .unwrap_or_else(|e| panic!("options for {url}: {e}"))
}

/// Connects or panics with the reason.
pub async fn connect(options: RedisOptions) -> RedisStore {
    RedisStore::connect(options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// The port and database of a `redis://` URL.
pub fn port_and_db(url: &str) -> (u16, u32) {
    let target = RedisTarget::parse(url).unwrap_or_else(|e| panic!("{e}"));
    (target.port(), target.db())
}

/// The real `redis-cli`: beside the `redis-server` in use, else on `PATH`. Skips (`None`, with
/// a `SKIPPED` line) or, when Redis is required, panics when there is none.
pub fn redis_cli(test: &str) -> Option<PathBuf> {
    let beside_server = redis_harness::env::server_binary(test)
        .and_then(|server| server.parent().map(|dir| dir.join("redis-cli")))
        .filter(|cli| cli.is_file());
    match beside_server.or_else(|| redis_harness::env::find_on_path("redis-cli")) {
        Some(cli) => Some(cli),
        None => {
            redis_harness::env::skip_or_require(test, "no redis-cli beside redis-server or on PATH")
        }
    }
}

/// Runs `redis-cli -h 127.0.0.1 -p PORT -n DB ARGS...` and returns its trimmed output.
pub fn run_redis_cli(cli: &PathBuf, port: u16, db: u32, args: &[&str]) -> String {
    let output = Command::new(cli)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-n",
            &db.to_string(),
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", cli.display()));
    assert!(
        output.status.success(),
        "redis-cli {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
