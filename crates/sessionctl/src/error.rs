//! What can end a command: a usage error (exit 2) or a failure (exit 1), each with a message
//! for people and, where there is one, a hint about what to do.

use std::{fmt, process::ExitCode};

use session_core::Error;

/// Exit code of a failure: Redis unreachable, session missing or corrupt, bad import lines.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error: bad flag, invalid id or glob (clap uses it too).
pub(crate) const EXIT_USAGE: u8 = 2;

/// A command's error.
#[derive(Debug)]
pub(crate) struct CliError {
    usage: bool,
    message: String,
    hint: Option<String>,
}

/// `Result` with [`CliError`].
pub(crate) type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// A usage error: the command line itself is wrong (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            usage: true,
            message: message.into(),
            hint: None,
        }
    }

    /// A failure (exit 1).
    pub(crate) fn failure(message: impl Into<String>) -> Self {
        Self {
            usage: false,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds what the user can do about it.
    #[must_use]
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A library error met while talking to the Redis at `url` (redacted), with a hint that
    /// fits its kind.
    pub(crate) fn from_store(e: Error, url: &str) -> Self {
        match e {
            Error::InvalidId(e) => Self::usage(e.to_string()),
            Error::Unavailable { .. } => Self::failure(e.to_string()).hint(format!(
                "is redis-server running at {url}? try --url redis://HOST:PORT/DB"
            )),
            Error::Auth { .. } => Self::failure(e.to_string())
                .hint("check the password in REDIS_URL / REDIS_PASSWORD (or --url)"),
            Error::Corrupt { ref id, .. } => {
                let id = id.clone();
                Self::failure(e.to_string()).hint(format!(
                    "`sessionctl show --raw {id}` shows what is stored; \
                     `sessionctl delete {id}` removes it"
                ))
            }
            Error::Config { .. } => Self::failure(e.to_string()),
            other => Self::failure(other.to_string()),
        }
    }

    /// The process exit code.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(if self.usage { EXIT_USAGE } else { EXIT_FAILURE })
    }

    /// Whether this is a usage error.
    #[cfg(test)]
    pub(crate) fn is_usage(&self) -> bool {
        self.usage
    }
}

impl fmt::Display for CliError {
    /// `sessionctl: <message>` and, on the next line, `hint: <hint>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sessionctl: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::failure(e.to_string())
    }
}
