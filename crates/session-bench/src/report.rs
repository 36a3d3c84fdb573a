//! Results: rows, targets, ratios, and their rendering (human table, JSON, markdown).

use std::fmt::Write as _;

use serde::Serialize;

use crate::{recorder::Latency, server_stats::PerOp};

/// What a target compares.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub(crate) enum Target {
    /// p50 at most this many times the baseline's p50.
    RatioAtMost(f64),
    /// ops/s at least this many times the baseline's ops/s.
    ThroughputAtLeast(f64),
    /// p50 at most this many microseconds.
    P50AtMostUs(f64),
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::RatioAtMost(r) => format!("<= {r:.2}x"),
            Target::ThroughputAtLeast(r) => format!(">= {r:.2}x"),
            Target::P50AtMostUs(us) if us >= 1000.0 => format!("p50 <= {:.1} ms", us / 1000.0),
            Target::P50AtMostUs(us) => format!("p50 <= {us:.0} µs"),
        }
    }
}

/// One measured line.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) key: String,
    pub(crate) section: String,
    pub(crate) name: String,
    pub(crate) latency: Option<Latency>,
    pub(crate) ops_per_s: Option<f64>,
    /// The key of the row this one is divided by.
    pub(crate) baseline: Option<String>,
    pub(crate) ratio: Option<f64>,
    pub(crate) target: Option<Target>,
    pub(crate) target_text: Option<String>,
    pub(crate) met: Option<bool>,
    pub(crate) server: Option<PerOp>,
    pub(crate) note: Option<String>,
}

impl Row {
    pub(crate) fn latency(
        key: &str,
        section: &str,
        name: &str,
        latency: Latency,
        server: Option<PerOp>,
    ) -> Row {
        Row {
            key: key.to_owned(),
            section: section.to_owned(),
            name: name.to_owned(),
            latency: Some(latency),
            ops_per_s: None,
            baseline: None,
            ratio: None,
            target: None,
            target_text: None,
            met: None,
            server,
            note: None,
        }
    }

    pub(crate) fn throughput(
        key: &str,
        section: &str,
        name: &str,
        ops_per_s: f64,
        server: Option<PerOp>,
    ) -> Row {
        Row {
            ops_per_s: Some(ops_per_s),
            latency: None,
            ..Row::latency(key, section, name, empty_latency(), server)
        }
    }

    pub(crate) fn vs(mut self, baseline: &str) -> Row {
        self.baseline = Some(baseline.to_owned());
        self
    }

    pub(crate) fn target(mut self, target: Target) -> Row {
        self.target = Some(target);
        self.target_text = Some(target.describe());
        self
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Row {
        self.note = Some(note.into());
        self
    }
}

fn empty_latency() -> Latency {
    Latency {
        iters: 0,
        p50_us: 0.0,
        p99_us: 0.0,
        mean_us: 0.0,
        min_us: 0.0,
    }
}

/// Fills in ratios and whether targets are met, from the baselines measured in the same run.
pub(crate) fn resolve(rows: &mut [Row]) {
    let snapshot: Vec<Row> = rows.to_vec();
    for row in rows.iter_mut() {
        let base = row
            .baseline
            .as_ref()
            .and_then(|b| snapshot.iter().find(|r| &r.key == b));
        if let Some(base) = base {
            row.ratio = match (row.ops_per_s, base.ops_per_s, row.latency, base.latency) {
                (Some(ops), Some(base_ops), _, _) if base_ops > 0.0 => Some(ops / base_ops),
                (_, _, Some(l), Some(b)) if b.p50_us > 0.0 => Some(l.p50_us / b.p50_us),
                _ => None,
            };
        }
        row.met = match row.target {
            Some(Target::RatioAtMost(max)) => row.ratio.map(|r| r <= max),
            Some(Target::ThroughputAtLeast(min)) => row.ratio.map(|r| r >= min),
            Some(Target::P50AtMostUs(max)) => row.latency.map(|l| l.p50_us <= max),
            None => None,
        };
    }
}

fn fmt_us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_ops(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.1} k", v / 1e3)
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**MISSED**",
        None => "",
    }
}

fn cells(row: &Row, rows: &[Row]) -> [String; 6] {
    let (p50, p99) = match row.latency {
        Some(l) if row.ops_per_s.is_none() => (fmt_us(l.p50_us), fmt_us(l.p99_us)),
        _ => (String::new(), String::new()),
    };
    let ops = row.ops_per_s.map(fmt_ops).unwrap_or_default();
    let base = row
        .baseline
        .as_ref()
        .and_then(|b| rows.iter().find(|r| &r.key == b))
        .map(|b| b.name.clone())
        .unwrap_or_default();
    let ratio = row.ratio.map(|r| format!("{r:.2}x")).unwrap_or_default();
    let target = row.target_text.clone().unwrap_or_default();
    [p50, p99, ops, base, ratio, target]
}

/// The summary of every row that has a target, then one table per section.
pub(crate) fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(
        out,
        "| measure | p50 µs | p99 µs | ops/s | baseline | ratio | target | result |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|---:|---|---|");
    for row in rows.iter().filter(|r| r.target.is_some()) {
        let [p50, p99, ops, base, ratio, target] = cells(row, rows);
        let _ = writeln!(
            out,
            "| {} — {} | {p50} | {p99} | {ops} | {base} | {ratio} | {target} | {} |",
            row.section,
            row.name,
            verdict(row.met)
        );
    }
    let mut sections: Vec<&str> = Vec::new();
    for row in rows {
        if !sections.contains(&row.section.as_str()) {
            sections.push(&row.section);
        }
    }
    for section in sections {
        let _ = writeln!(out, "\n## {section}\n");
        let _ = writeln!(
            out,
            "| measure | p50 µs | p99 µs | ops/s | baseline | ratio | target | result | server commands per op | reads/op | server µs/op | note |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---|---:|---|---|---|---:|---:|---|"
        );
        for row in rows.iter().filter(|r| r.section == section) {
            let [p50, p99, ops, base, ratio, target] = cells(row, rows);
            let (commands, reads, server_us) = match &row.server {
                Some(s) => (
                    s.commands.clone(),
                    format!("{:.2}", s.reads),
                    format!("{:.1}", s.server_us),
                ),
                None => (String::new(), String::new(), String::new()),
            };
            let _ = writeln!(
                out,
                "| {} | {p50} | {p99} | {ops} | {base} | {ratio} | {target} | {} | {commands} | {reads} | {server_us} | {} |",
                row.name,
                verdict(row.met),
                row.note.clone().unwrap_or_default()
            );
        }
    }
    out
}

/// A compact table for the terminal.
pub(crate) fn human(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<58} {:>10} {:>10} {:>10} {:>7} {:>12} {:>7}",
        "measure", "p50 µs", "p99 µs", "ops/s", "ratio", "target", "result"
    );
    for row in rows {
        let [p50, p99, ops, _, ratio, target] = cells(row, rows);
        let name = format!("{}: {}", row.section, row.name);
        let name: String = name.chars().take(58).collect();
        let _ = writeln!(
            out,
            "{name:<58} {p50:>10} {p99:>10} {ops:>10} {ratio:>7} {target:>12} {:>7}",
            match row.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            }
        );
    }
    out
}
