//! `sessionctl export FILE`: every session as one JSON line, the payload envelope in base64.

use std::{
    collections::HashSet,
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use session_core::{Error, Record, SessionId, SessionStore, Summary};
use session_redis::RedisStore;
use tokio::task::JoinSet;

use super::{Listing, parse_glob};
use crate::{
    Context,
    cli::ExportArgs,
    error::{CliError, CliResult, EXIT_FAILURE},
    output,
    progress::Progress,
    state,
};

/// One line of an export file. Every field but `id` is optional on import; `payload_b64` (or
/// else `state`) carries the session.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Line {
    /// The session id (absent only on an error line that is no session's).
    #[serde(default)]
    pub(crate) id: String,
    /// Its version when exported (informational: an import writes new versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<u64>,
    /// Time left when exported, in ms; `null` for a key without expiry.
    #[serde(default)]
    pub(crate) ttl_ms: Option<u64>,
    /// Creation time, ms since the Unix epoch (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) created_at: Option<u64>,
    /// Last write, ms since the Unix epoch (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) updated_at: Option<u64>,
    /// What listings show.
    #[serde(default)]
    pub(crate) summary: Summary,
    /// The stored envelope, base64 (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload_b64: Option<String>,
    /// The decoded state: written with `--with-state`; read when `payload_b64` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) state: Option<Value>,
    /// On an error line of an HTTP export (session-axum's `ExportErrorLine`): the error kind.
    /// `sessionctl export` never writes one; `import` reports such a line as bad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// The error line's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
}

pub(crate) async fn run(ctx: &Context, args: ExportArgs) -> CliResult<ExitCode> {
    let glob = parse_glob(args.pattern.as_deref())?;
    let store = ctx.store().await?;
    let mut out = Output::open(&args.file)?;
    let mut progress = Progress::new("sessions", ctx.quiet);
    // The total is only worth a counting SCAN when there is a bar to draw.
    let total = if progress.enabled() && glob.is_none() {
        store.count().await.ok()
    } else {
        None
    };
    let counts = export_into(
        ctx,
        &store,
        glob.as_ref(),
        &mut out,
        &mut progress,
        total,
        args.with_state,
    )
    .await;
    progress.finish();
    let (exported, left_out) = match counts {
        Ok(counts) => counts,
        Err(e) => {
            out.abort();
            return Err(e);
        }
    };
    out.finish()?;
    if ctx.json {
        output::print_json(&serde_json::json!({
            "exported": exported,
            "left_out": left_out,
            "file": args.file,
        }))?;
    } else if !ctx.quiet {
        eprintln!(
            "exported {exported} session{} to {}{}",
            if exported == 1 { "" } else { "s" },
            args.file.display(),
            if left_out > 0 {
                format!(" ({left_out} unreadable left out, see above)")
            } else {
                String::new()
            }
        );
    }
    Ok(if left_out == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}

/// Writes the matching sessions; returns how many were exported and how many left out.
async fn export_into(
    ctx: &Context,
    store: &RedisStore,
    glob: Option<&crate::glob::IdGlob>,
    out: &mut Output,
    progress: &mut Progress,
    total: Option<u64>,
    with_state: bool,
) -> CliResult<(u64, u64)> {
    let codec = ctx.codec();
    let mut seen = HashSet::new();
    let (mut exported, mut left_out) = (0u64, 0u64);
    let mut listing = Listing::new(ctx, store, glob);
    while let Some(batch) = listing.next_batch().await? {
        let ids: Vec<SessionId> = batch
            .into_iter()
            .map(|s| s.id)
            .filter(|id| seen.insert(id.clone()))
            .collect();
        for (id, loaded) in load_all(store, ids).await? {
            let record = match loaded {
                Ok(Some(record)) => record,
                // Expired or deleted since it was listed.
                Ok(None) => continue,
                Err(e) if e.is_backend_failure() => return Err(ctx.fail(e)),
                Err(e) => {
                    left_out += 1;
                    progress.message(&format!("sessionctl: left out: {e}"));
                    continue;
                }
            };
            let decoded = match state::decode(&codec, &id, &record.payload) {
                Ok(v) => v,
                Err(e) => {
                    left_out += 1;
                    progress.message(&format!("sessionctl: left out: {e}"));
                    continue;
                }
            };
            let line = to_line(&id, record, with_state.then_some(decoded));
            out.write_line(&line)?;
            exported += 1;
            progress.update(exported, total.map(|t| exported as f64 / t.max(1) as f64));
        }
    }
    Ok((exported, left_out))
}

/// Loads the sessions of one page concurrently (one multiplexed connection pipelines them),
/// in id order.
async fn load_all(
    store: &RedisStore,
    ids: Vec<SessionId>,
) -> CliResult<Vec<(SessionId, Result<Option<Record>, Error>)>> {
    let mut tasks = JoinSet::new();
    for id in ids {
        let store = store.clone();
        tasks.spawn(async move {
            let loaded = store.load(&id).await;
            (id, loaded)
        });
    }
    let mut results = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.map_err(|e| CliError::failure(format!("a load task failed: {e}")))?);
    }
    results.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(results)
}

fn to_line(id: &SessionId, record: Record, state: Option<Value>) -> Line {
    Line {
        id: id.to_string(),
        version: Some(record.version),
        ttl_ms: record
            .ttl
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        created_at: Some(record.meta.created_at.as_millis()),
        updated_at: Some(record.meta.updated_at.as_millis()),
        summary: record.meta.summary,
        payload_b64: Some(base64::engine::general_purpose::STANDARD.encode(&record.payload)),
        state,
        error: None,
        message: None,
    }
}

/// Where the lines go: stdout, or a temporary file renamed over FILE at the end, so that a
/// failed export never leaves half a file under the name.
enum Output {
    Stdout(std::io::StdoutLock<'static>),
    File {
        writer: BufWriter<File>,
        tmp: PathBuf,
        path: PathBuf,
    },
}

impl Output {
    fn open(path: &Path) -> CliResult<Self> {
        if path.as_os_str() == "-" {
            return Ok(Self::Stdout(std::io::stdout().lock()));
        }
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(name);
        let file = File::create(&tmp)
            .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))?;
        Ok(Self::File {
            writer: BufWriter::new(file),
            tmp,
            path: path.to_owned(),
        })
    }

    fn write_line(&mut self, line: &Line) -> CliResult {
        let text = serde_json::to_string(line)
            .map_err(|e| CliError::failure(format!("cannot render a line: {e}")))?;
        let result = match self {
            Self::Stdout(out) => writeln!(out, "{text}"),
            Self::File { writer, .. } => writeln!(writer, "{text}"),
        };
        result.map_err(|e| self.error(e))
    }

    fn finish(self) -> CliResult {
        match self {
            Self::Stdout(mut out) => out.flush().map_err(CliError::from),
            Self::File { writer, tmp, path } => {
                let file = writer.into_inner().map_err(|e| {
                    CliError::failure(format!("cannot write {}: {}", path.display(), e.error()))
                })?;
                file.sync_all()
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&tmp);
                        CliError::failure(format!("cannot write {}: {e}", path.display()))
                    })
            }
        }
    }

    /// Removes the temporary file of a failed export.
    fn abort(self) {
        if let Self::File { tmp, .. } = self {
            let _ = std::fs::remove_file(tmp);
        }
    }

    fn error(&self, e: std::io::Error) -> CliError {
        match self {
            Self::Stdout(_) => CliError::failure(format!("cannot write to stdout: {e}")),
            Self::File { tmp, path, .. } => {
                let _ = std::fs::remove_file(tmp);
                CliError::failure(format!("cannot write {}: {e}", path.display()))
            }
        }
    }
}
