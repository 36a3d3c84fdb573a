//! `cargo xtask ci`: the checks CI runs, in order, stopping at the first failure.

use std::process::{Command, ExitCode};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::{Result, dashboard, package, process, test};

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
    /// The architecture invariant that a default build compiles no Redis client.
    NoRedisInDefaultBuild,
    /// `cargo package` of every published crate, verified, as `cargo xtask package`.
    Package,
}

/// The steps, in order. The end-to-end test of the demo runs within `test`; the dashboard's
/// check in headless Chromium follows it; the packages come last (each is built once more,
/// from its `.crate`). A new step is another `Step` (with its own `Action`
/// variant when it is more than a cargo command).
const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        action: Action::Cargo(&["fmt", "--all", "--check"], &[]),
    },
    Step {
        name: "deps",
        action: Action::NoRedisInDefaultBuild,
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
    Step {
        name: "package",
        action: Action::Package,
    },
];

/// Checks ARCHITECTURE.md's invariant "a default `cargo build` compiles no Redis client": the
/// dependency tree of the default members (`cargo tree -e normal`) holds no redis-rs and no
/// deadpool. Returns the step's exit code.
fn no_redis_in_default_build() -> Result<u8> {
    let mut cmd = process::cargo();
    cmd.args(["tree", "-e", "normal", "--prefix", "none"]);
    let output = cmd.output()?;
    if !output.status.success() {
        eprintln!("xtask ci: `cargo tree` failed ({})", output.status);
        return Ok(1);
    }
    let tree = String::from_utf8_lossy(&output.stdout);
    let offenders = redis_clients(&tree);
    if offenders.is_empty() {
        println!("xtask ci: the default members build without a Redis client");
        Ok(0)
    } else {
        eprintln!(
            "xtask ci: a default `cargo build` would compile a Redis client: {}",
            offenders.join(", ")
        );
        Ok(1)
    }
}

/// The lines of a `cargo tree --prefix none` listing that name a Redis client crate.
fn redis_clients(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter(|line| {
            let name = line.split_whitespace().next().unwrap_or_default();
            name == "redis" || name.starts_with("deadpool")
        })
        .collect()
}

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
            Action::Tests => test::suite(interrupted, &test::Args::default())?,
            Action::Dashboard => dashboard::step(interrupted)?,
            Action::NoRedisInDefaultBuild => no_redis_in_default_build()?,
            Action::Package => package::step(&package::Args::default())?,
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

#[cfg(test)]
mod tests {
    use super::redis_clients;

    /// The value of the first `key = "value"` line of a TOML text.
    fn toml_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"'))
        })
    }

    /// clippy's `incompatible_msrv` checks against clippy.toml's msrv, cargo against
    /// `rust-version`: one number, or clippy lets newer APIs through (or flags allowed ones).
    #[test]
    fn clippy_msrv_is_the_workspace_rust_version() {
        let root = crate::process::workspace_root();
        let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap();
        let (manifest, clippy) = (read("Cargo.toml"), read("clippy.toml"));
        let rust_version = toml_value(&manifest, "rust-version").unwrap();
        assert_eq!(toml_value(&clippy, "msrv"), Some(rust_version));
    }

    #[test]
    fn the_redis_client_is_found_and_the_test_harness_is_not() {
        let tree = "session-core v0.1.0\nredis-harness v0.0.0 (/x)\nredis v1.8.1\n\
                    deadpool-redis v0.23.1\ntokio v1.54.1\n";
        assert_eq!(
            redis_clients(tree),
            ["redis v1.8.1", "deadpool-redis v0.23.1"]
        );
        assert!(redis_clients("session-core v0.1.0\nredis-harness v0.0.0\n").is_empty());
    }
}
