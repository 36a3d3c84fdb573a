//! Finding a `redis-server` binary, or installing one on Debian/Ubuntu when running as root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use redis_harness::env;

use crate::Result;
use crate::process;

/// Where `redis-server` came from, for the summary.
pub(crate) struct Binary {
    pub(crate) path: PathBuf,
    pub(crate) origin: &'static str,
}

/// `$SESSION_TEST_REDIS_SERVER`, else `redis-server` on `PATH` (or in the sbin directories a
/// non-root `PATH` may lack), else on Debian/Ubuntu as root the `redis-server` package, else an
/// error that says how to get one.
pub(crate) fn redis_server() -> Result<Binary> {
    if let Some(path) = std::env::var_os(env::SERVER).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(format!("{}={} is not a file", env::SERVER, path.display()).into());
        }
        return Ok(Binary {
            path,
            origin: env::SERVER,
        });
    }
    if let Some(path) = find() {
        return Ok(Binary {
            path,
            origin: "PATH",
        });
    }
    if can_install_with_apt() {
        install_with_apt()?;
        if let Some(path) = find() {
            return Ok(Binary {
                path,
                origin: "apt-get install redis-server",
            });
        }
        return Err("apt-get installed redis-server but no redis-server binary was found".into());
    }
    Err(HOW_TO_GET_REDIS.into())
}

const HOW_TO_GET_REDIS: &str = "\
no redis-server found (looked at $SESSION_TEST_REDIS_SERVER and PATH).
The Redis tests need one. Either:
  - install it: `sudo apt-get install redis-server` (Debian/Ubuntu; as root `cargo xtask test`
    does this itself), `sudo dnf install redis`, `brew install redis`;
  - point SESSION_TEST_REDIS_SERVER at a redis-server binary (Redis 7, built with TLS);
  - or test against a Redis you run, e.g. `docker compose up -d redis` then
    `SESSION_TEST_REDIS_URL=redis://127.0.0.1:PORT cargo xtask test` (TLS tests are skipped then).";

fn find() -> Option<PathBuf> {
    env::find_on_path("redis-server").or_else(|| {
        [
            "/usr/bin",
            "/usr/sbin",
            "/usr/local/bin",
            "/opt/homebrew/bin",
        ]
        .iter()
        .map(|dir| Path::new(dir).join("redis-server"))
        .find(|path| path.is_file())
    })
}

fn can_install_with_apt() -> bool {
    cfg!(target_os = "linux")
        && Path::new("/etc/debian_version").is_file()
        && env::find_on_path("apt-get").is_some()
        && is_root()
}

/// Whether this process runs as root (who may install packages).
pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Debian's policy-rc.d hook: while it exits 101, package scripts start no service.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

fn install_with_apt() -> Result<()> {
    println!(
        "xtask: redis-server not found; installing the Debian package `redis-server` with \
         apt-get (running as root). Its system service is NOT started: the tests use their own \
         redis-server on free loopback ports."
    );
    // Keep the package's postinst from starting the system service on port 6379. An existing
    // policy is somebody else's: leave it alone.
    let own_policy = !Path::new(POLICY_RC_D).exists();
    if own_policy {
        fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# written by cargo xtask while installing redis-server\nexit 101\n",
        )?;
        set_executable(Path::new(POLICY_RC_D))?;
    }
    let result = apt_get(&["update"])
        .and_then(|()| apt_get(&["install", "-y", "--no-install-recommends", "redis-server"]));
    if own_policy && let Err(err) = fs::remove_file(POLICY_RC_D) {
        eprintln!("xtask: warning: cannot remove {POLICY_RC_D}: {err}");
    }
    result
}

/// Runs `apt-get ARGS` non-interactively; an error names the command when it fails.
pub(crate) fn apt_get(args: &[&str]) -> Result<()> {
    let status = process::run(
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`apt-get {}` failed ({status})", args.join(" ")).into())
    }
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> Result<()> {
    Ok(())
}
