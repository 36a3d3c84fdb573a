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
    /// Command time ("server µs/op") at most this many microseconds per operation.
    ServerUsAtMost(f64),
    /// Round trips ("reads/op", for one request at a time) at most this many per operation.
    RoundTripsAtMost(f64),
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::RatioAtMost(r) => format!("<= {r:.2}x"),
            Target::ThroughputAtLeast(r) => format!(">= {r:.2}x"),
            Target::P50AtMostUs(us) if us >= 1000.0 => format!("p50 <= {:.1} ms", us / 1000.0),
            Target::P50AtMostUs(us) => format!("p50 <= {us:.0} µs"),
            Target::ServerUsAtMost(us) => format!("server <= {us:.0} µs/op"),
            Target::RoundTripsAtMost(n) => format!("<= {n:.0} round trip(s)"),
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
    /// A "best of" row: the keys of the rows it picks from (lowest p50, or highest ops/s);
    /// filled in by [`resolve`].
    pub(crate) best_of: Option<Vec<String>>,
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
            best_of: None,
        }
    }

    /// A row that stands for the best of `candidates` (lowest p50, or highest ops/s), named
    /// `name: <the best one's name>` once [`resolve`] has picked it.
    #[cfg_attr(not(feature = "peers"), allow(dead_code))]
    pub(crate) fn best_of(key: &str, section: &str, name: &str, candidates: &[String]) -> Row {
        Row {
            latency: None,
            best_of: Some(candidates.to_vec()),
            ..Row::latency(key, section, name, empty_latency(), None)
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

/// Fills in "best of" rows, ratios and whether targets are met, from the baselines measured in
/// the same run.
pub(crate) fn resolve(rows: &mut [Row]) {
    pick_best(rows);
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
            Some(Target::ServerUsAtMost(max)) => row.server.as_ref().map(|s| s.server_us <= max),
            // Reads are counted per operation: 1.03 is one round trip plus a rare split read.
            Some(Target::RoundTripsAtMost(max)) => {
                row.server.as_ref().map(|s| s.reads <= max + 0.05)
            }
            None => None,
        };
    }
}

/// Fills every "best of" row from the best of its candidates that were measured.
fn pick_best(rows: &mut [Row]) {
    let snapshot: Vec<Row> = rows.to_vec();
    for row in rows.iter_mut() {
        let Some(candidates) = &row.best_of else {
            continue;
        };
        let measured: Vec<&Row> = candidates
            .iter()
            .filter_map(|k| snapshot.iter().find(|r| &r.key == k))
            .collect();
        let best = measured.iter().copied().reduce(|a, b| {
            let better = match (a.ops_per_s, b.ops_per_s, a.latency, b.latency) {
                (Some(x), Some(y), _, _) => y > x,
                (_, _, Some(x), Some(y)) => y.p50_us < x.p50_us,
                _ => false,
            };
            if better { b } else { a }
        });
        let Some(best) = best else {
            continue;
        };
        row.name = format!("{}: {}", row.name, best.name);
        row.latency = best.latency;
        row.ops_per_s = best.ops_per_s;
        row.server = best.server.clone();
        row.note = Some(format!(
            "best of {}",
            measured
                .iter()
                .map(|r| match (r.ops_per_s, r.latency) {
                    (Some(ops), _) => format!("{} {}/s", r.name, fmt_ops(ops)),
                    (_, Some(l)) => format!("{} p50 {} µs", r.name, fmt_us(l.p50_us)),
                    _ => r.name.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
}

/// A latency in µs for a table cell: 3 significant digits, ms above 10,000 µs.
pub(crate) fn fmt_us(v: f64) -> String {
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

/// Commands, reads/op, server µs/op and server CPU µs/op, or empty cells.
fn server_cells(row: &Row) -> [String; 4] {
    match &row.server {
        Some(s) => [
            s.commands.clone(),
            format!("{:.2}", s.reads),
            format!("{:.1}", s.server_us),
            format!("{:.1}", s.cpu_us),
        ],
        None => Default::default(),
    }
}

/// The summary of every row that has a target, then one table per section.
pub(crate) fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(
        out,
        "| measure | p50 µs | p99 µs | ops/s | baseline | ratio | reads/op | server µs/op | target | result |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|---:|---:|---:|---|---|");
    for row in rows.iter().filter(|r| r.target.is_some()) {
        let [p50, p99, ops, base, ratio, target] = cells(row, rows);
        let [_, reads, server_us, _] = server_cells(row);
        let _ = writeln!(
            out,
            "| {} — {} | {p50} | {p99} | {ops} | {base} | {ratio} | {reads} | {server_us} | {target} | {} |",
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
            "| measure | p50 µs | p99 µs | ops/s | baseline | ratio | target | result | server commands per op | reads/op | server µs/op | server CPU µs/op | note |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---|---:|---|---|---|---:|---:|---:|---|"
        );
        for row in rows.iter().filter(|r| r.section == section) {
            let [p50, p99, ops, base, ratio, target] = cells(row, rows);
            let [commands, reads, server_us, cpu_us] = server_cells(row);
            let _ = writeln!(
                out,
                "| {} | {p50} | {p99} | {ops} | {base} | {ratio} | {target} | {} | {commands} | {reads} | {server_us} | {cpu_us} | {} |",
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
        "{:<64} {:>9} {:>9} {:>9} {:>7} {:>6} {:>7} {:>22} {:>7}",
        "measure", "p50 µs", "p99 µs", "ops/s", "ratio", "reads", "srv µs", "target", "result"
    );
    for row in rows {
        let [p50, p99, ops, _, ratio, target] = cells(row, rows);
        let [_, reads, server_us, _] = server_cells(row);
        let name = format!("{}: {}", row.section, row.name);
        let name: String = name.chars().take(64).collect();
        let _ = writeln!(
            out,
            "{name:<64} {p50:>9} {p99:>9} {ops:>9} {ratio:>7} {reads:>6} {server_us:>7} {target:>22} {:>7}",
            match row.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(p50_us: f64) -> Latency {
        Latency {
            iters: 1,
            p50_us,
            p99_us: p50_us,
            mean_us: p50_us,
            min_us: p50_us,
        }
    }

    fn server(server_us: f64, reads: f64) -> PerOp {
        PerOp {
            server_us,
            reads,
            ..PerOp::default()
        }
    }

    #[test]
    fn best_of_picks_the_lowest_p50_and_targets_compare_with_it() {
        let mut rows = vec![
            Row::latency("a", "s", "peer a", latency(30.0), None),
            Row::latency("b", "s", "peer b", latency(20.0), None),
            Row::best_of(
                "best",
                "s",
                "best peer",
                &["a".into(), "b".into(), "c".into()],
            ),
            Row::latency("lib", "s", "library", latency(22.0), None)
                .vs("best")
                .target(Target::RatioAtMost(1.15)),
            Row::throughput("t1", "s", "t1", 100.0, None),
            Row::throughput("t2", "s", "t2", 300.0, None),
            Row::best_of("tbest", "s", "best", &["t1".into(), "t2".into()]),
        ];
        resolve(&mut rows);
        assert_eq!(rows[2].name, "best peer: peer b");
        assert_eq!(rows[2].latency.map(|l| l.p50_us), Some(20.0));
        assert!((rows[3].ratio.unwrap() - 1.1).abs() < 1e-9);
        assert_eq!(rows[3].met, Some(true));
        assert_eq!(rows[6].ops_per_s, Some(300.0));
    }

    #[test]
    fn server_time_and_round_trip_targets_read_the_server_counters() {
        let mut rows = vec![
            Row::latency("w", "s", "write", latency(30.0), Some(server(6.5, 1.0)))
                .target(Target::ServerUsAtMost(6.0)),
            Row::latency("c", "s", "create", latency(30.0), Some(server(5.0, 1.02)))
                .target(Target::RoundTripsAtMost(1.0)),
            Row::latency("n", "s", "no counters", latency(30.0), None)
                .target(Target::ServerUsAtMost(6.0)),
        ];
        resolve(&mut rows);
        assert_eq!(rows[0].met, Some(false));
        assert_eq!(rows[1].met, Some(true));
        assert_eq!(rows[2].met, None);
        assert_eq!(rows[0].target_text.as_deref(), Some("server <= 6 µs/op"));
    }
}
