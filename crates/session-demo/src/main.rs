//! `session-demo`: the repair-agent chat API on durable sessions.
//!
//! Run `session-demo --help` for the options and environment variables.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use session_config::Settings;
use session_core::Error;
use session_demo::{app, setup::build_state};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

const DEFAULT_BIND: &str = "127.0.0.1:8080";

const HELP: &str = "\
session-demo: the repair-agent chat API, its sessions kept by durable-sessions

USAGE:
    session-demo [--bind ADDR]

OPTIONS:
    --bind ADDR      address to listen on (default: $BIND_ADDR, else 127.0.0.1:8080)
    -h, --help       print this help
    -V, --version    print the version

ENVIRONMENT:
    BIND_ADDR        address to listen on, when --bind is not given
    LOG_FORMAT       `text` (default) or `json` (one JSON object per line)
    RUST_LOG         log filter, such as `info` (default) or `session_core=debug,info`
    USE_REDIS        keep sessions in Redis (default false: in memory)
    REDIS_URL        redis://[user][:password@]host[:port][/db] (or REDIS_HOST, REDIS_PORT ...)
    REDIS_CLUSTER_NODES
                     a Redis Cluster instead: redis://host:port,redis://host:port,...
    REDIS_SENTINELS, REDIS_SENTINEL_MASTER
                     or the master found through Redis Sentinel (sentinel URLs, master name)
    SESSION_TTL      session lifetime after the last write, seconds (default 3600)
    SESSION_FALLBACK `runtime` (serve from memory while Redis is down, at start or later,
                     and write back when it answers), `startup` (use memory for the
                     process's life if Redis is down at start) or `none` (fail)
    REDIS_CONNECT_TIMEOUT_MS, REDIS_COMMAND_TIMEOUT_MS
                     how long a call waits for Redis (their sum bounds the switch to the
                     run-time fallback)
    SESSION_ADMIN_TOKEN
                     serve the admin endpoints (/admin/...) to requests that carry
                     `Authorization: Bearer <token>` (16+ visible ASCII characters, e.g.
                     `openssl rand -hex 32`); unset: /admin is not served at all
    APP_ENV, CONFIG_DIR and the other settings of session-config are read as well,
    from config/*.toml, .env and the environment.

ENDPOINTS:
    GET  /                          dashboard
    POST /sessions/{id}/messages    {\"message\": \"...\", \"use_rag\"?: bool, \"use_web_search\"?: bool}
    GET  /sessions?cursor=&limit=   sessions (next page cursor in the x-next-cursor header)
    GET  /sessions/{id}             the whole agent state, version, TTL, size
    DELETE /sessions/{id}           forget a session
    GET  /healthz                   liveness: 200 while serving; backend, fallback state,
                                    Redis reachability
    GET  /readyz                    readiness: the same report; 503 on the start-up fallback
                                    or when the store in use does not answer
    GET  /metrics                   Prometheus metrics
    GET  /store/info                the store in use, the fallback's state, the Redis server's
                                    version, memory, eviction policy and persistence
    GET  /admin/sessions, /admin/sessions/{id}, DELETE /admin/sessions/{id}, GET /admin/export
                                    session-axum's admin router, with SESSION_ADMIN_TOKEN only
";

/// What the command line asks for.
enum Command {
    Serve { bind: Option<String> },
    Help,
    Version,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut bind = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--bind" => match args.next() {
                Some(value) => bind = Some(value),
                None => return Err("--bind needs an address, such as 127.0.0.1:8080".into()),
            },
            _ => match arg.strip_prefix("--bind=") {
                Some(value) => bind = Some(value.to_owned()),
                None => return Err(format!("unknown argument {arg:?} (see --help)")),
            },
        }
    }
    Ok(Command::Serve { bind })
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("session-demo: {message}");
            return ExitCode::from(2);
        }
    };
    let bind = match command {
        Command::Help => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("session-demo {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Serve { bind } => bind,
    };
    if let Err(message) = init_logging() {
        eprintln!("session-demo: {message}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("session-demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(bind)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(
                component = "demo",
                event_type = "startup_failed",
                "{message}"
            );
            eprintln!("session-demo: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The admin router's access from `SESSION_ADMIN_TOKEN` (unset or empty: no admin router).
fn admin_access() -> Result<Option<session_axum::AdminAccess>, String> {
    match std::env::var("SESSION_ADMIN_TOKEN") {
        Ok(token) if !token.trim().is_empty() => {
            session_axum::AdminAccess::bearer_token(token.trim())
                .map(Some)
                .map_err(|e| format!("invalid SESSION_ADMIN_TOKEN: {e}"))
        }
        _ => Ok(None),
    }
}

/// Installs the log subscriber: human text, or JSON lines with `LOG_FORMAT=json`.
fn init_logging() -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = std::env::var("LOG_FORMAT").unwrap_or_default();
    let result = match format.trim().to_ascii_lowercase().as_str() {
        "json" => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(true)
            .with_env_filter(filter)
            .try_init(),
        "" | "text" | "human" | "pretty" => tracing_subscriber::fmt()
            .with_target(true)
            .with_env_filter(filter)
            .try_init(),
        other => {
            return Err(format!(
                "invalid LOG_FORMAT {other:?}: expected `json` or `text`"
            ));
        }
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}

async fn serve(bind: Option<String>) -> Result<(), String> {
    let bind = bind
        .or_else(|| {
            std::env::var("BIND_ADDR")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_BIND.to_owned());
    let addr: SocketAddr = bind.trim().parse().map_err(|_| {
        format!("invalid bind address {bind:?}: expected IP:PORT, such as 127.0.0.1:8080")
    })?;

    let settings = Settings::load().map_err(|e| format!("configuration: {e}"))?;
    let metrics = install_metrics()?;
    let mut state = build_state(&settings)
        .await
        .map_err(|e| store_error(&e))?
        .with_metrics(metrics);
    match admin_access()? {
        Some(access) => state = state.with_admin(access),
        None => tracing::info!(
            component = "demo",
            event_type = "admin_off",
            "admin endpoints off (set SESSION_ADMIN_TOKEN to serve /admin)"
        ),
    }
    // session-config has logged the fallback's activation, if any (`fallback_activated`).
    let backend = state.manager().backend();
    let fallback = state.backend().fallback_active();

    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        component = "demo",
        event_type = "server_started",
        backend,
        fallback_active = fallback,
        fallback_policy = %settings.fallback,
        ttl_secs = state.manager().ttl().as_duration().as_secs(),
        "listening on http://{local}"
    );
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!(
        component = "demo",
        event_type = "server_stopped",
        "shut down"
    );
    Ok(())
}

/// Why the store could not be built, with what to do about refused credentials (which never
/// fall back: a service on memory would lose every session at its next restart).
fn store_error(e: &Error) -> String {
    match e {
        Error::Auth { .. } => format!(
            "cannot build the session store: {e} (check the user and password in REDIS_URL, \
             or REDIS_USERNAME / REDIS_PASSWORD; refused credentials never fall back to memory)"
        ),
        _ => format!("cannot build the session store: {e}"),
    }
}

/// The Prometheus recorder for `GET /metrics`, with a task that keeps its histograms trimmed.
fn install_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(component = "demo", "cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(component = "demo", "cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!(
        component = "demo",
        event_type = "shutdown_requested",
        "shutting down: finishing requests in flight"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Command, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn bind_is_read_in_both_spellings() {
        for list in [&["--bind", "127.0.0.1:9"][..], &["--bind=127.0.0.1:9"]] {
            match args(list) {
                Ok(Command::Serve { bind }) => assert_eq!(bind.as_deref(), Some("127.0.0.1:9")),
                _ => panic!("{list:?}"),
            }
        }
        assert!(matches!(args(&[]), Ok(Command::Serve { bind: None })));
        assert!(matches!(args(&["--help"]), Ok(Command::Help)));
        assert!(args(&["--bind"]).is_err());
        assert!(args(&["--port", "1"]).is_err());
    }
}
