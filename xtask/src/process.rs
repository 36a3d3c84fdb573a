//! Running the commands xtask delegates to (cargo, apt-get), echoed so a log shows what ran.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use crate::Result;

/// The workspace root: xtask lives in `<root>/xtask`.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The workspace's target directory: `$CARGO_TARGET_DIR` (relative to the root when relative),
/// else `<root>/target`.
pub(crate) fn target_dir() -> PathBuf {
    let root = workspace_root();
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| root.join("target"), |d| root.join(d))
}

/// `cargo`, the one that runs xtask when there is one.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// Prints `$ program args` and runs the command to completion with inherited stdio.
pub(crate) fn run(cmd: &mut Command) -> Result<ExitStatus> {
    println!("$ {}", render(cmd));
    cmd.status()
        .map_err(|err| format!("cannot run `{}`: {err}", render(cmd)).into())
}

/// The exit code to hand on for `status`: its code, or 128 + signal number like a shell.
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + signal).unwrap_or(1);
        }
    }
    1
}

fn render(cmd: &Command) -> String {
    // Environment variables are left out on purpose: they may carry a Redis password.
    let mut shown = vec![cmd.get_program().to_string_lossy().into_owned()];
    shown.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    shown.join(" ")
}

/// Whether the process `pid` exists and is not a zombie. Uses `/proc` where there is one, else
/// `kill -0` (the `kill` command: xtask has no unsafe code).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let proc_dir = Path::new("/proc");
    if proc_dir.is_dir() {
        return match std::fs::read_to_string(proc_dir.join(pid.to_string()).join("stat")) {
            // The state follows the parenthesised command name: `123 (redis-server) S ...`.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
            Err(_) => false,
        };
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
