//! `cargo xtask test`: the whole test suite against a real Redis, every Redis test mandatory.
//!
//! Redis comes from, in order: `SESSION_TEST_REDIS_URL` or `REDIS_URL` set by the caller (then
//! TLS tests run only when the TLS variables are set too), else a `redis-server` this command
//! starts (and stops) through `redis-harness` on free loopback ports with a TLS port.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use redis_harness::{RedisServer, ServerOptions, env};

use crate::{Result, process, provide};

/// Runs `cargo xtask test [-- ARGS]` and returns the tests' exit code.
pub(crate) fn run(interrupted: &AtomicBool, args: &[&str]) -> Result<ExitCode> {
    suite(interrupted, args).map(ExitCode::from)
}

/// The test step, shared with `cargo xtask ci`: returns the exit code of `cargo test`.
pub(crate) fn suite(interrupted: &AtomicBool, args: &[&str]) -> Result<u8> {
    let args = match args {
        ["--", rest @ ..] => rest,
        rest => rest,
    };
    let mut redis = TestRedis::provide()?;
    let mut cmd = process::cargo();
    cmd.arg("test");
    // `cargo test -p X` narrows the run; `--workspace` would contradict it.
    if !args
        .iter()
        .any(|a| *a == "-p" || a.starts_with("--package") || a.starts_with("-p"))
    {
        cmd.arg("--workspace");
    }
    cmd.arg("--all-features").args(args);
    redis.export(&mut cmd);
    let started = Instant::now();
    let status = process::run(&mut cmd);
    let elapsed = started.elapsed();
    // Stop Redis before reporting, whatever happened to the tests.
    let stopped = redis.stop();
    let status = status?;
    let code = process::exit_code(status);
    println!();
    println!("xtask test: summary");
    for line in redis.describe(&stopped) {
        println!("  {line}");
    }
    println!(
        "  tests:   {} in {:.1}s",
        if status.success() {
            "passed".to_owned()
        } else {
            format!("FAILED (exit code {code})")
        },
        elapsed.as_secs_f64()
    );
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("xtask: interrupted");
        return Ok(130);
    }
    Ok(code)
}

/// The Redis the tests talk to.
enum TestRedis {
    /// One this run started, with a TLS port; stopped at the end.
    Own {
        server: Box<RedisServer>,
        binary: provide::Binary,
        version: String,
    },
    /// One the caller runs.
    External {
        url: String,
        from: &'static str,
        tls: Option<[String; 4]>,
        binary: Option<std::path::PathBuf>,
    },
}

const TLS_VARS: [&str; 4] = [
    env::TLS_URL,
    env::TLS_CA,
    env::TLS_CLIENT_CERT,
    env::TLS_CLIENT_KEY,
];

impl TestRedis {
    fn provide() -> Result<TestRedis> {
        for from in [env::URL, "REDIS_URL"] {
            if let Some(url) = non_empty_var(from) {
                let tls = TLS_VARS.map(non_empty_var);
                let tls = match tls {
                    [Some(a), Some(b), Some(c), Some(d)] => Some([a, b, c, d]),
                    _ => None,
                };
                let binary = std::env::var_os(env::SERVER)
                    .filter(|p| !p.is_empty())
                    .map(Into::into)
                    .or_else(|| env::find_on_path("redis-server"));
                println!(
                    "xtask: testing against the Redis at {} (from {from}); not starting one",
                    mask_password(&url)
                );
                return Ok(TestRedis::External {
                    url,
                    from,
                    tls,
                    binary,
                });
            }
        }
        let binary = provide::redis_server()?;
        let server = RedisServer::start(ServerOptions {
            binary: Some(binary.path.clone()),
            tls: true,
            appendonly: false,
            ..ServerOptions::default()
        })
        .map_err(|err| format!("cannot start redis-server for the tests: {err}"))?;
        let version = server
            .version()
            .unwrap_or_else(|| "(unknown version)".to_owned());
        println!(
            "xtask: started redis-server {version} (pid {}) on {} and {}, dir {}",
            server.pid(),
            server.url(),
            server.tls_url().unwrap_or_default(),
            server.dir().display()
        );
        Ok(TestRedis::Own {
            server: Box::new(server),
            binary,
            version,
        })
    }

    /// Sets the environment contract of `redis_harness::env` on the test command.
    fn export(&self, cmd: &mut std::process::Command) {
        cmd.env(env::REQUIRE, "1");
        match self {
            TestRedis::Own { server, binary, .. } => {
                cmd.env(env::URL, server.url())
                    .env(env::SERVER, &binary.path)
                    .env_remove(env::REQUIRE_TLS)
                    .env_remove(env::REQUIRE_SERVER);
                if let (Some(url), Some(files)) = (server.tls_url(), server.tls_files()) {
                    cmd.env(env::TLS_URL, url)
                        .env(env::TLS_CA, &files.ca_cert)
                        .env(env::TLS_CLIENT_CERT, &files.client_cert)
                        .env(env::TLS_CLIENT_KEY, &files.client_key);
                }
            }
            TestRedis::External {
                url, tls, binary, ..
            } => {
                cmd.env(env::URL, url);
                match tls {
                    Some(values) => {
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
                    Some(path) => cmd.env(env::SERVER, path),
                    None => cmd.env(env::REQUIRE_SERVER, "0"),
                };
            }
        }
    }

    fn stop(&mut self) -> std::io::Result<()> {
        match self {
            TestRedis::Own { server, .. } => server.stop(),
            TestRedis::External { .. } => Ok(()),
        }
    }

    fn describe(&self, stopped: &std::io::Result<()>) -> Vec<String> {
        match self {
            TestRedis::Own {
                server,
                binary,
                version,
            } => vec![
                format!(
                    "redis:   redis-server {version} ({}, from {}), pid {}, {}",
                    binary.path.display(),
                    binary.origin,
                    server.pid(),
                    match stopped {
                        Ok(()) => "stopped".to_owned(),
                        Err(err) => format!("NOT stopped cleanly: {err}"),
                    }
                ),
                format!("plain:   {}", server.url()),
                format!(
                    "tls:     {} (client certificate optional)",
                    server.tls_url().unwrap_or_default()
                ),
                "skipped: none (SESSION_REQUIRE_REDIS=1: every Redis test had to run)".to_owned(),
            ],
            TestRedis::External {
                url,
                from,
                tls,
                binary,
            } => {
                let mut lines = vec![format!(
                    "redis:   {} (from {from}, not started by xtask)",
                    mask_password(url)
                )];
                let mut skipped = Vec::new();
                match tls {
                    Some([tls_url, ..]) => {
                        lines.push(format!("tls:     {}", mask_password(tls_url)))
                    }
                    None => skipped.push(format!("TLS tests (set {})", TLS_VARS.join(", "))),
                }
                if binary.is_none() {
                    skipped.push(format!(
                        "tests that start their own redis-server (none on PATH; set {})",
                        env::SERVER
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
fn mask_password(url: &str) -> String {
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
    use super::mask_password;

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
}
