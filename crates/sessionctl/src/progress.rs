//! A progress bar on stderr for long exports and imports: drawn only when stderr is a
//! terminal, only after the run has lasted a second, at most ten times a second, and erased
//! at the end. Never on stdout, so piped output stays clean.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

/// How long a run goes before the bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(1);
/// Least time between two redraws.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
const WIDTH: u64 = 30;

/// A progress bar (or nothing, when stderr is not a terminal or `--quiet` was given).
pub(crate) struct Progress {
    enabled: bool,
    what: &'static str,
    started: Instant,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// A bar counting `what` (`sessions`, `lines`).
    pub(crate) fn new(what: &'static str, quiet: bool) -> Self {
        Self {
            enabled: !quiet && std::io::stderr().is_terminal(),
            what,
            started: Instant::now(),
            last_draw: None,
            drawn: false,
        }
    }

    /// Whether a bar may be drawn at all.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Reports `done` items; `fraction` is how far along the run is (0 to 1) when known.
    pub(crate) fn update(&mut self, done: u64, fraction: Option<f64>) {
        if !self.enabled || self.started.elapsed() < SHOW_AFTER {
            return;
        }
        let now = Instant::now();
        if self.last_draw.is_some_and(|t| now - t < REDRAW_EVERY) {
            return;
        }
        self.last_draw = Some(now);
        let line = match fraction {
            Some(f) => {
                let f = f.clamp(0.0, 1.0);
                let filled = ((f * WIDTH as f64) as u64).min(WIDTH);
                format!(
                    "[{}{}] {:>3}% {done} {}",
                    "#".repeat(filled as usize),
                    "-".repeat((WIDTH - filled) as usize),
                    (f * 100.0) as u64,
                    self.what
                )
            }
            None => format!("{done} {}...", self.what),
        };
        let mut err = std::io::stderr().lock();
        // A progress bar that cannot be drawn is not worth failing the run.
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erases the bar, so that what follows starts on a clean line.
    pub(crate) fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }

    /// Prints a message on stderr without tearing the bar.
    pub(crate) fn message(&mut self, line: &str) {
        self.finish();
        eprintln!("{line}");
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
