//! `sessionctl import FILE`: JSON Lines back into Redis, every line validated first; bad lines
//! are reported as `line N: reason` and the import goes on.

use std::{
    collections::HashSet,
    fs::File,
    io::{BufRead, BufReader, Read},
    process::ExitCode,
};

use base64::Engine;
use bytes::Bytes;
use serde_json::json;
use session_core::{Codec, Condition, Error, SessionId, SessionStore, Ttl, Write};
use session_redis::RedisStore;
use tokio::task::JoinSet;

use super::export::Line;
use crate::{
    Context,
    cli::ImportArgs,
    error::{CliError, CliResult, EXIT_FAILURE},
    output,
    progress::Progress,
    state,
};

/// Saves sent concurrently (pipelined on the one connection).
const BATCH: usize = 256;
/// Bad lines kept for the JSON report (all of them go to stderr).
const MAX_REPORTED: usize = 1000;

/// One validated line, ready to save.
struct Ready {
    line: u64,
    id: SessionId,
    write: Write,
}

#[derive(Default)]
struct Counts {
    imported: u64,
    skipped: u64,
    bad: u64,
    errors: Vec<(u64, String)>,
}

impl Counts {
    fn bad(&mut self, progress: &mut Progress, line: u64, reason: String) {
        progress.message(&format!("line {line}: {reason}"));
        self.bad += 1;
        if self.errors.len() < MAX_REPORTED {
            self.errors.push((line, reason));
        }
    }
}

pub(crate) async fn run(ctx: &Context, args: ImportArgs) -> CliResult<ExitCode> {
    let ttl_override = args
        .ttl
        .map(|s| Ttl::from_secs(s).map_err(|e| CliError::usage(format!("invalid --ttl {s}: {e}"))))
        .transpose()?;
    let (reader, size): (Box<dyn Read>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let file = File::open(&args.file)
            .map_err(|e| CliError::failure(format!("cannot read {}: {e}", args.file.display())))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let store = ctx.store().await?;
    let condition = if args.no_overwrite {
        Condition::IfAbsent
    } else {
        Condition::Any
    };
    let codec = ctx.codec();
    let default_ttl = ttl_override.unwrap_or(ctx.settings.session.ttl);
    let mut progress = Progress::new("lines", ctx.quiet);
    let mut counts = Counts::default();
    let mut batch: Vec<Ready> = Vec::with_capacity(BATCH);
    let mut in_batch = HashSet::new();
    let (mut read_bytes, mut number) = (0u64, 0u64);
    let mut reader = BufReader::new(reader);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .map_err(|e| CliError::failure(format!("cannot read {}: {e}", args.file.display())))?;
        if n == 0 {
            break;
        }
        number += 1;
        read_bytes += n as u64;
        let Ok(text) = std::str::from_utf8(&raw) else {
            counts.bad(&mut progress, number, "not UTF-8 text".to_owned());
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        match validate(&codec, text, ttl_override, default_ttl, condition) {
            Ok((id, write)) => {
                // The same id twice in one batch: save the first before the second.
                if !in_batch.insert(id.clone()) {
                    flush(ctx, &store, &mut batch, &mut counts, &mut progress).await?;
                    in_batch.clear();
                    in_batch.insert(id.clone());
                }
                batch.push(Ready {
                    line: number,
                    id,
                    write,
                });
                if batch.len() == BATCH {
                    flush(ctx, &store, &mut batch, &mut counts, &mut progress).await?;
                    in_batch.clear();
                }
            }
            Err(reason) => counts.bad(&mut progress, number, reason),
        }
        progress.update(number, size.map(|s| read_bytes as f64 / s.max(1) as f64));
    }
    flush(ctx, &store, &mut batch, &mut counts, &mut progress).await?;
    progress.finish();
    report(ctx, &args, &counts)?;
    Ok(if counts.bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}

/// Checks one line and turns it into a write: JSON, id, base64, envelope header and body,
/// TTL. The reason is for `line N: reason`.
fn validate(
    codec: &Codec,
    text: &str,
    ttl_override: Option<Ttl>,
    default_ttl: Ttl,
    condition: Condition,
) -> Result<(SessionId, Write), String> {
    let line: Line =
        serde_json::from_str(text).map_err(|e| format!("not a valid session object: {e}"))?;
    if let Some(error) = &line.error {
        let what = if line.id.is_empty() {
            "the export broke off here".to_owned()
        } else {
            format!("session {} could not be exported", line.id)
        };
        return Err(format!(
            "an error line, not a session: {what} ({error}: {})",
            line.message.as_deref().unwrap_or("no message")
        ));
    }
    let id = SessionId::new(&line.id).map_err(|e| e.to_string())?;
    let payload = match (&line.payload_b64, &line.state) {
        (Some(b64), _) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("payload_b64 of session {id} is not base64: {e}"))?;
            state::decode(codec, &id, &bytes).map_err(|e| e.to_string())?;
            Bytes::from(bytes)
        }
        (None, Some(value)) => codec.encode(&id, value).map_err(|e| e.to_string())?,
        (None, None) => return Err(format!("session {id} has neither payload_b64 nor state")),
    };
    let ttl = match (ttl_override, line.ttl_ms) {
        (Some(ttl), _) => ttl,
        (None, Some(ms)) => Ttl::from_millis(ms)
            .map_err(|e| format!("ttl_ms {ms} of session {id} is not usable: {e}"))?,
        (None, None) => default_ttl,
    };
    Ok((
        id,
        Write::new(payload, condition)
            .with_summary(line.summary)
            .with_ttl(ttl),
    ))
}

/// Saves the batch concurrently. A conflict under `--no-overwrite` is a skip; a session the
/// store refuses (too large) is a bad line; a backend failure stops the import.
async fn flush(
    ctx: &Context,
    store: &RedisStore,
    batch: &mut Vec<Ready>,
    counts: &mut Counts,
    progress: &mut Progress,
) -> CliResult {
    let mut tasks = JoinSet::new();
    for ready in batch.drain(..) {
        let store = store.clone();
        tasks.spawn(async move {
            let saved = store.save(&ready.id, ready.write).await;
            (ready.line, saved)
        });
    }
    let mut results = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.map_err(|e| CliError::failure(format!("a save task failed: {e}")))?);
    }
    results.sort_by_key(|(line, _)| *line);
    let mut failure = None;
    for (line, saved) in results {
        match saved {
            Ok(_) => counts.imported += 1,
            Err(Error::Conflict { .. }) => counts.skipped += 1,
            Err(e) if e.is_backend_failure() => {
                failure.get_or_insert((line, e));
            }
            Err(e) => counts.bad(progress, line, e.to_string()),
        }
    }
    match failure {
        Some((line, e)) => {
            progress.finish();
            let imported = counts.imported;
            Err(ctx.fail(e).hint(format!(
                "the import stopped at line {line} after {imported} sessions were imported; \
                 importing the file again is safe (without --no-overwrite it rewrites them)"
            )))
        }
        None => Ok(()),
    }
}

fn report(ctx: &Context, args: &ImportArgs, counts: &Counts) -> CliResult {
    if ctx.json {
        let errors: Vec<_> = counts
            .errors
            .iter()
            .map(|(line, reason)| json!({ "line": line, "reason": reason }))
            .collect();
        return output::print_json(&json!({
            "imported": counts.imported,
            "skipped": counts.skipped,
            "bad": counts.bad,
            "errors": errors,
        }));
    }
    if !ctx.quiet || counts.bad > 0 {
        eprintln!(
            "imported {}, skipped {} (already there), bad {} from {}",
            counts.imported,
            counts.skipped,
            counts.bad,
            args.file.display()
        );
    }
    Ok(())
}
