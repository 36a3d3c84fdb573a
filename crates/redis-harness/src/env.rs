//! The environment contract between `cargo xtask test` and the Redis tests.
//!
//! `cargo xtask test` starts one `redis-server` (plain and TLS port), exports the variables
//! below and sets [`REQUIRE`] to `1`; then it runs the server tests again against a Valkey 9
//! `valkey-server` without TLS ([`SERVER_KIND`] `valkey`, [`REQUIRE_TLS`] and [`SERVER_TLS`]
//! `0`). A test asks for what it needs and skips when it is absent:
//!
//! ```no_run
//! #[test]
//! fn saved_sessions_survive() {
//!     let Some(url) = redis_harness::env::redis_url("saved_sessions_survive") else {
//!         return; // skipped: "SKIPPED saved_sessions_survive: no Redis ..." went to stderr
//!     };
//!     // ... connect to `url`
//! #   let _ = url;
//! }
//! ```
//!
//! With `SESSION_REQUIRE_REDIS=1` a missing variable panics instead, so a CI run can never pass by
//! skipping everything.
//!
//! In each pass `cargo xtask test` also starts a shared Redis Cluster ([`CLUSTER_NODES`]) and a
//! shared Sentinel set ([`SENTINELS`], [`SENTINEL_MASTER`]) of the same server and sets
//! [`REQUIRE_CLUSTER`] and [`REQUIRE_SENTINEL`] to `1`. Tests that only read and write use
//! those ([`cluster_nodes`], [`sentinels`]); tests that kill nodes start their own
//! ([`private_cluster`], [`private_sentinels`]):
//!
//! ```no_run
//! use redis_harness::{ClusterOptions, key_slot};
//!
//! #[test]
//! fn a_primary_dies_and_its_replica_serves_its_sessions() {
//!     let test = "a_primary_dies_and_its_replica_serves_its_sessions";
//!     let Some(mut cluster) = redis_harness::env::private_cluster(test, ClusterOptions::default())
//!     else {
//!         return; // skipped (or, with SESSION_REQUIRE_CLUSTER=1, panicked)
//!     };
//!     let slot = key_slot(b"{s:1}");
//!     cluster.kill_primary_of(slot).unwrap();
//!     cluster.wait_for_failover(slot).unwrap();
//! }
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// `redis://127.0.0.1:PORT` of the shared test server (no password).
pub const URL: &str = "SESSION_TEST_REDIS_URL";
/// `rediss://127.0.0.1:TLSPORT`: the TLS port of the same server.
pub const TLS_URL: &str = "SESSION_TEST_REDIS_TLS_URL";
/// Path of the CA certificate (PEM) that signed the TLS server certificate.
pub const TLS_CA: &str = "SESSION_TEST_REDIS_TLS_CA";
/// Path of a client certificate (PEM) signed by that CA.
pub const TLS_CLIENT_CERT: &str = "SESSION_TEST_REDIS_TLS_CLIENT_CERT";
/// Path of the client certificate's private key (PEM, PKCS#8).
pub const TLS_CLIENT_KEY: &str = "SESSION_TEST_REDIS_TLS_CLIENT_KEY";
/// Path of the `redis-server` binary, for tests that start their own servers.
pub const SERVER: &str = "SESSION_TEST_REDIS_SERVER";
/// `0`: the binary in [`SERVER`] has no TLS support (the Valkey build `cargo xtask test` runs):
/// [`private_server`] with `tls: true` skips then, like [`tls`] (see [`server_has_tls`]).
pub const SERVER_TLS: &str = "SESSION_TEST_REDIS_SERVER_TLS";
/// Which server [`URL`] and [`SERVER`] are: `redis` (also when unset) or `valkey`. For messages,
/// and for the rare test whose expectation differs between the two (see [`server_kind`]).
pub const SERVER_KIND: &str = "SESSION_TEST_SERVER_KIND";
/// `1`: a missing Redis fails the test instead of skipping it.
pub const REQUIRE: &str = "SESSION_REQUIRE_REDIS";
/// `0`: with [`REQUIRE`] set, TLS tests may still skip ([`tls`] returns `None`). For a run
/// against a Redis the caller provides without TLS.
pub const REQUIRE_TLS: &str = "SESSION_REQUIRE_REDIS_TLS";
/// `0`: with [`REQUIRE`] set, tests that start their own servers may still skip
/// ([`server_binary`] returns `None`). For a run on a machine without `redis-server`.
pub const REQUIRE_SERVER: &str = "SESSION_REQUIRE_REDIS_SERVER";
/// Comma-separated `redis://127.0.0.1:PORT` URLs of the primaries of the shared test Redis
/// Cluster (3 primaries with a replica each, no password).
pub const CLUSTER_NODES: &str = "SESSION_TEST_CLUSTER_NODES";
/// Comma-separated `redis://127.0.0.1:PORT` URLs of the sentinels of the shared Sentinel set
/// (3 sentinels over a master and a replica, no passwords).
pub const SENTINELS: &str = "SESSION_TEST_SENTINELS";
/// The name the sentinels of [`SENTINELS`] monitor their master under.
pub const SENTINEL_MASTER: &str = "SESSION_TEST_SENTINEL_MASTER";
/// `1`: a missing cluster fails the test instead of skipping it: [`cluster_nodes`] without
/// [`CLUSTER_NODES`], [`private_cluster`] without a server binary. Independent of [`REQUIRE`]
/// (a run against a plain Redis the caller provides has no cluster).
pub const REQUIRE_CLUSTER: &str = "SESSION_REQUIRE_CLUSTER";
/// `1`: a missing Sentinel set fails the test instead of skipping it, like
/// [`REQUIRE_CLUSTER`] for [`sentinels`] and [`private_sentinels`].
pub const REQUIRE_SENTINEL: &str = "SESSION_REQUIRE_SENTINEL";
/// `0`: with [`REQUIRE`] set, tests that put a server in a network namespace of their own
/// ([`Partition::for_test`](crate::Partition::for_test)) may still skip. For a run without
/// root, or in a container that refuses namespaces.
pub const REQUIRE_NETNS: &str = "SESSION_REQUIRE_NETNS";

/// What a TLS test needs to reach the shared test server over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsEnv {
    /// `rediss://127.0.0.1:TLSPORT` (from [`TLS_URL`]).
    pub url: String,
    /// The CA certificate to trust (from [`TLS_CA`]).
    pub ca: PathBuf,
    /// A client certificate signed by the CA (from [`TLS_CLIENT_CERT`]).
    pub client_cert: PathBuf,
    /// The client certificate's key (from [`TLS_CLIENT_KEY`]).
    pub client_key: PathBuf,
}

/// The shared Sentinel set of [`sentinels`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelEnv {
    /// `redis://127.0.0.1:PORT` of every sentinel (from [`SENTINELS`]).
    pub sentinels: Vec<String>,
    /// The name they monitor the master under (from [`SENTINEL_MASTER`]).
    pub master: String,
}

/// Whether [`REQUIRE`] is set to `1` (or `true`).
pub fn redis_required() -> bool {
    flag(REQUIRE)
}

/// Whether [`REQUIRE_CLUSTER`] is set to `1` (or `true`).
pub fn cluster_required() -> bool {
    flag(REQUIRE_CLUSTER)
}

/// Whether [`REQUIRE_SENTINEL`] is set to `1` (or `true`).
pub fn sentinel_required() -> bool {
    flag(REQUIRE_SENTINEL)
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Whether the part switched by `part` ([`REQUIRE_TLS`], [`REQUIRE_SERVER`]) is required:
/// [`redis_required`] unless `part` is `0` (or `false`).
fn part_required(part: &str) -> bool {
    redis_required()
        && !std::env::var(part).is_ok_and(|v| v == "0" || v.eq_ignore_ascii_case("false"))
}

/// The server under test, from [`SERVER_KIND`]: `redis` (the default) or `valkey`.
pub fn server_kind() -> String {
    var(SERVER_KIND).unwrap_or_else(|| "redis".to_owned())
}

/// Whether the binary of [`server_binary`] supports TLS: unless [`SERVER_TLS`] is `0` (or
/// `false`).
pub fn server_has_tls() -> bool {
    !std::env::var(SERVER_TLS).is_ok_and(|v| v == "0" || v.eq_ignore_ascii_case("false"))
}

/// The URL of the shared test Redis, from [`URL`].
///
/// When it is unset: panics with a clear message if [`REQUIRE`] is set, else prints
/// `SKIPPED <test>: no Redis (set SESSION_TEST_REDIS_URL or run `cargo xtask test`)` to stderr
/// and returns `None`.
pub fn redis_url(test: &str) -> Option<String> {
    match var(URL) {
        Some(url) => Some(url),
        None => missing(
            test,
            redis_required(),
            &format!("no Redis (set {URL} or run `cargo xtask test`)"),
        ),
    }
}

/// The TLS endpoint of the shared test Redis: [`TLS_URL`], [`TLS_CA`], [`TLS_CLIENT_CERT`] and
/// [`TLS_CLIENT_KEY`], all required. Skips or panics like [`redis_url`] when any is unset
/// (never panics when [`REQUIRE_TLS`] is `0`).
pub fn tls(test: &str) -> Option<TlsEnv> {
    let values = [TLS_URL, TLS_CA, TLS_CLIENT_CERT, TLS_CLIENT_KEY].map(|name| (name, var(name)));
    let absent: Vec<&str> = values
        .iter()
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| *name)
        .collect();
    match values {
        [
            (_, Some(url)),
            (_, Some(ca)),
            (_, Some(client_cert)),
            (_, Some(client_key)),
        ] => Some(TlsEnv {
            url,
            ca: ca.into(),
            client_cert: client_cert.into(),
            client_key: client_key.into(),
        }),
        _ => missing(
            test,
            part_required(REQUIRE_TLS),
            &format!(
                "no Redis over TLS (set {} or run `cargo xtask test`)",
                absent.join(", ")
            ),
        ),
    }
}

/// The `redis-server` binary for tests that start their own servers: [`SERVER`] if set, else
/// `redis-server` found on `PATH`. Skips or panics like [`redis_url`] when there is none (never
/// panics when [`REQUIRE_SERVER`] is `0`).
pub fn server_binary(test: &str) -> Option<PathBuf> {
    find_server_binary(test, part_required(REQUIRE_SERVER).then_some(REQUIRE))
}

/// [`server_binary`] for a test of a setup that `require` ([`REQUIRE_CLUSTER`],
/// [`REQUIRE_SENTINEL`]) makes mandatory: it panics when that is set, and otherwise as
/// [`server_binary`] does.
fn setup_binary(test: &str, require: &'static str) -> Option<PathBuf> {
    let required_by = match flag(require) {
        true => Some(require),
        false => part_required(REQUIRE_SERVER).then_some(REQUIRE),
    };
    find_server_binary(test, required_by)
}

fn find_server_binary(test: &str, required_by: Option<&str>) -> Option<PathBuf> {
    if let Some(path) = var(SERVER) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Some(path);
        }
        return missing_because(
            test,
            required_by,
            &format!("{SERVER}={} is not a file", path.display()),
        );
    }
    match find_on_path("redis-server") {
        Some(path) => Some(path),
        None => missing_because(
            test,
            required_by,
            &format!("no redis-server (put it on PATH, set {SERVER} or run `cargo xtask test`)"),
        ),
    }
}

/// A `redis-server` of the test's own (for restarts, passwords, ACLs, command counts ...),
/// started with `options` on the binary [`server_binary`] finds; `None` (after the SKIPPED
/// line, or a panic when Redis is required) when there is none, or when `options` ask for TLS
/// and the binary has none ([`server_has_tls`]; a panic then only when [`REQUIRE_TLS`] is not
/// `0`). Panics, naming the test, when the server does not start.
pub fn private_server(test: &str, options: crate::ServerOptions) -> Option<crate::RedisServer> {
    let binary = server_binary(test)?;
    if options.tls && !server_has_tls() {
        return missing(
            test,
            part_required(REQUIRE_TLS),
            &format!("{} has no TLS ({SERVER_TLS}=0)", binary.display()),
        );
    }
    let server = crate::RedisServer::start(crate::ServerOptions {
        binary: Some(binary),
        ..options
    });
    Some(server.unwrap_or_else(|e| panic!("{test}: cannot start redis-server: {e}")))
}

/// The primaries of the shared test cluster, from [`CLUSTER_NODES`] (one URL each).
///
/// When it is unset: panics if [`REQUIRE_CLUSTER`] is set, else prints `SKIPPED <test>: no
/// Redis Cluster (set SESSION_TEST_CLUSTER_NODES or run `cargo xtask test`)` to stderr and
/// returns `None`.
pub fn cluster_nodes(test: &str) -> Option<Vec<String>> {
    match var(CLUSTER_NODES).map(|nodes| list(&nodes)) {
        Some(nodes) if !nodes.is_empty() => Some(nodes),
        _ => missing_because(
            test,
            cluster_required().then_some(REQUIRE_CLUSTER),
            &format!("no Redis Cluster (set {CLUSTER_NODES} or run `cargo xtask test`)"),
        ),
    }
}

/// The shared Sentinel set, from [`SENTINELS`] and [`SENTINEL_MASTER`], both required. Skips
/// or panics like [`cluster_nodes`] when either is unset, panicking when
/// [`REQUIRE_SENTINEL`] is set.
pub fn sentinels(test: &str) -> Option<SentinelEnv> {
    let sentinels = var(SENTINELS).map(|urls| list(&urls)).unwrap_or_default();
    match (sentinels.is_empty(), var(SENTINEL_MASTER)) {
        (false, Some(master)) => Some(SentinelEnv { sentinels, master }),
        _ => missing_because(
            test,
            sentinel_required().then_some(REQUIRE_SENTINEL),
            &format!(
                "no Sentinel set (set {SENTINELS} and {SENTINEL_MASTER} or run `cargo xtask test`)"
            ),
        ),
    }
}

/// A Redis Cluster of the test's own (for kills, failovers, restarts, slot migrations),
/// started with `options` on the binary [`server_binary`] finds (`valkey-server` in the Valkey
/// pass of `cargo xtask test`); `None` (after the SKIPPED line) when there is none, a panic
/// instead when [`REQUIRE_CLUSTER`] is set (or Redis tests that start their own servers are
/// required, see [`server_binary`]). Panics, naming the test, when the cluster does not form.
pub fn private_cluster(test: &str, options: crate::ClusterOptions) -> Option<crate::RedisCluster> {
    let binary = setup_binary(test, REQUIRE_CLUSTER)?;
    let cluster = crate::RedisCluster::start(crate::ClusterOptions {
        binary: Some(binary),
        ..options
    });
    Some(cluster.unwrap_or_else(|e| panic!("{test}: cannot start a Redis Cluster: {e}")))
}

/// A Sentinel set of the test's own (for failovers and kills), started with `options` on the
/// binary [`server_binary`] finds; skips or panics like [`private_cluster`], panicking when
/// [`REQUIRE_SENTINEL`] is set.
pub fn private_sentinels(
    test: &str,
    options: crate::SentinelOptions,
) -> Option<crate::SentinelSet> {
    let binary = setup_binary(test, REQUIRE_SENTINEL)?;
    let set = crate::SentinelSet::start(crate::SentinelOptions {
        binary: Some(binary),
        ..options
    });
    Some(set.unwrap_or_else(|e| panic!("{test}: cannot start a Sentinel set: {e}")))
}

/// The non-empty items of a comma-separated list.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The first executable file called `name` in the directories of `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// What a test does when something Redis-related it needs is absent: panics naming `test` and
/// `why` when Redis is required ([`REQUIRE`]), else prints `SKIPPED <test>: <why>` where a plain
/// `cargo test` shows it and returns `None`.
pub fn skip_or_require<T>(test: &str, why: &str) -> Option<T> {
    missing(test, redis_required(), why)
}

/// [`skip_or_require`] for what a network namespace needs (root, `ip`): panics only when Redis
/// is required and [`REQUIRE_NETNS`] is not `0`.
pub fn skip_or_require_netns<T>(test: &str, why: &str) -> Option<T> {
    missing(test, part_required(REQUIRE_NETNS), why)
}

fn missing<T>(test: &str, required: bool, why: &str) -> Option<T> {
    missing_because(test, required.then_some(REQUIRE), why)
}

/// [`missing`] for what the variable `required_by` (when `Some`) makes mandatory.
fn missing_because<T>(test: &str, required_by: Option<&str>, why: &str) -> Option<T> {
    if let Some(variable) = required_by {
        panic!("{test}: {variable}=1 but {why}");
    }
    // Straight to the process's stderr, not through `eprintln!`: the test harness captures
    // what the print macros write and shows it only for failing tests, and a skip must be
    // visible in a plain `cargo test`.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    None
}

#[cfg(test)]
mod tests {
    use super::list;

    #[test]
    fn lists_are_comma_separated_and_blank_items_dropped() {
        assert_eq!(
            list(" redis://127.0.0.1:1, redis://127.0.0.1:2,,"),
            ["redis://127.0.0.1:1", "redis://127.0.0.1:2"]
        );
        assert!(list(" , ").is_empty());
    }
}
