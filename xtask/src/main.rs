//! `cargo xtask`: the project's developer chores in Rust, so they run wherever cargo runs.
//!
//! - `cargo xtask test [--redis-only|--valkey-only] [-- ARGS]`: the test suite against a real
//!   Redis 7, then the server tests against Valkey 9 (see [`mod@test`]);
//! - `cargo xtask redis start|stop|status`: a long-lived Redis for development (see [`redis`]);
//! - `cargo xtask cluster|sentinel start|stop|status`: a long-lived Redis Cluster or Sentinel
//!   set for development (see [`cluster`], [`sentinel`]);
//! - `cargo xtask dashboard`: the demo's dashboard in headless Chromium, with a screenshot
//!   (see [`dashboard`]);
//! - `cargo xtask ci`: what CI runs: fmt, clippy, the tests, docs, the packages (see [`ci`]);
//! - `cargo xtask bench [--quick] [--server redis|valkey]`: the benchmarks, written to
//!   BENCHMARKS.md and BENCHMARKS.svg (Valkey: BENCHMARKS-valkey.md and .svg) (see
//!   [`mod@bench`]);
//! - `cargo xtask package [--list] [--no-verify]`: `cargo package` of every crate meant for
//!   crates.io (see [`package`]);
//! - `cargo xtask fuzz [TARGET] [--seconds N]`: the fuzz targets of `fuzz/` on nightly, not
//!   part of `ci` (see [`fuzz`]).
//!
//! The command line and every help text are in [`cli`]; `cargo xtask help` and
//! `cargo xtask <COMMAND> --help` print them.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod bench;
mod ci;
mod cli;
mod cluster;
mod dashboard;
mod detached;
mod fuzz;
mod package;
mod process;
mod provide;
mod redis;
mod sentinel;
mod test;
mod topologies;

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;

use crate::cli::{Cli, ClusterAction, Command, RedisAction, SentinelAction};

/// Errors are for people: each says what failed and, where it can, what to do.
type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> ExitCode {
    // A Ctrl-C reaches the whole foreground process group: the tests stop on their own, and
    // xtask, instead of dying on the spot, notices, cleans up (stops its Redis) and exits 130.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(err) = signal_hook::flag::register(signal, Arc::clone(&interrupted)) {
            eprintln!("xtask: warning: cannot handle signal {signal}: {err}");
        }
    }
    // Usage errors exit with 2, `--help` with 0, both before any work starts.
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Test(args)) => test::run(&interrupted, &args),
        Some(Command::Redis { action }) => match action {
            RedisAction::Start => redis::start(),
            RedisAction::Stop => redis::stop(),
            RedisAction::Status => redis::status(),
        },
        Some(Command::Cluster { action }) => match action {
            ClusterAction::Start { server } => cluster::start(server),
            ClusterAction::Stop => cluster::stop(),
            ClusterAction::Status => cluster::status(),
        },
        Some(Command::Sentinel { action }) => match action {
            SentinelAction::Start { server } => sentinel::start(server),
            SentinelAction::Stop => sentinel::stop(),
            SentinelAction::Status => sentinel::status(),
        },
        Some(Command::Ci) => ci::run(&interrupted),
        Some(Command::Dashboard) => dashboard::run(&interrupted),
        Some(Command::Bench(args)) => bench::run(&interrupted, &args),
        Some(Command::Package(args)) => package::run(&interrupted, &args),
        Some(Command::Fuzz(args)) => fuzz::run(&interrupted, &args),
        None => cli::print_help()
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err}");
            ExitCode::FAILURE
        }
    }
}
