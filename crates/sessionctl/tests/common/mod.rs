//! Test support: a private redis-server per test, the real `sessionctl` binary run against it
//! with a clean environment, and an agent-like state written through the library.

#![allow(dead_code, unreachable_pub)]

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::Arc,
};

use redis_harness::{RedisServer, ServerOptions};
use serde::{Deserialize, Serialize};
use session_core::{SessionId, SessionManager, SessionStore, Summary};
use session_redis::{RedisOptions, RedisStore};

/// The state the tests keep: shaped like the demo's repair agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub state: String,
    pub current_attempt: u32,
    pub max_attempts: u32,
    pub conversation_history: Vec<(String, String)>,
    pub use_rag: bool,
    pub problem: Option<String>,
}

impl Agent {
    pub fn new(state: &str, attempt: u32) -> Self {
        Self {
            state: state.to_owned(),
            current_attempt: attempt,
            max_attempts: 3,
            conversation_history: vec![
                ("user".to_owned(), "my printer is broken".to_owned()),
                (
                    "assistant".to_owned(),
                    "Try turning it off and on.".to_owned(),
                ),
            ],
            use_rag: true,
            problem: Some("printer".to_owned()),
        }
    }

    pub fn summary(&self) -> Summary {
        Summary::new()
            .with("state", &self.state)
            .with("current_attempt", self.current_attempt)
    }
}

/// A private redis-server and a scratch directory for sessionctl's configuration.
pub struct Env {
    pub server: RedisServer,
    pub url: String,
    pub dir: PathBuf,
}

/// Starts a private server, or `None` (the test is skipped, with a message) when there is no
/// redis-server and Redis is not required.
pub fn start(test: &str) -> Option<Env> {
    start_with(test, ServerOptions::default())
}

pub fn start_with(test: &str, options: ServerOptions) -> Option<Env> {
    let server = redis_harness::env::private_server(test, options)?;
    let dir = server.dir().join("sessionctl-cwd");
    std::fs::create_dir_all(dir.join("config")).expect("scratch directory");
    let url = server.url();
    Some(Env { server, url, dir })
}

impl Env {
    /// `sessionctl` with a clean environment: no REDIS_URL or APP_ENV of the developer leaks
    /// in, the configuration directory is empty and the working directory has no `.env`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessionctl"));
        cmd.env_clear()
            .env("CONFIG_DIR", self.dir.join("config"))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `sessionctl --url <server> ARGS`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.command();
        cmd.arg("--url").arg(&self.url).args(args);
        Run::of(cmd.output().expect("sessionctl runs"))
    }

    /// Runs `sessionctl ARGS` with extra environment variables and no `--url`.
    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut cmd = self.command();
        cmd.envs(env.iter().copied()).args(args);
        Run::of(cmd.output().expect("sessionctl runs"))
    }

    /// Runs `sessionctl --url <server> ARGS` with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut cmd = self.command();
        cmd.arg("--url")
            .arg(&self.url)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("sessionctl starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("stdin written");
        Run::of(child.wait_with_output().expect("sessionctl runs"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A runtime and a store on the server, for writing and checking sessions.
    pub fn store(&self) -> (tokio::runtime::Runtime, RedisStore) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let options = RedisOptions::from_url(&self.url).expect("url");
        let store = rt
            .block_on(RedisStore::connect(options))
            .expect("store connects");
        (rt, store)
    }

    /// Writes agents under the given ids with the library, as a service would.
    pub fn write_agents(&self, agents: &[(&str, Agent)]) {
        let (rt, store) = self.store();
        let store: Arc<dyn SessionStore> = Arc::new(store);
        let manager = SessionManager::<Agent>::builder(store)
            .summarize(Agent::summary)
            .build();
        rt.block_on(async {
            for (id, agent) in agents {
                let id = SessionId::new(*id).expect("id");
                manager.update(&id, agent).await.expect("session written");
            }
        });
    }
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn of(output: Output) -> Self {
        let run = Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "sessionctl panicked: {run:?}"
        );
        run
    }

    /// Asserts the exit code and returns self.
    #[track_caller]
    pub fn code(self, expected: i32) -> Self {
        assert_eq!(self.code, expected, "unexpected exit code: {self:#?}");
        self
    }

    /// stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}
