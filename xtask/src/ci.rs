//! `cargo xtask ci`: the checks CI runs, in order, stopping at the first failure.

use std::process::{Command, ExitCode};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::{Result, dashboard, process, test};

/// One CI step: a name for the report and what it does.
struct Step {
    name: &'static str,
    action: Action,
}

enum Action {
    /// A cargo command: its arguments and extra environment.
    Cargo(
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    ),
    /// The test suite with Redis, as `cargo xtask test`.
    Tests,
    /// The dashboard in headless Chromium, as `cargo xtask dashboard`.
    Dashboard,
}

/// The steps, in order. The end-to-end test of the demo runs within `test`; the dashboard's
/// check in headless Chromium follows it. A new step is another `Step` (with its own `Action`
/// variant when it is more than a cargo command).
const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        action: Action::Cargo(&["fmt", "--all", "--check"], &[]),
    },
    Step {
        name: "clippy",
        action: Action::Cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
    },
    Step {
        name: "test",
        action: Action::Tests,
    },
    Step {
        name: "dashboard",
        action: Action::Dashboard,
    },
    Step {
        name: "doc",
        action: Action::Cargo(
            &["doc", "--workspace", "--no-deps", "--all-features"],
            &[("RUSTDOCFLAGS", "-D warnings")],
        ),
    },
];

/// Runs every step; fails fast with the step's name and exit code.
pub(crate) fn run(interrupted: &AtomicBool) -> Result<ExitCode> {
    let started = Instant::now();
    let mut timings = Vec::new();
    for step in STEPS {
        println!("\n==> xtask ci: {}", step.name);
        let step_started = Instant::now();
        let code = match &step.action {
            Action::Cargo(args, envs) => {
                let mut cmd: Command = process::cargo();
                cmd.args(*args).envs(envs.iter().copied());
                process::exit_code(process::run(&mut cmd)?)
            }
            Action::Tests => test::suite(interrupted, &[])?,
            Action::Dashboard => dashboard::step(interrupted)?,
        };
        timings.push((step.name, step_started.elapsed()));
        if code != 0 {
            eprintln!(
                "\nxtask ci: step `{}` FAILED (exit code {code}) after {:.0}s",
                step.name,
                started.elapsed().as_secs_f64()
            );
            return Ok(ExitCode::from(code));
        }
        if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("xtask ci: interrupted");
            return Ok(ExitCode::from(130));
        }
    }
    println!("\nxtask ci: all steps passed");
    for (name, elapsed) in timings {
        println!("  {name:<8} {:>6.1}s", elapsed.as_secs_f64());
    }
    println!("  {:<8} {:>6.1}s", "total", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
