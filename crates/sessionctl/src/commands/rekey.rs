//! `sessionctl rekey [--match GLOB] [--cursor CURSOR] [--dry-run]`: rewrites every session
//! under the current (first) key of `SESSION_ENCRYPTION_KEYS`, so that older keys can be
//! retired.
//!
//! Each session is loaded, its envelope re-encoded without decoding the state
//! (`Codec::reencode`: decrypted or decompressed as stored, compressed by the settings, encrypted
//! under the current key) and written back with `IfUnchanged` on the record it was read from:
//! a service that wrote in between wins, and the session is reloaded and tried again, so no
//! update is ever lost. Sessions already under the current key are skipped, which makes a run
//! resumable by running it again; `--cursor` starts from the listing page a failed run names.

use std::process::ExitCode;

use serde_json::json;
use session_core::{
    Codec, Condition, Cursor, Error, Record, SessionId, SessionStore, Ttl, Write, WriteOutcome,
};
use session_redis::RedisStore;
use tokio::task::JoinSet;

use super::{Listing, parse_glob};
use crate::{
    Context,
    cli::RekeyArgs,
    error::{CliError, CliResult, EXIT_FAILURE},
    output,
    progress::Progress,
};

/// Conditional writes of one session before it is reported as too busy to rekey.
const MAX_ATTEMPTS: u32 = 16;
/// Failures kept for the JSON report (all of them go to stderr).
const MAX_REPORTED: usize = 1000;

/// What became of one session.
enum Outcome {
    /// Written under the current key (or, with `--dry-run`, would have been).
    Rekeyed,
    /// Already under the current key: nothing to do.
    Already,
    /// Expired or deleted since it was listed.
    Gone,
    /// Not readable or not writable (corrupt, an unknown key, too large): left as it is.
    Failed(String),
}

#[derive(Default)]
struct Counts {
    rekeyed: u64,
    already: u64,
    gone: u64,
    failed: u64,
    errors: Vec<String>,
}

pub(crate) async fn run(ctx: &Context, args: RekeyArgs) -> CliResult<ExitCode> {
    let codec = ctx.codec();
    let Some(current) = codec.encryption().map(|k| k.current_id().to_owned()) else {
        return Err(CliError::failure(
            "rekey rewrites sessions under the first key of SESSION_ENCRYPTION_KEYS \
             (session.encryption_keys), and none is configured",
        )
        .hint(
            "set SESSION_ENCRYPTION_KEYS=new:BASE64KEY,old:BASE64KEY (new key first; \
             `openssl rand -base64 32` makes one), as the service has it",
        ));
    };
    let glob = parse_glob(args.pattern.as_deref())?;
    let store = ctx.store().await?;
    let mut progress = Progress::new("sessions", ctx.quiet);
    let total = if progress.enabled() && glob.is_none() && args.cursor.is_none() {
        store.count().await.ok()
    } else {
        None
    };
    let start = args.cursor.as_deref().map(Cursor::from);
    let mut listing = Listing::new(ctx, &store, glob.as_ref()).starting_at(start);
    let mut counts = Counts::default();
    let mut done = 0u64;
    loop {
        let page_start = listing.cursor().cloned();
        let resume = |e: CliError| match &page_start {
            Some(cursor) => e.hint(format!(
                "sessions rekeyed so far stay rekeyed; resume with `sessionctl rekey --cursor \
                 {cursor}` (or run it again from the start: it skips them)"
            )),
            None => e.hint(
                "sessions rekeyed so far stay rekeyed; run it again: it skips them".to_owned(),
            ),
        };
        let batch = match listing.next_batch().await {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(e) => return Err(resume(e)),
        };
        let ids: Vec<SessionId> = batch.into_iter().map(|s| s.id).collect();
        let results = rekey_page(&store, &codec, &current, ids, args.dry_run, ctx)
            .await
            .map_err(&resume)?;
        for (id, result) in results {
            match result {
                Ok(Outcome::Rekeyed) => counts.rekeyed += 1,
                Ok(Outcome::Already) => counts.already += 1,
                Ok(Outcome::Gone) => counts.gone += 1,
                Ok(Outcome::Failed(reason)) => {
                    progress.message(&format!("sessionctl: not rekeyed: {reason}"));
                    counts.failed += 1;
                    if counts.errors.len() < MAX_REPORTED {
                        counts.errors.push(reason);
                    }
                }
                Err(e) => {
                    progress.finish();
                    let e = ctx.fail(e);
                    return Err(resume(CliError::failure(format!(
                        "{} (at session {id}, after {} rekeyed)",
                        strip_prefix(&e),
                        counts.rekeyed
                    ))));
                }
            }
            done += 1;
        }
        progress.update(done, total.map(|t| done as f64 / t.max(1) as f64));
    }
    progress.finish();
    report(ctx, &args, &current, &counts)?;
    Ok(if counts.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}

/// The message of a command error without its `sessionctl: ` and hint.
fn strip_prefix(e: &CliError) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first
        .strip_prefix("sessionctl: ")
        .unwrap_or(first)
        .to_owned()
}

/// Rekeys the sessions of one page concurrently (pipelined on the one connection), in id
/// order. A backend failure is returned as the session's `Err`.
async fn rekey_page(
    store: &RedisStore,
    codec: &Codec,
    current: &str,
    ids: Vec<SessionId>,
    dry_run: bool,
    ctx: &Context,
) -> CliResult<Vec<(SessionId, Result<Outcome, Error>)>> {
    let default_ttl = ctx.settings.session.ttl;
    let mut tasks = JoinSet::new();
    for id in ids {
        let (store, codec, current) = (store.clone(), codec.clone(), current.to_owned());
        tasks.spawn(async move {
            let outcome = rekey_one(&store, &codec, &current, &id, dry_run, default_ttl).await;
            (id, outcome)
        });
    }
    let mut results = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.map_err(|e| CliError::failure(format!("a rekey task failed: {e}")))?);
    }
    results.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(results)
}

/// Rekeys one session: load, re-encode, write if unchanged; on a refused write, again on the
/// record the refusal carries.
async fn rekey_one(
    store: &RedisStore,
    codec: &Codec,
    current: &str,
    id: &SessionId,
    dry_run: bool,
    default_ttl: Ttl,
) -> Result<Outcome, Error> {
    let mut record = match store.load(id).await {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(Outcome::Gone),
        Err(e) if e.is_backend_failure() => return Err(e),
        Err(e) => return Ok(Outcome::Failed(e.to_string())),
    };
    for _ in 0..MAX_ATTEMPTS {
        match Codec::inspect(id, &record.payload) {
            Ok(info) if info.key_id() == Some(current) => return Ok(Outcome::Already),
            Ok(_) => {}
            Err(e) => return Ok(Outcome::Failed(e.to_string())),
        }
        let payload = match codec.reencode(id, &record.payload) {
            Ok(payload) => payload,
            Err(e) => return Ok(Outcome::Failed(e.to_string())),
        };
        if dry_run {
            return Ok(Outcome::Rekeyed);
        }
        let Some(ttl) = ttl_of(&record, default_ttl) else {
            return Ok(Outcome::Gone);
        };
        let write = Write::new(payload, Condition::IfUnchanged(record.basis()))
            .with_summary(record.meta.summary.clone())
            .with_ttl(ttl);
        match store.write(id, write).await {
            Ok(WriteOutcome::Written { .. }) => return Ok(Outcome::Rekeyed),
            // Written by someone else since it was read: go again on what is there now (it
            // may be under the current key already).
            Ok(WriteOutcome::Rejected {
                current: Some(now), ..
            }) => record = now,
            Ok(WriteOutcome::Rejected { current: None, .. }) => return Ok(Outcome::Gone),
            Err(e) if e.is_backend_failure() => return Err(e),
            Err(e) => return Ok(Outcome::Failed(e.to_string())),
        }
    }
    Ok(Outcome::Failed(format!(
        "session {id} changed {MAX_ATTEMPTS} times while it was being rekeyed; run rekey \
         again for it"
    )))
}

/// The TTL the rewrite keeps: the time the session had left (so it expires when it would
/// have), or for a key without expiry the TTL its last write set (else the configured one).
/// `None` when it has run out.
fn ttl_of(record: &Record, default_ttl: Ttl) -> Option<Ttl> {
    match record.ttl {
        Some(left) => Ttl::new(left).ok(),
        None => Some(record.meta.written_ttl.unwrap_or(default_ttl)),
    }
}

fn report(ctx: &Context, args: &RekeyArgs, current: &str, counts: &Counts) -> CliResult {
    if ctx.json {
        return output::print_json(&json!({
            "key": current,
            "rekeyed": counts.rekeyed,
            "already": counts.already,
            "gone": counts.gone,
            "failed": counts.failed,
            "errors": counts.errors,
            "dry_run": args.dry_run,
        }));
    }
    if ctx.quiet && counts.failed == 0 && !args.dry_run {
        return Ok(());
    }
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let verb = if args.dry_run {
        "would rekey"
    } else {
        "rekeyed"
    };
    output::println_stdout(&format!(
        "{verb} {} session{} under key {current} ({} already under it, {} gone meanwhile, {} \
         failed){}",
        counts.rekeyed,
        plural(counts.rekeyed),
        counts.already,
        counts.gone,
        counts.failed,
        if args.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    ))
}
