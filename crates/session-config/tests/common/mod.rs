#![allow(dead_code, clippy::unwrap_used)]
//! What the configuration tests share: a temporary directory for configuration files (without
//! a dependency, removed on drop) and the parts of a configuration error.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use session_config::Settings;
use session_core::Error;

/// The key, value and expectation of the [`Error::Config`] in `result`; panics on anything
/// else.
pub(crate) fn config_error(result: Result<Settings, Error>) -> (String, String, String) {
    match result {
        Err(Error::Config {
            key,
            value,
            expected,
        }) => (key, value, expected),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory.
    pub(crate) fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "session-config-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` (relative to the directory) and returns its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
