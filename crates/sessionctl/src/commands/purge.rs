//! `sessionctl purge --match GLOB [--yes] [--dry-run]`: `SCAN MATCH <escaped prefix><glob>`,
//! then `UNLINK` in batches. Only keys whose rest after the prefix is a valid session id
//! matching the glob are deleted.

use std::{
    io::{BufRead, IsTerminal, Write},
    process::ExitCode,
};

use redis::aio::MultiplexedConnection;
use serde_json::json;
use session_core::SessionId;

use crate::{
    Context,
    cli::PurgeArgs,
    error::{CliError, CliResult},
    glob::IdGlob,
    output,
};

/// `COUNT` hint of each SCAN step.
const SCAN_COUNT: usize = 1000;
/// Keys per UNLINK.
const UNLINK_BATCH: usize = 500;

pub(crate) async fn run(ctx: &Context, args: PurgeArgs) -> CliResult<ExitCode> {
    let glob = IdGlob::parse(&args.pattern)?;
    let prefix = ctx.options.key_prefix().to_owned();
    // Every primary: the one server, Sentinel's master, or each primary of a cluster (whose
    // keys are spread over them).
    let mut cons = Vec::new();
    for node in ctx.primaries().await? {
        cons.push(node.connect().await?);
    }
    let cluster = ctx.options.is_cluster();
    let pattern = glob.redis_pattern(&prefix);
    let (deleted, matched) = if args.dry_run || args.yes {
        let (mut deleted, mut matched) = (0u64, 0u64);
        for con in &mut cons {
            let mut scan = Scan::new(pattern.clone());
            while let Some(keys) = scan.next(ctx, con, &prefix, &glob).await? {
                matched += keys.len() as u64;
                if !args.dry_run {
                    deleted += unlink(ctx, con, &keys, cluster).await?;
                }
            }
        }
        (deleted, matched)
    } else {
        let mut per_node = Vec::new();
        for con in &mut cons {
            let mut scan = Scan::new(pattern.clone());
            let mut keys = Vec::new();
            while let Some(batch) = scan.next(ctx, con, &prefix, &glob).await? {
                keys.extend(batch);
            }
            keys.sort_unstable();
            keys.dedup();
            per_node.push(keys);
        }
        let matched = per_node.iter().map(|k| k.len() as u64).sum();
        if matched > 0 {
            confirm(ctx, &glob, matched)?;
        }
        let mut deleted = 0;
        for (con, keys) in cons.iter_mut().zip(&per_node) {
            deleted += unlink(ctx, con, keys, cluster).await?;
        }
        (deleted, matched)
    };
    if ctx.json {
        output::print_json(&json!({
            "match": glob.as_str(),
            "prefix": prefix,
            "matched": matched,
            "deleted": deleted,
            "dry_run": args.dry_run,
        }))?;
    } else if args.dry_run {
        output::println_stdout(&format!(
            "{matched} session{} match {:?} (dry run: nothing deleted)",
            plural(matched),
            glob.as_str()
        ))?;
    } else if !ctx.quiet {
        output::println_stdout(&format!(
            "deleted {deleted} session{} matching {:?}",
            plural(deleted),
            glob.as_str()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Asks on the terminal; refuses without one.
fn confirm(ctx: &Context, glob: &IdGlob, matched: u64) -> CliResult {
    let question = format!(
        "delete {matched} session{} matching {:?} under {:?} on {}",
        plural(matched),
        glob.as_str(),
        ctx.options.key_prefix(),
        ctx.url()
    );
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "refusing to {question} without confirmation: stdin is not a terminal"
        ))
        .hint("pass --yes to confirm, or --dry-run to only count"));
    }
    eprint!("{question}? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CliError::failure("purge aborted: nothing deleted"))
    }
}

/// A SCAN over the matching keys.
struct Scan {
    pattern: String,
    cursor: Option<u64>,
}

impl Scan {
    fn new(pattern: String) -> Self {
        Self {
            pattern,
            cursor: Some(0),
        }
    }

    /// The next batch of matching session keys (possibly empty); `None` when done.
    async fn next(
        &mut self,
        ctx: &Context,
        con: &mut MultiplexedConnection,
        prefix: &str,
        glob: &IdGlob,
    ) -> CliResult<Option<Vec<String>>> {
        let Some(cursor) = self.cursor else {
            return Ok(None);
        };
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let (next, keys): (u64, Vec<Vec<u8>>) = ctx.query(con, &cmd, "SCAN").await?;
        self.cursor = (next != 0).then_some(next);
        let keys = keys
            .into_iter()
            .filter_map(|k| String::from_utf8(k).ok())
            .filter(|k| {
                k.strip_prefix(prefix)
                    .is_some_and(|id| SessionId::new(id).is_ok() && glob.matches(id))
            })
            .collect();
        Ok(Some(keys))
    }
}

/// UNLINKs `keys` in batches; returns how many existed. In a cluster one UNLINK may only
/// name keys of one slot: each key gets its own, pipelined in batches.
async fn unlink(
    ctx: &Context,
    con: &mut MultiplexedConnection,
    keys: &[String],
    cluster: bool,
) -> CliResult<u64> {
    let mut deleted = 0;
    for batch in keys.chunks(UNLINK_BATCH) {
        if cluster {
            let mut pipe = redis::pipe();
            for key in batch {
                pipe.cmd("UNLINK").arg(key);
            }
            let counts: Vec<u64> = pipe
                .query_async(con)
                .await
                .map_err(|e| crate::target::redis_error(e, "UNLINK", &ctx.url()))?;
            deleted += counts.iter().sum::<u64>();
        } else {
            let mut cmd = redis::cmd("UNLINK");
            cmd.arg(batch);
            let n: u64 = ctx.query(con, &cmd, "UNLINK").await?;
            deleted += n;
        }
    }
    Ok(deleted)
}
