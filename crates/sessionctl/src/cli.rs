//! The command line: global flags, subcommands and their help texts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Inspect and manage durable sessions kept in Redis";

const LONG_ABOUT: &str = "\
Inspect and manage durable sessions kept in Redis.

sessionctl reads the same configuration as the library: config/default.toml,
config/{APP_ENV}.toml, config/local.toml, .env and the environment (USE_REDIS, REDIS_URL,
REDIS_HOST, REDIS_PORT, REDIS_DB, REDIS_USERNAME, REDIS_PASSWORD, REDIS_KEY_PREFIX,
SESSION_TTL ...). The global flags below override it.

sessionctl always talks to Redis: the in-memory store lives inside a service process and
cannot be reached from outside. Even when the settings say USE_REDIS=false, sessionctl uses
the Redis target they describe (REDIS_URL, or the REDIS_HOST/REDIS_PORT parts, default
redis://localhost:6379/0). It never falls back to memory: when Redis cannot be reached, it
says so and exits with 1.

Output is for people by default; --json prints one JSON document on stdout for programs.
Errors go to stderr.

Exit codes: 0 success, 1 failure (Redis unreachable, session not found or corrupt, bad lines
in an import), 2 usage error (unknown flag, invalid session id or glob).";

const EXAMPLES: &str = "\
Examples:
  sessionctl list --match 'user-*' --limit 20
  sessionctl --url redis://127.0.0.1:6380/0 show user-123
  sessionctl show user-123 --raw
  sessionctl ttl user-123 600
  sessionctl export sessions.jsonl
  sessionctl --url redis://new-host:6379/0 import sessions.jsonl
  sessionctl purge --match 'load-test-*' --yes
  SESSION_ENCRYPTION_KEYS=k2:NEWKEY,k1:OLDKEY sessionctl rekey
  sessionctl doctor --json";

/// sessionctl's arguments.
#[derive(Debug, Parser)]
#[command(
    name = "sessionctl",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    propagate_version = true,
    disable_help_subcommand = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every subcommand accepts, before or after its name.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Redis to talk to, overriding REDIS_URL and the REDIS_HOST/PORT/DB/USERNAME/PASSWORD parts
    /// (redis://[user][:password@]host[:port][/db]; rediss:// for TLS).
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) url: Option<String>,

    /// Key prefix of the sessions, overriding REDIS_KEY_PREFIX (default cql:session:).
    #[arg(long, global = true, value_name = "PREFIX")]
    pub(crate) prefix: Option<String>,

    /// Configuration directory to read instead of ./config (same as CONFIG_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) config_dir: Option<PathBuf>,

    /// Environment whose config/{APP_ENV}.toml is read (same as APP_ENV; default development).
    #[arg(long = "env", global = true, value_name = "APP_ENV")]
    pub(crate) app_env: Option<String>,

    /// Print one JSON document on stdout instead of text for people.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Print only what was asked for: no summaries, no progress, no configuration warnings.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List sessions: id, summary, version, TTL, last update, size.
    #[command(after_help = "\
Examples:
  sessionctl list
  sessionctl list --match 'user-*' --limit 50
  sessionctl list --json | jq '.sessions[].id'

Sessions come in Redis SCAN order and are printed sorted by id. With --limit, the listing
stops after N matching sessions (the first found, not the first by id). Entries whose
metadata cannot be read are listed with version 0 and the summary (unreadable).")]
    List(ListArgs),

    /// Print a session's state as pretty JSON (decoded from MessagePack).
    #[command(after_help = "\
Examples:
  sessionctl show user-123
  sessionctl show user-123 --json      # state plus version, TTL, timestamps, summary
  sessionctl show user-123 --raw       # the stored fields as they are, for corrupt entries

Without --json, stdout holds only the state, so it pipes into jq. A session that cannot be
decoded is reported with the reason (exit 1); --raw then shows what is stored.")]
    Show(ShowArgs),

    /// Delete sessions.
    #[command(after_help = "\
Examples:
  sessionctl delete user-123
  sessionctl delete user-1 user-2 user-3 --ignore-missing

Exits with 1 when an id was not found (the others are deleted all the same), unless
--ignore-missing.")]
    Delete(DeleteArgs),

    /// Delete every session whose id matches a glob (SCAN + UNLINK).
    #[command(after_help = "\
Examples:
  sessionctl purge --match 'load-test-*'          # asks before deleting
  sessionctl purge --match '*' --yes               # every session under the prefix
  sessionctl purge --match 'tmp-?' --dry-run        # only count

The glob applies to the session id only, never to the prefix: keys outside the prefix are
never touched. Without --yes, sessionctl asks for confirmation on the terminal, and refuses
when stdin is not a terminal.")]
    Purge(PurgeArgs),

    /// Print a session's remaining TTL, or set it.
    #[command(after_help = "\
Examples:
  sessionctl ttl user-123          # remaining time to live
  sessionctl ttl user-123 600      # expire in 10 minutes (PEXPIRE; the version stays)

Exits with 1 when the session does not exist.")]
    Ttl(TtlArgs),

    /// Write sessions to a JSON Lines file (Redis -> file).
    #[command(after_help = "\
Examples:
  sessionctl export sessions.jsonl
  sessionctl export - --match 'user-*' | gzip > users.jsonl.gz
  sessionctl export sessions.jsonl --with-state   # add the decoded state, for people

One JSON object per line: {\"id\", \"version\", \"ttl_ms\", \"created_at\", \"updated_at\",
\"summary\", \"payload_b64\"} (timestamps in ms since the Unix epoch; ttl_ms null when the key
does not expire). payload_b64 is the stored envelope, byte for byte, so the export is lossless
whatever the state type. Sessions that cannot be read or decoded are reported on stderr and
left out (exit 1). A progress bar shows on stderr when it is a terminal and the run is long.")]
    Export(ExportArgs),

    /// Read sessions from a JSON Lines file (file -> Redis).
    #[command(after_help = "\
Examples:
  sessionctl --url redis://new-host:6379/0 import sessions.jsonl
  sessionctl import sessions.jsonl --no-overwrite --ttl 3600
  cat sessions.jsonl | sessionctl import -

Every line is validated (JSON, id, base64, envelope header, MessagePack body, TTL) before it
is written. A bad line is reported as `line N: reason` on stderr and the import goes on; the
exit code is then 1. A line may carry \"state\" (any JSON) instead of \"payload_b64\": it is
encoded as the library would. Imported sessions get new versions (1 for a new id) and new
timestamps: the store's atomic save sets them. The TTL is the line's ttl_ms (the time left
when it was exported), --ttl, or SESSION_TTL when the line has none.")]
    Import(ImportArgs),

    /// Rewrite every session under the current (first) encryption key.
    #[command(after_help = "\
Examples:
  SESSION_ENCRYPTION_KEYS=k2:NEWKEY,k1:OLDKEY sessionctl rekey
  sessionctl rekey --dry-run                 # only count what would be rewritten
  sessionctl rekey --match 'user-*'
  sessionctl rekey --cursor 'r1:...'         # resume where a failed run stopped

The keys come from SESSION_ENCRYPTION_KEYS (session.encryption_keys), as the service has them:
the first key encrypts, the others only decrypt. Rotation: put a new key first everywhere,
run rekey, then remove the old key once rekey reports nothing left under it.

Each session is re-encoded without decoding its state (decrypted or decompressed as stored,
compressed as SESSION_COMPRESSION says, encrypted under the first key) and written back only
if it is unchanged since it was read: a session a service writes meanwhile is read again and
retried, so no update is lost. The session keeps its summary and the time it had left; its
version goes up by one. Plain, compressed and older-key sessions are rewritten; sessions
already under the first key are skipped, so running rekey again continues where it stopped.
Sessions that cannot be read (corrupt, a key that is not configured) are reported on stderr
and left as they are (exit 1).")]
    Rekey(RekeyArgs),

    /// Count sessions and show sizes, TTL distribution and states.
    #[command(after_help = "\
Examples:
  sessionctl stats
  sessionctl stats --match 'user-*' --json")]
    Stats(StatsArgs),

    /// Check the Redis server: reachability, version, memory policy, persistence, latency.
    #[command(after_help = "\
Examples:
  sessionctl doctor
  sessionctl --url redis://10.0.0.5:6379/0 doctor --json

Each check prints one line: ok, warn or fail, with advice. Exits with 1 when a check fails
(Redis unreachable, credentials refused), 0 otherwise (warnings included).")]
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only sessions whose id matches this glob (* ? [abc] [a-z] [^a]).
    #[arg(long = "match", value_name = "GLOB")]
    pub(crate) pattern: Option<String>,
    /// Print at most N sessions.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The session id.
    pub(crate) id: String,
    /// Print the stored fields as they are (envelope in hex and base64, meta, version, TTL).
    #[arg(long)]
    pub(crate) raw: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The session ids.
    #[arg(required = true, value_name = "ID")]
    pub(crate) ids: Vec<String>,
    /// Exit with 0 even when some ids did not exist.
    #[arg(long)]
    pub(crate) ignore_missing: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// Delete sessions whose id matches this glob (* ? [abc] [a-z] [^a]); '*' for all.
    #[arg(long = "match", value_name = "GLOB", required = true)]
    pub(crate) pattern: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub(crate) yes: bool,
    /// Only count the matching sessions; delete nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TtlArgs {
    /// The session id.
    pub(crate) id: String,
    /// Set the TTL to this many seconds (at least 1).
    #[arg(value_name = "SECONDS")]
    pub(crate) seconds: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The file to write ('-' for stdout). An existing file is replaced.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Only sessions whose id matches this glob.
    #[arg(long = "match", value_name = "GLOB")]
    pub(crate) pattern: Option<String>,
    /// Add each session's decoded state as "state" (for people; import ignores it when
    /// payload_b64 is present).
    #[arg(long)]
    pub(crate) with_state: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The JSON Lines file to read ('-' for stdin).
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Skip sessions whose id already exists instead of overwriting them.
    #[arg(long)]
    pub(crate) no_overwrite: bool,
    /// Give every imported session this TTL in seconds instead of the one in the file.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) ttl: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct RekeyArgs {
    /// Only sessions whose id matches this glob.
    #[arg(long = "match", value_name = "GLOB")]
    pub(crate) pattern: Option<String>,
    /// Start at this listing cursor (printed by a run that failed) instead of the beginning.
    #[arg(long, value_name = "CURSOR")]
    pub(crate) cursor: Option<String>,
    /// Only count the sessions that would be rewritten (and check that they can be); write
    /// nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Only sessions whose id matches this glob.
    #[arg(long = "match", value_name = "GLOB")]
    pub(crate) pattern: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// How many PINGs measure the round-trip latency.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) pings: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let before =
            Cli::try_parse_from(["sessionctl", "--url", "redis://h:1", "--json", "list"]).unwrap();
        assert_eq!(before.global.url.as_deref(), Some("redis://h:1"));
        assert!(before.global.json);
        let after =
            Cli::try_parse_from(["sessionctl", "list", "--json", "--prefix", "p:"]).unwrap();
        assert!(after.global.json);
        assert_eq!(after.global.prefix.as_deref(), Some("p:"));
    }
}
