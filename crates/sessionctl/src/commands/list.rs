//! `sessionctl list [--match GLOB] [--limit N]`.

use std::collections::HashSet;

use serde_json::json;

use super::{Listing, parse_glob};
use crate::{
    Context,
    cli::ListArgs,
    error::CliResult,
    output::{self, human_size, human_summary, human_time, human_ttl},
};

pub(crate) async fn run(ctx: &Context, args: ListArgs) -> CliResult<std::process::ExitCode> {
    let glob = parse_glob(args.pattern.as_deref())?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let store = ctx.store().await?;
    let mut listing = Listing::new(ctx, &store, glob.as_ref());
    let mut sessions = Vec::new();
    // SCAN may return a key twice while Redis rehashes.
    let mut seen = HashSet::new();
    let mut truncated = false;
    while let Some(batch) = listing.next_batch().await? {
        for info in batch {
            if sessions.len() == limit {
                truncated = true;
                break;
            }
            if seen.insert(info.id.clone()) {
                sessions.push(info);
            }
        }
        if truncated {
            break;
        }
    }
    sessions.sort_by(|a, b| a.id.cmp(&b.id));
    if ctx.json {
        output::print_json(&json!({
            "sessions": sessions.iter().map(output::info_json).collect::<Vec<_>>(),
            "count": sessions.len(),
            "truncated": truncated,
        }))?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if !sessions.is_empty() {
        let rows: Vec<Vec<String>> = sessions
            .iter()
            .map(|s| {
                let summary = if s.version == 0 {
                    "(unreadable)".to_owned()
                } else {
                    human_summary(&s.meta.summary)
                };
                vec![
                    s.id.to_string(),
                    s.version.to_string(),
                    human_ttl(s.ttl),
                    human_time(s.meta.updated_at),
                    human_size(s.meta.size),
                    summary,
                ]
            })
            .collect();
        let header = ["ID", "VERSION", "TTL", "UPDATED (UTC)", "SIZE", "SUMMARY"];
        for line in output::table(&header, &rows) {
            output::println_stdout(&line)?;
        }
    }
    if !ctx.quiet {
        let what = match &glob {
            Some(g) => format!(" matching {:?}", g.as_str()),
            None => String::new(),
        };
        let more = if truncated {
            " (--limit reached; more exist)"
        } else {
            ""
        };
        eprintln!(
            "{} session{}{what} under {:?} on {}{more}",
            sessions.len(),
            if sessions.len() == 1 { "" } else { "s" },
            ctx.options.key_prefix(),
            ctx.url()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
