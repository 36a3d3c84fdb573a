//! `cargo xtask fuzz [TARGET] [--seconds N] [-- ARGS]`: the fuzz targets of `fuzz/` (cargo-fuzz,
//! libFuzzer), one or all in turn, for a bounded time each.
//!
//! 1. checks the nightly toolchain (`cargo +nightly --version`: libFuzzer's instrumentation
//!    needs it) and installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when
//!    `cargo +nightly fuzz --version` fails;
//! 2. builds the target(s) once: `cargo +nightly fuzz build -s none -a [TARGET]`. No sanitizer:
//!    every crate of the workspace forbids `unsafe`, and AddressSanitizer would halve the
//!    executions; debug assertions (`-a`) on, so that an integer overflow is a finding;
//! 3. runs each for `--seconds` (`-max_total_time`), with its corpus `fuzz/corpus/<TARGET>/`
//!    (the committed `seed-*` files and whatever libFuzzer adds, gitignored) and a 30 s limit
//!    per input (a hang is a finding too);
//! 4. prints each run's executions and executions per second, and exits non-zero when a
//!    target failed, naming the input libFuzzer saved under `fuzz/artifacts/<TARGET>/` and the
//!    command that replays it.
//!
//! `fuzz/` is a cargo workspace of its own (its own lock file and `fuzz/target`), so the stable
//! build of the main workspace never sees it. Too slow for `cargo xtask ci` or `test`: run it
//! by hand, or on a schedule.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::{Result, process};

/// The targets of fuzz/Cargo.toml, in the order `cargo xtask fuzz` runs them.
pub(crate) const TARGETS: &[&str] = &[
    "codec_decode",
    "session_id",
    "list_cursor",
    "redis_url",
    "settings",
    "redis_reply",
];

/// What the command line asks for: `cargo xtask fuzz [TARGET] [--seconds N] [-- ARGS]`.
#[derive(Debug, PartialEq, clap::Args)]
pub(crate) struct Args {
    /// The target to run; every target in turn when omitted
    #[arg(value_name = "TARGET", value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub(crate) target: Option<String>,
    /// How long each target runs, in seconds
    #[arg(
        long,
        value_name = "N",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) seconds: u64,
    /// More arguments for libFuzzer (e.g. `-- -max_len=256`)
    #[arg(last = true, value_name = "ARGS")]
    pub(crate) extra: Vec<String>,
}

/// How one target's run ended.
struct Outcome {
    target: &'static str,
    /// libFuzzer's `stat::number_of_executed_units`.
    executions: Option<u64>,
    /// libFuzzer's `stat::average_exec_per_sec`.
    per_second: Option<u64>,
    /// The inputs it saved (crash, timeout, out of memory); empty when it passed.
    artifacts: Vec<PathBuf>,
    /// Its exit code.
    code: u8,
}

/// Runs `cargo xtask fuzz`.
pub(crate) fn run(interrupted: &AtomicBool, args: &Args) -> Result<ExitCode> {
    let root = process::workspace_root();
    let fuzz_dir = root.join("fuzz");
    check_nightly()?;
    ensure_cargo_fuzz()?;
    let targets: Vec<&'static str> = match &args.target {
        Some(name) => TARGETS.iter().copied().filter(|t| t == name).collect(),
        None => TARGETS.to_vec(),
    };
    let mut build = nightly_cargo();
    build.args(["fuzz", "build", "--fuzz-dir"]).arg(&fuzz_dir);
    build.args(["--sanitizer", "none", "--debug-assertions"]);
    if let Some(name) = &args.target {
        build.arg(name);
    }
    let status = process::run(&mut build)?;
    if !status.success() {
        return Err(format!("building the fuzz targets failed ({status})").into());
    }

    let mut outcomes = Vec::new();
    for target in targets {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        outcomes.push(run_target(&fuzz_dir, target, args)?);
    }
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("xtask fuzz: interrupted");
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::from(report(&root, &outcomes, args.seconds)))
}

/// `cargo +nightly`, through the rustup proxy on `PATH` (the `cargo` that runs xtask is a
/// toolchain's own binary, which knows no `+toolchain`), without the variables that would pin
/// the toolchain or the target directory of the main workspace.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly")
        .current_dir(process::workspace_root())
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

/// Whether `cmd` runs and succeeds, its output discarded.
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn check_nightly() -> Result<()> {
    if succeeds(nightly_cargo().arg("--version")) {
        return Ok(());
    }
    Err(
        "the fuzz targets need the nightly toolchain through rustup, and `cargo +nightly \
         --version` fails: install it with `rustup toolchain install nightly`"
            .into(),
    )
}

fn ensure_cargo_fuzz() -> Result<()> {
    if succeeds(nightly_cargo().args(["fuzz", "--version"])) {
        return Ok(());
    }
    println!("xtask fuzz: cargo-fuzz not found; installing it from crates.io");
    let status = process::run(process::cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    if !status.success() {
        return Err(format!("`cargo install cargo-fuzz --locked` failed ({status})").into());
    }
    Ok(())
}

/// Runs one target for `args.seconds`, its output passed through (and its statistics kept).
fn run_target(fuzz_dir: &Path, target: &'static str, args: &Args) -> Result<Outcome> {
    let artifact_dir = fuzz_dir.join("artifacts").join(target);
    let started = SystemTime::now();
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", "run", "--fuzz-dir"])
        .arg(fuzz_dir)
        .args(["--sanitizer", "none", "--debug-assertions", target, "--"])
        .arg(format!("-max_total_time={}", args.seconds))
        .args(["-timeout=30", "-print_final_stats=1"])
        .args(&args.extra);
    println!("\nxtask fuzz: {target} for {} s", args.seconds);
    let (executions, per_second, status) = run_keeping_stats(&mut cmd)?;
    Ok(Outcome {
        target,
        executions,
        per_second,
        artifacts: if status.success() {
            Vec::new()
        } else {
            new_files(&artifact_dir, started)
        },
        code: process::exit_code(status),
    })
}

/// Runs `cmd` with its stderr (where libFuzzer writes) echoed line by line, and returns the
/// final statistics it printed.
fn run_keeping_stats(
    cmd: &mut Command,
) -> Result<(Option<u64>, Option<u64>, std::process::ExitStatus)> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run {shown}: {err}"))?;
    let (mut executions, mut per_second) = (None, None);
    if let Some(stderr) = child.stderr.take() {
        let mut echo = std::io::stderr();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // A closed terminal must not stop the run: the exit status still counts.
            let _ = writeln!(echo, "{line}");
            if let Some(n) = stat(&line, "stat::number_of_executed_units:") {
                executions = Some(n);
            }
            if let Some(n) = stat(&line, "stat::average_exec_per_sec:") {
                per_second = Some(n);
            }
        }
    }
    let status = child.wait()?;
    Ok((executions, per_second, status))
}

/// The number of a libFuzzer statistics line `<name> <number>`.
fn stat(line: &str, name: &str) -> Option<u64> {
    line.strip_prefix(name)?.trim().parse().ok()
}

/// The files in `dir` modified since `since`, oldest first.
fn new_files(dir: &Path, since: SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(SystemTime, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let modified = e.metadata().ok()?.modified().ok()?;
            (modified >= since).then(|| (modified, e.path()))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, path)| path).collect()
}

/// Prints the table of runs and the failures; returns the exit code.
fn report(root: &Path, outcomes: &[Outcome], seconds: u64) -> u8 {
    let count = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    println!("\nxtask fuzz: {seconds} s per target");
    println!(
        "{:<14} {:>14} {:>10}  result",
        "target", "executions", "exec/s"
    );
    for o in outcomes {
        let result = if o.code == 0 { "ok" } else { "FAILED" };
        println!(
            "{:<14} {:>14} {:>10}  {result}",
            o.target,
            count(o.executions),
            count(o.per_second)
        );
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.code != 0).collect();
    for o in &failed {
        if o.artifacts.is_empty() {
            eprintln!(
                "xtask fuzz: {} failed (exit code {}) without saving an input",
                o.target, o.code
            );
        }
        for artifact in &o.artifacts {
            let shown = artifact.strip_prefix(root).unwrap_or(artifact);
            eprintln!(
                "xtask fuzz: {} failed on {}; replay it with `cd fuzz && cargo +nightly fuzz run \
                 -s none -a {} {}`",
                o.target,
                shown.display(),
                o.target,
                artifact
                    .strip_prefix(root.join("fuzz"))
                    .unwrap_or(artifact)
                    .display()
            );
        }
    }
    failed.first().map_or(0, |o| o.code.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_targets_are_those_of_fuzz_cargo_toml() {
        let manifest = std::fs::read_to_string(process::workspace_root().join("fuzz/Cargo.toml"))
            .expect("fuzz/Cargo.toml");
        let mut bins: Vec<&str> = manifest
            .split("[[bin]]")
            .skip(1)
            .filter_map(|bin| {
                let line = bin.lines().find(|l| l.trim_start().starts_with("name"))?;
                line.split('"').nth(1)
            })
            .collect();
        let mut targets = TARGETS.to_vec();
        bins.sort_unstable();
        targets.sort_unstable();
        assert_eq!(bins, targets);
        for target in TARGETS {
            let source = process::workspace_root().join(format!("fuzz/fuzz_targets/{target}.rs"));
            assert!(source.is_file(), "{}", source.display());
        }
    }

    #[test]
    fn libfuzzer_statistics_are_read() {
        assert_eq!(
            stat(
                "stat::number_of_executed_units: 1234567",
                "stat::number_of_executed_units:"
            ),
            Some(1234567)
        );
        assert_eq!(
            stat(
                "stat::average_exec_per_sec:     2057",
                "stat::average_exec_per_sec:"
            ),
            Some(2057)
        );
        assert_eq!(
            stat("#1234 DONE cov: 1", "stat::number_of_executed_units:"),
            None
        );
    }
}
