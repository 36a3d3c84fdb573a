//! `cargo xtask bench`: the benchmark suite against a private Redis (or Valkey), written to
//! BENCHMARKS.md (or BENCHMARKS-valkey.md).
//!
//! 1. builds `session-bench` in release, with its feature `peers` (the other Rust session
//!    stores it measures beside the library: crates/peer-bench);
//! 2. starts a private server (no RDB, no AOF) on a free loopback port through redis-harness:
//!    `redis-server` by default or with `--server redis`, a Valkey 9 `valkey-server` with
//!    `--server valkey` (provided like the Valkey pass of `cargo xtask test`: see
//!    [`provide::valkey_server`]);
//! 3. when `taskset` exists, pins the server (every thread: `taskset -a -p -c 0 <pid>`) and
//!    the benchmark (`taskset -c 0 session-bench ...`) to core 0: a same-core loopback round
//!    trip is the cheapest and steadiest there is; across cores it is 2-3x slower and bimodal.
//!    The benchmark widens its own CPU set again (`--memory-cpus`) before the memory-store
//!    section, which runs on 2 threads;
//! 4. runs the benchmark, which measures the library and its raw redis-rs baselines in the same
//!    run, renders the tables and draws the chart (each operation's p50 beside its raw
//!    baseline's, SVG);
//! 5. stops the server (also when the benchmark failed) and writes the report: the machine,
//!    the server (name and version) and rustc versions, the command, the placement, the chart
//!    (an image link), the tables. One file per server, so that a run on one never overwrites
//!    the other's figures or notes: `BENCHMARKS.md` and `BENCHMARKS.svg` for Redis,
//!    `BENCHMARKS-valkey.md` and `BENCHMARKS-valkey.svg` for Valkey. Everything below the line
//!    [`NOTES_MARKER`] in the existing file is kept, so hand-written findings survive a re-run.
//!    `--quick` (a smoke run) writes `target/bench/BENCHMARKS-quick.md` and `.svg` (Valkey:
//!    `BENCHMARKS-valkey-quick.md` and `.svg`) instead.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use redis_harness::{RedisServer, ServerOptions};

use crate::provide::Kind;
use crate::{Result, process, provide};

/// The chart session-bench draws, in the output directory; copied beside the report.
const CHART: &str = "results.svg";

/// The line in BENCHMARKS.md after which hand-written notes start; the tables go above it.
pub(crate) const NOTES_MARKER: &str =
    "<!-- notes below this line are kept by `cargo xtask bench` -->";

/// What the command line asks for: `cargo xtask bench [--quick] [--server redis|valkey] [-- ARGS]`.
#[derive(Debug, PartialEq, clap::Args)]
pub(crate) struct Args {
    /// A smoke run: few iterations, noisy numbers, written to target/bench/
    #[arg(long)]
    pub(crate) quick: bool,
    /// The server to measure
    #[arg(long, value_enum, value_name = "SERVER", default_value_t = Kind::Redis)]
    pub(crate) server: Kind,
    /// Arguments for session-bench (`-- --help` lists them)
    #[arg(last = true, value_name = "ARGS")]
    pub(crate) extra: Vec<String>,
}

impl Args {
    /// Where the report goes: one file per server.
    fn report_path(&self, root: &Path, out_dir: &Path) -> PathBuf {
        let suffix = match self.server {
            Kind::Redis => "",
            Kind::Valkey => "-valkey",
        };
        if self.quick {
            out_dir.join(format!("BENCHMARKS{suffix}-quick.md"))
        } else {
            root.join(format!("BENCHMARKS{suffix}.md"))
        }
    }
}

/// Runs `cargo xtask bench [--quick] [--server redis|valkey] [-- BENCH-ARGS]`.
pub(crate) fn run(interrupted: &AtomicBool, options: &Args) -> Result<ExitCode> {
    let root = process::workspace_root();
    let target_dir = process::target_dir();
    let out_dir = target_dir.join("bench");
    std::fs::create_dir_all(&out_dir)?;

    let status = process::run(process::cargo().args([
        "build",
        "--release",
        "--package",
        "session-bench",
        "--features",
        "peers",
    ]))?;
    if !status.success() {
        return Ok(ExitCode::from(process::exit_code(status)));
    }
    let bench_bin = target_dir.join("release").join("session-bench");

    let kind = options.server;
    let binary = kind.binary()?;
    let mut server = RedisServer::start(ServerOptions {
        binary: Some(binary.path.clone()),
        appendonly: false,
        extra_args: vec!["--save".into(), String::new()],
        ..ServerOptions::default()
    })
    .map_err(|err| format!("cannot start {} for the benchmark: {err}", kind.program()))?;
    println!(
        "xtask: {} {} for the benchmark: {} (pid {}, {}, from {})",
        kind.product(),
        provide::running_version(&server).unwrap_or_else(|| "(unknown version)".into()),
        server.url(),
        server.pid(),
        binary.path.display(),
        binary.origin
    );
    let target = options.report_path(&root, &out_dir);
    let chart_target = target.with_extension("svg");
    let chart_name = chart_target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let outcome = bench_with(&server, kind, &bench_bin, &out_dir, &chart_name, options);
    // Stop the server whatever happened.
    let stopped = server.stop();
    let (report, started) = outcome?;
    if let Err(err) = stopped {
        eprintln!(
            "xtask: warning: stopping the benchmark's {}: {err}",
            kind.program()
        );
    }
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("xtask: interrupted");
        return Ok(ExitCode::from(130));
    }
    let Some(report) = report else {
        return Ok(ExitCode::FAILURE);
    };
    let notes = std::fs::read_to_string(&target)
        .ok()
        .and_then(|old| {
            old.split_once(NOTES_MARKER)
                .map(|(_, notes)| notes.to_owned())
        })
        .unwrap_or_default();
    let text = format!("{report}\n{NOTES_MARKER}{notes}");
    std::fs::write(&target, text).map_err(|e| format!("writing {}: {e}", target.display()))?;
    // The chart goes beside the report, or, when this run drew none (no section with raw
    // baselines ran), an older one is removed: it would show figures the report no longer has.
    let chart = out_dir.join(CHART);
    let chart_written = if chart.is_file() {
        std::fs::copy(&chart, &chart_target)
            .map_err(|e| format!("writing {}: {e}", chart_target.display()))?;
        true
    } else {
        if chart_target.is_file() {
            std::fs::remove_file(&chart_target)
                .map_err(|e| format!("removing {}: {e}", chart_target.display()))?;
        }
        false
    };
    println!(
        "xtask: wrote {}{} ({:.0}s)",
        target.display(),
        if chart_written {
            format!(" and {}", chart_target.display())
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Pins, runs the benchmark and renders the report, which shows the chart (`out_dir/`[`CHART`],
/// to be copied to `chart_name` beside the report) when the benchmark drew one; `None` when
/// the benchmark failed.
fn bench_with(
    server: &RedisServer,
    kind: Kind,
    bench_bin: &Path,
    out_dir: &Path,
    chart_name: &str,
    options: &Args,
) -> Result<(Option<String>, Instant)> {
    let (quick, extra) = (options.quick, options.extra.as_slice());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let pinned = have_taskset() && pin(server.pid(), kind);
    let tables = out_dir.join("results.md");
    let json = out_dir.join("results.json");
    let chart = out_dir.join(CHART);
    // A chart from an earlier run must not pass for this run's.
    if chart.is_file() {
        std::fs::remove_file(&chart).map_err(|e| format!("removing {}: {e}", chart.display()))?;
    }
    let server_version = provide::running_version(server).unwrap_or_else(|| "unknown".into());
    let mut bench_args: Vec<String> = vec![
        "--redis-url".into(),
        server.url(),
        "--json-out".into(),
        json.display().to_string(),
        "--markdown-out".into(),
        tables.display().to_string(),
        "--svg-out".into(),
        chart.display().to_string(),
        "--chart-title".into(),
        format!(
            "{} {server_version}: p50 latency per operation beside its raw baseline{}",
            kind.product(),
            if quick { " (quick run: noisy)" } else { "" }
        ),
    ];
    if quick {
        bench_args.push("--quick".into());
    }
    let mut cmd = if pinned {
        bench_args.extend(["--memory-cpus".into(), format!("0-{}", cores - 1)]);
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", "0"]).arg(bench_bin);
        cmd
    } else {
        Command::new(bench_bin)
    };
    bench_args.extend(extra.iter().cloned());
    cmd.args(&bench_args);
    let started = Instant::now();
    let status = process::run(&mut cmd)?;
    if !status.success() {
        eprintln!("xtask: the benchmark failed ({status})");
        return Ok((None, started));
    }
    let tables = std::fs::read_to_string(&tables)
        .map_err(|e| format!("reading {}: {e}", tables.display()))?;
    let chart = if chart.is_file() {
        format!(
            "![p50 latency of each operation beside its raw baseline, measured in this run]\
             ({chart_name})\n\n"
        )
    } else {
        String::new()
    };
    let program = kind.program();
    let placement = if pinned {
        format!(
            "{program} (all threads) and the benchmark pinned to core 0 with `taskset` \
             (same-core loopback); the memory-store section runs on 2 threads over cores 0-{}",
            cores - 1
        )
    } else {
        "not pinned (`taskset` not found or refused): expect noisier, slower round trips".into()
    };
    let mut shown = vec!["cargo xtask bench".to_owned()];
    if quick {
        shown.push("--quick".into());
    }
    if kind != Kind::Redis {
        shown.push(format!("--server {}", kind.name()));
    }
    if !extra.is_empty() {
        shown.push("--".into());
        shown.extend(extra.iter().cloned());
    }
    let report = format!(
        "# Benchmarks{on}\n\n\
         Written by `{command}` on {date}. Each figure is measured in one run beside its \
         baseline and reported as a ratio: these machines are shared and noisy, so absolute \
         numbers move between runs while ratios measured side by side hold. Speed is never \
         asserted in tests.\n\n\
         | | |\n|---|---|\n\
         | machine | {cpu}, {cores} logical cores, Linux {kernel} |\n\
         | server | {product} {server_version} (private `{program}`, `--save ''`, `--appendonly no`, loopback) |\n\
         | rustc | {rustc} |\n\
         | command | `{command}` → `{bench} {args}` |\n\
         | placement | {placement} |\n\
         | mode | {mode} |\n\n\
         How to read: latencies are per operation in microseconds (p50 / p99 over thousands of \
         sequential operations after a warm-up) on a tokio current_thread runtime; the ratio \
         divides the p50 (or, for throughput, the ops/s) by its baseline's. \
         \"server commands per op\" is the `INFO commandstats` delta divided by the operations: \
         first the commands the clients sent, then, in brackets, the ones Lua scripts ran. \
         \"reads/op\" is the `total_reads_processed` delta per operation: for one request at a \
         time it is the round trips per operation (a value above 1 for large payloads means the \
         request arrived in several reads: the server reads 16 KB at a time), and under \
         concurrency it shows how many operations shared one read (pipelining). \
         \"server µs/op\" is command time: the `usec` of the commands the clients sent, per \
         operation. A command a script runs is counted by Redis and Valkey both in its own \
         `cmdstat_` entry and inside the script's `evalsha`, so it is taken out once: \
         `getrange`, `setrange`, `rename` and `exists` run only inside this project's scripts \
         (listings send `GETRANGE` without scripts) and are left out whole whenever a script \
         ran; for `get`, `pttl`, `unlink` and `set`, which the store also sends itself, the \
         calls that ran inside scripts are counted from the scripts' structure (a refusal's \
         `UNLINK`, and its `GET` + `PTTL` of the record; a delete's `EXISTS`, `UNLINK` and \
         marker `SET`; the store's own `UNLINK` only after a `RENAMENX`) and their time is \
         subtracted at a per-call cost measured at the start of the same run (a record `GET` \
         and a `PTTL` from `get`), or whole when \
         every call of the name ran inside scripts. \"server CPU µs/op\" is the server's main \
         thread CPU time (`used_cpu_user_main_thread` + `used_cpu_sys_main_thread` of \
         `INFO cpu`) per operation: the whole cost of serving it, reading and writing the \
         sockets included (and one `INFO` per measure). Peers: other Rust session stores on \
         Redis, driven through their own store APIs in the same process, on the same core and \
         server, with the same state (converted to JSON as their users do); \"best peer\" is \
         the one with the lowest p50 (or highest ops/s) in this run.\n\n\
         {chart}{tables}",
        on = match kind {
            Kind::Redis => String::new(),
            Kind::Valkey => " on Valkey".to_owned(),
        },
        product = kind.product(),
        command = shown.join(" "),
        date = shell(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        cpu = cpu_model(),
        kernel = shell(&["uname", "-r"]),
        rustc = shell(&["rustc", "--version"]),
        bench = if pinned {
            "taskset -c 0 session-bench"
        } else {
            "session-bench"
        },
        args = bench_args
            .iter()
            .map(|a| {
                if a.starts_with('/') {
                    std::path::Path::new(a)
                        .file_name()
                        .map_or_else(|| a.clone(), |f| f.to_string_lossy().into_owned())
                } else if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        mode = if quick {
            "quick (smoke run, few iterations)"
        } else {
            "full"
        },
    );
    Ok((Some(report), started))
}

fn have_taskset() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Pins every thread of `pid` (a `kind` server) to core 0.
fn pin(pid: u32, kind: Kind) -> bool {
    let pinned = Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !pinned {
        eprintln!(
            "xtask: warning: could not pin {} (pid {pid}); running unpinned",
            kind.program()
        );
    }
    pinned
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|rest| rest.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The trimmed standard output of a command, or `unknown`.
fn shell(argv: &[&str]) -> String {
    let Some((program, args)) = argv.split_first() else {
        return "unknown".into();
    };
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::{Args, Kind};
    use crate::cli::{Cli, Command};

    /// `cargo xtask bench ARGS...` as clap parses it.
    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let cli = Cli::try_parse_from(["xtask", "bench"].into_iter().chain(args.iter().copied()))?;
        match cli.command {
            Some(Command::Bench(args)) => Ok(args),
            other => panic!("not `bench`: {other:?}"),
        }
    }

    #[test]
    fn the_server_flag_chooses_the_server_and_the_report() {
        let (root, out) = (Path::new("/w"), Path::new("/w/target/bench"));
        let default = parse(&[]).unwrap();
        assert_eq!(default.server, Kind::Redis);
        assert_eq!(default.report_path(root, out), root.join("BENCHMARKS.md"));
        let valkey = parse(&["--server", "valkey", "--", "--only", "list"]).unwrap();
        assert_eq!(
            valkey,
            Args {
                quick: false,
                server: Kind::Valkey,
                extra: vec!["--only".to_owned(), "list".to_owned()]
            }
        );
        assert_eq!(
            valkey.report_path(root, out),
            root.join("BENCHMARKS-valkey.md")
        );
        let quick = parse(&["--quick", "--server=valkey"]).unwrap();
        assert_eq!(
            quick.report_path(root, out),
            out.join("BENCHMARKS-valkey-quick.md")
        );
        assert_eq!(
            parse(&["--server=redis", "--quick"])
                .unwrap()
                .report_path(root, out),
            out.join("BENCHMARKS-quick.md")
        );
        assert!(parse(&["--server"]).is_err());
        assert!(parse(&["--server", "memcached"]).is_err());
        assert!(parse(&["--fast"]).is_err());
        // session-bench's flags only after `--`.
        assert!(parse(&["--only", "list"]).is_err());
    }
}
