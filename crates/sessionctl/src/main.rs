//! `sessionctl`: the admin command line for durable sessions kept in Redis.
//!
//! It reads the same configuration as the library (`config/*.toml`, `.env`, `USE_REDIS`,
//! `REDIS_URL`, `REDIS_KEY_PREFIX` ...; see `session_config`), with global flags (`--url`,
//! `--prefix`, `--config-dir`, `--env`, `--json`, `--quiet`) that override it, and talks to
//! Redis only, never falling back to memory.
//!
//! ```text
//! sessionctl [--url URL] [--prefix PREFIX] [--json] <COMMAND>
//!   list [--match GLOB] [--limit N]     sessions with summary, version, TTL, update time, size
//!   show ID [--raw]                     the state as pretty JSON (or the stored fields)
//!   delete ID...                        delete sessions
//!   purge --match GLOB [--yes]          SCAN + UNLINK every matching session
//!   ttl ID [SECONDS]                    read or set the TTL
//!   export FILE / import FILE           JSON Lines, lossless (payload envelope in base64)
//!   rekey [--dry-run] [--cursor C]      rewrite every session under the first encryption key
//!   stats                               count, sizes, TTL distribution, states
//!   doctor                              reachability, version, memory policy, persistence, latency
//! ```
//!
//! Exit codes: 0 success, 1 failure, 2 usage error.
//!
//! The store (`session_redis::RedisStore`) does what it offers (listing, loading, saving,
//! deleting, touching, counting, pinging); a plain connection to the same server does the rest
//! (SCAN + UNLINK for `purge`, `PTTL`, `GET` (or `HGETALL` for a hash of the earlier layouts) for `show --raw`, `INFO` and `CONFIG GET`).
//! With a cluster (`REDIS_CLUSTER_NODES`) those go to every primary (`purge`, `doctor`) or to
//! the primary of the key's slot; with Sentinel (`REDIS_SENTINELS`) to the master the
//! sentinels name.
#![forbid(unsafe_code)]
// The doc comments of the clap structs are the `--help` text users read, with glob and URL
// syntax such as `[abc]` and `[user][:password@]`: rustdoc must not take those for links.
#![allow(rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cli;
mod commands;
mod error;
mod glob;
mod nodes;
mod output;
mod progress;
mod state;
mod target;

use std::process::ExitCode;

use clap::Parser;
use redis::aio::MultiplexedConnection;
use session_config::Settings;
use session_core::{Codec, SessionId};
use session_redis::{RedisOptions, RedisStore};

use crate::{
    cli::{Cli, Command},
    error::{CliError, CliResult},
};

fn main() -> ExitCode {
    // clap exits with 2 on usage errors and 0 for --help / --version.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sessionctl: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

async fn run(cli: Cli) -> CliResult<ExitCode> {
    let settings = target::load_settings(&cli.global)?;
    let options = target::options(&settings, &cli.global)?;
    if !cli.global.quiet {
        for warning in settings.warnings() {
            eprintln!("sessionctl: warning: {warning}");
        }
    }
    let ctx = Context {
        settings,
        options,
        json: cli.global.json,
        quiet: cli.global.quiet,
    };
    match cli.command {
        Command::List(args) => commands::list::run(&ctx, args).await,
        Command::Show(args) => commands::show::run(&ctx, args).await,
        Command::Delete(args) => commands::delete::run(&ctx, args).await,
        Command::Purge(args) => commands::purge::run(&ctx, args).await,
        Command::Ttl(args) => commands::ttl::run(&ctx, args).await,
        Command::Export(args) => commands::export::run(&ctx, args).await,
        Command::Import(args) => commands::import::run(&ctx, args).await,
        Command::Rekey(args) => commands::rekey::run(&ctx, args).await,
        Command::Stats(args) => commands::stats::run(&ctx, args).await,
        Command::Doctor(args) => commands::doctor::run(&ctx, args).await,
    }
}

/// What every command gets: the settings, the Redis options and the output flags.
pub(crate) struct Context {
    pub(crate) settings: Settings,
    pub(crate) options: RedisOptions,
    pub(crate) json: bool,
    pub(crate) quiet: bool,
}

impl Context {
    /// The server URL with the password masked.
    pub(crate) fn url(&self) -> String {
        self.options.redacted_url()
    }

    /// The codec the settings configure (size limit, compression and encryption keys), as the
    /// service uses.
    pub(crate) fn codec(&self) -> Codec {
        self.settings.codec()
    }

    /// Connects the store (no fallback).
    pub(crate) async fn store(&self) -> CliResult<RedisStore> {
        target::connect_store(&self.options).await
    }

    /// Opens a plain connection, for commands the store does not offer, to the primary that
    /// holds `key`: the one server, the master the sentinels name, or the cluster's node
    /// serving the key's slot.
    pub(crate) async fn raw_for(&self, key: &str) -> CliResult<MultiplexedConnection> {
        nodes::primary_for(&self.options, key)
            .await?
            .connect()
            .await
    }

    /// The primaries: the one server, the master the sentinels name, or every primary of
    /// the cluster.
    pub(crate) async fn primaries(&self) -> CliResult<Vec<nodes::Node>> {
        nodes::primaries(&self.options).await
    }

    /// A library error as a command error.
    pub(crate) fn fail(&self, e: session_core::Error) -> CliError {
        CliError::from_store(e, &self.url())
    }

    /// Sends a raw command; `what` names it in errors.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        con: &mut MultiplexedConnection,
        cmd: &redis::Cmd,
        what: &str,
    ) -> CliResult<T> {
        cmd.query_async(con)
            .await
            .map_err(|e| target::redis_error(e, what, &self.url()))
    }
}

/// Parses a session id from the command line: a usage error (exit 2) when invalid.
pub(crate) fn parse_id(input: &str) -> CliResult<SessionId> {
    SessionId::new(input).map_err(|e| {
        CliError::usage(e.to_string()).hint("ids are 1 to 128 characters of A-Z a-z 0-9 _ . : @ -")
    })
}
