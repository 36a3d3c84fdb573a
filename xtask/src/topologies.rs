//! The Redis Cluster and the Sentinel set that each pass of `cargo xtask test` shares with its
//! tests: started beside the pass's server, of the same binary (`redis-server`, then
//! `valkey-server`), in parallel (each takes about 2 s to form: a cluster primary says
//! `cluster_state:ok` 2 s after it started at the earliest, sentinels find each other through
//! hello messages every 2 s), exported as `SESSION_TEST_CLUSTER_NODES`,
//! `SESSION_TEST_SENTINELS` and `SESSION_TEST_SENTINEL_MASTER` with `SESSION_REQUIRE_CLUSTER=1`
//! and `SESSION_REQUIRE_SENTINEL=1`, and killed by pid after the tests.
//!
//! A cluster or Sentinel set named by the caller's environment is used instead of starting one;
//! without a server binary (an external Redis and none on `PATH`) there is neither, and those
//! tests skip.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use redis_harness::{ClusterOptions, RedisCluster, SentinelOptions, SentinelSet, env};

use crate::Result;
use crate::provide::Kind;
use crate::test::mask_password;

/// One of the two setups.
enum Part<T> {
    /// Started by this pass; dropping it kills its processes.
    Own {
        setup: Box<T>,
        urls: Vec<String>,
        took: Duration,
    },
    /// Named by the caller's environment, passed on to the tests as it is.
    External(Vec<String>),
    /// No server binary to start one with: the tests skip.
    Absent,
}

/// The shared cluster and Sentinel set of one pass.
pub(crate) struct Topologies {
    cluster: Part<RedisCluster>,
    sentinels: Part<SentinelSet>,
    master_name: String,
}

impl Topologies {
    /// Starts (in parallel) what the caller's environment does not name, on `binary`.
    pub(crate) fn start(kind: Kind, binary: Option<&Path>) -> Result<Topologies> {
        let external_cluster = non_empty_var(env::CLUSTER_NODES);
        let external_sentinels = match (
            non_empty_var(env::SENTINELS),
            non_empty_var(env::SENTINEL_MASTER),
        ) {
            (Some(urls), Some(name)) => Some((urls, name)),
            _ => None,
        };
        let start_cluster = external_cluster.is_none() && binary.is_some();
        let start_sentinels = external_sentinels.is_none() && binary.is_some();
        let started = Instant::now();
        let (cluster, sentinels) = thread::scope(|scope| {
            let cluster = start_cluster.then(|| {
                scope.spawn(|| {
                    RedisCluster::start(ClusterOptions {
                        binary: binary.map(Path::to_path_buf),
                        ..ClusterOptions::default()
                    })
                    .map(|cluster| (cluster, started.elapsed()))
                })
            });
            let sentinels = start_sentinels.then(|| {
                scope.spawn(|| {
                    SentinelSet::start(SentinelOptions {
                        binary: binary.map(Path::to_path_buf),
                        ..SentinelOptions::default()
                    })
                    .map(|set| (set, started.elapsed()))
                })
            });
            (join(cluster), join(sentinels))
        });
        let program = kind.program();
        // On an error the other one, if it started, is dropped (killed) here too.
        let cluster = match (cluster, external_cluster) {
            (Some(started), _) => {
                let (cluster, took) =
                    started.map_err(|err| format!("cannot start a {program} cluster: {err}"))?;
                let urls = cluster.primary_urls()?;
                Part::Own {
                    setup: Box::new(cluster),
                    urls,
                    took,
                }
            }
            (None, Some(urls)) => Part::External(list(&urls)),
            (None, None) => Part::Absent,
        };
        let (sentinels, master_name) = match (sentinels, external_sentinels) {
            (Some(started), _) => {
                let (set, took) = started
                    .map_err(|err| format!("cannot start a {program} Sentinel set: {err}"))?;
                let name = set.master_name().to_owned();
                let urls = set.sentinel_urls();
                let part = Part::Own {
                    setup: Box::new(set),
                    urls,
                    took,
                };
                (part, name)
            }
            (None, Some((urls, name))) => (Part::External(list(&urls)), name),
            (None, None) => (Part::Absent, String::new()),
        };
        if start_cluster || start_sentinels {
            println!(
                "xtask: started {} of {program} in {:.1}s",
                [
                    start_cluster.then_some("a cluster (3 primaries + 3 replicas)"),
                    start_sentinels.then_some("a Sentinel set (master, replica, 3 sentinels)"),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" and "),
                started.elapsed().as_secs_f64()
            );
        }
        Ok(Topologies {
            cluster,
            sentinels,
            master_name,
        })
    }

    /// Sets the cluster and Sentinel part of `redis_harness::env`'s contract on the test
    /// command.
    pub(crate) fn export(&self, cmd: &mut Command) {
        match &self.cluster {
            Part::Own { urls, .. } | Part::External(urls) => {
                cmd.env(env::CLUSTER_NODES, urls.join(","))
                    .env(env::REQUIRE_CLUSTER, "1");
            }
            Part::Absent => {
                cmd.env_remove(env::CLUSTER_NODES)
                    .env(env::REQUIRE_CLUSTER, "0");
            }
        }
        match &self.sentinels {
            Part::Own { urls, .. } | Part::External(urls) => {
                cmd.env(env::SENTINELS, urls.join(","))
                    .env(env::SENTINEL_MASTER, &self.master_name)
                    .env(env::REQUIRE_SENTINEL, "1");
            }
            Part::Absent => {
                cmd.env_remove(env::SENTINELS)
                    .env_remove(env::SENTINEL_MASTER)
                    .env(env::REQUIRE_SENTINEL, "0");
            }
        }
    }

    /// Kills what this pass started (by pid) and returns the summary lines.
    pub(crate) fn stop(self) -> Vec<String> {
        let cluster = describe(
            "cluster:",
            self.cluster,
            env::CLUSTER_NODES,
            "3 primaries + 3 replicas, primaries",
        );
        let sentinel = describe(
            "sentinel:",
            self.sentinels,
            env::SENTINELS,
            &format!("master {:?}, sentinels", self.master_name),
        );
        vec![cluster, sentinel]
    }
}

/// The outcome of a thread that started a setup; a panic in it is an error like any other.
fn join<T>(
    handle: Option<thread::ScopedJoinHandle<'_, std::io::Result<T>>>,
) -> Option<std::io::Result<T>> {
    handle.map(|handle| {
        handle
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the thread starting it panicked")))
    })
}

fn describe<T>(label: &str, part: Part<T>, variable: &str, what: &str) -> String {
    let masked = |urls: &[String]| {
        urls.iter()
            .map(|url| mask_password(url))
            .collect::<Vec<_>>()
            .join(",")
    };
    match part {
        Part::Own { setup, urls, took } => {
            let stopped = Instant::now();
            drop(setup);
            format!(
                "{label:<8} {what} {} (formed in {:.1}s), killed in {:.1}s",
                masked(&urls),
                took.as_secs_f64(),
                stopped.elapsed().as_secs_f64()
            )
        }
        Part::External(urls) => format!(
            "{label:<8} {} (from {variable}, not started by xtask)",
            masked(&urls)
        ),
        Part::Absent => {
            format!("{label:<8} none (no server binary to start one): those tests skipped")
        }
    }
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}
