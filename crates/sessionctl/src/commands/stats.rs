//! `sessionctl stats`: count, sizes, TTL distribution and states, from one pass of the listing.

use std::{
    collections::{BTreeMap, HashSet},
    process::ExitCode,
    time::Duration,
};

use serde_json::json;
use session_core::SessionInfo;

use super::{Listing, parse_glob};
use crate::{
    Context,
    cli::StatsArgs,
    error::CliResult,
    output::{self, human_size},
};

/// TTL buckets: label and exclusive upper bound.
const BUCKETS: [(&str, Duration); 5] = [
    ("<1m", Duration::from_secs(60)),
    ("<10m", Duration::from_secs(600)),
    ("<1h", Duration::from_secs(3600)),
    ("<1d", Duration::from_secs(86_400)),
    (">=1d", Duration::MAX),
];
const NO_EXPIRY: &str = "none";

#[derive(Default)]
struct Stats {
    count: u64,
    total_size: u64,
    max_size: u64,
    unreadable: u64,
    ttl: BTreeMap<&'static str, u64>,
    states: BTreeMap<String, u64>,
}

impl Stats {
    fn add(&mut self, info: &SessionInfo) {
        self.count += 1;
        self.total_size += info.meta.size;
        self.max_size = self.max_size.max(info.meta.size);
        if info.version == 0 {
            self.unreadable += 1;
        }
        let bucket = match info.ttl {
            None => NO_EXPIRY,
            Some(ttl) => BUCKETS
                .iter()
                .find(|(_, bound)| ttl < *bound)
                .map_or(">=1d", |(label, _)| *label),
        };
        *self.ttl.entry(bucket).or_default() += 1;
        if let Some(state) = info.meta.summary.get("state") {
            *self.states.entry(state.to_string()).or_default() += 1;
        }
    }

    fn average(&self) -> u64 {
        self.total_size.checked_div(self.count).unwrap_or(0)
    }

    /// Bucket counts in order, zeros included.
    fn ttl_buckets(&self) -> Vec<(&'static str, u64)> {
        BUCKETS
            .iter()
            .map(|(label, _)| *label)
            .chain([NO_EXPIRY])
            .map(|label| (label, self.ttl.get(label).copied().unwrap_or(0)))
            .collect()
    }
}

pub(crate) async fn run(ctx: &Context, args: StatsArgs) -> CliResult<ExitCode> {
    let glob = parse_glob(args.pattern.as_deref())?;
    let store = ctx.store().await?;
    let mut stats = Stats::default();
    let mut seen = HashSet::new();
    let mut listing = Listing::new(ctx, &store, glob.as_ref());
    while let Some(batch) = listing.next_batch().await? {
        for info in batch {
            if seen.insert(info.id.clone()) {
                stats.add(&info);
            }
        }
    }
    if ctx.json {
        let ttl: serde_json::Map<String, serde_json::Value> = stats
            .ttl_buckets()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        output::print_json(&json!({
            "prefix": ctx.options.key_prefix(),
            "count": stats.count,
            "unreadable": stats.unreadable,
            "size": {
                "total": stats.total_size,
                "average": stats.average(),
                "max": stats.max_size,
            },
            "ttl": ttl,
            "states": stats.states,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut lines = vec![
        format!(
            "sessions    {} under {:?} on {}",
            stats.count,
            ctx.options.key_prefix(),
            ctx.url()
        ),
        format!(
            "size        total {}, average {}, max {}",
            human_size(stats.total_size),
            human_size(stats.average()),
            human_size(stats.max_size)
        ),
    ];
    if stats.unreadable > 0 {
        lines.push(format!(
            "unreadable  {} (metadata cannot be read; `sessionctl list` shows them with version 0)",
            stats.unreadable
        ));
    }
    lines.push("ttl".to_owned());
    for (label, n) in stats.ttl_buckets() {
        lines.push(format!("  {label:<6} {n:>8}  {}", bar(n, stats.count)));
    }
    if !stats.states.is_empty() {
        lines.push("states (summary \"state\")".to_owned());
        let width = stats.states.keys().map(String::len).max().unwrap_or(0);
        for (state, n) in &stats.states {
            lines.push(format!(
                "  {state:<width$} {n:>8}  {}",
                bar(*n, stats.count)
            ));
        }
    }
    for line in lines {
        output::println_stdout(line.trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A bar of up to 30 characters for `n` out of `total`.
fn bar(n: u64, total: u64) -> String {
    let len = (n * 30).checked_div(total).unwrap_or(0);
    "#".repeat(len as usize)
}
