//! Output helpers: JSON documents on stdout, tables and human-readable sizes and durations.

use std::{io::Write, time::Duration};

use serde::Serialize;
use serde_json::{Value, json};
use session_core::{SessionInfo, Summary, Timestamp};

use crate::error::{CliError, CliResult};

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json<T: Serialize>(value: &T) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failure(format!("cannot render JSON: {e}")))?;
    println_stdout(&text)
}

/// Prints a line on stdout; a closed pipe (`sessionctl list | head`) is not an error worth a
/// message, so it ends the process quietly.
pub(crate) fn println_stdout(line: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other.map_err(CliError::from),
    }
}

/// A duration for people: `59s`, `12m 5s`, `3h 20m`, `2d 4h`, or `850ms` below a second.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

/// The TTL column: a duration, or `none` for a key without expiry.
pub(crate) fn human_ttl(ttl: Option<Duration>) -> String {
    ttl.map_or_else(|| "none".to_owned(), human_duration)
}

/// A size for people: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A summary as `key=value key=value`, `-` when empty.
pub(crate) fn human_summary(summary: &Summary) -> String {
    if summary.is_empty() {
        return "-".to_owned();
    }
    summary
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A TTL in JSON: whole milliseconds, `null` without expiry.
pub(crate) fn ttl_ms(ttl: Option<Duration>) -> Value {
    ttl.map_or(Value::Null, |d| {
        json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// A listing entry in JSON (`list --json`, `show --json`).
pub(crate) fn info_json(info: &SessionInfo) -> Value {
    json!({
        "id": info.id.as_str(),
        "version": info.version,
        "ttl_ms": ttl_ms(info.ttl),
        "created_at": info.meta.created_at.as_millis(),
        "updated_at": info.meta.updated_at.as_millis(),
        "size": info.meta.size,
        "summary": info.meta.summary,
    })
}

/// A timestamp for people; `-` for the zero a listing gives unreadable entries.
pub(crate) fn human_time(t: Timestamp) -> String {
    if t.as_millis() == 0 {
        "-".to_owned()
    } else {
        // `2026-11-25T09:10:13.042Z` -> `2026-11-25 09:10:13`: seconds are enough in a table.
        let text = t.to_string();
        text.get(..19).map_or(text.clone(), |s| s.replace('T', " "))
    }
}

/// Column-aligned text: the last column is not padded.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut line = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        line.trim_end().to_owned()
    };
    let mut lines = vec![render(header.to_vec())];
    lines.extend(
        rows.iter()
            .map(|r| render(r.iter().map(String::as_str).collect())),
    );
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_secs(59)), "59s");
        assert_eq!(human_duration(Duration::from_secs(725)), "12m 5s");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 3600 + 1200)),
            "3h 20m"
        );
        assert_eq!(
            human_duration(Duration::from_secs(2 * 86_400 + 4 * 3600)),
            "2d 4h"
        );
        assert_eq!(human_ttl(None), "none");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn tables_align_columns() {
        let lines = table(
            &["ID", "VERSION"],
            &[
                vec!["a".into(), "1".into()],
                vec!["long-id".into(), "22".into()],
            ],
        );
        assert_eq!(lines, ["ID       VERSION", "a        1", "long-id  22"]);
    }
}
