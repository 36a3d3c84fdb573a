//! [`ServerInfo`]: what a Redis or Valkey server says about itself (version, memory against
//! `maxmemory`, eviction policy, persistence), for dashboards and tools.
//!
//! [`RedisOptions::server_info`] asks the server of a set of options on a connection of its
//! own, made like the store's (same target, credentials, database, TLS files, timeouts) and
//! closed after the call: for an overview page or a health tool, not for every request.
//! [`ServerInfo::from_info`] parses `INFO` text on its own, for callers with a connection.

use std::collections::HashMap;

use serde::Serialize;
use session_core::Result;

use crate::{errors, options::RedisOptions};

/// What a server reports about itself: `INFO server`, `memory`, `persistence` and
/// `replication`, and the RDB save points (`CONFIG GET save`).
///
/// Every field but `server` and `version` is `None` when the server did not report it (an
/// older version, a renamed or refused `CONFIG`). No field holds an address or a credential.
/// New fields may be added.
///
/// ```
/// use session_redis::ServerInfo;
///
/// let info = ServerInfo::from_info(
///     "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\
///      # Memory\r\nused_memory:1048576\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n\
///      # Persistence\r\naof_enabled:0\r\n",
/// );
/// assert_eq!((info.server.as_str(), info.version.as_str()), ("redis", "7.0.15"));
/// assert_eq!(info.maxmemory, Some(0)); // no limit
/// assert_eq!(info.aof_enabled, Some(false));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ServerInfo {
    /// `redis`, or `valkey` when the server reports a `valkey_version`.
    pub server: String,
    /// The server's version (`valkey_version` on Valkey, else `redis_version`); empty when
    /// not reported.
    pub version: String,
    /// `standalone`, `cluster` or `sentinel`.
    pub mode: Option<String>,
    /// Replication role: `master` or `slave`.
    pub role: Option<String>,
    /// Seconds since the server started.
    pub uptime_secs: Option<u64>,
    /// Memory the server's allocator holds for data, in bytes (`used_memory`).
    pub used_memory: Option<u64>,
    /// The memory limit in bytes; `0`: no limit.
    pub maxmemory: Option<u64>,
    /// What the server does at the limit: `noeviction`, `volatile-lru`, `allkeys-lru` ...
    pub maxmemory_policy: Option<String>,
    /// Whether the append-only file is on.
    pub aof_enabled: Option<bool>,
    /// The RDB save points (`CONFIG GET save`, such as `3600 1 300 100`); empty: no
    /// snapshots are scheduled; `None`: `CONFIG` was refused.
    pub rdb_save_points: Option<String>,
    /// When the last RDB snapshot was saved, in seconds since the Unix epoch.
    pub rdb_last_save: Option<u64>,
    /// Changes since that snapshot.
    pub rdb_changes_since_last_save: Option<u64>,
    /// Whether the last background save succeeded.
    pub rdb_last_bgsave_ok: Option<bool>,
}

impl ServerInfo {
    /// Parses the text of one or more `INFO` replies (`field:value` lines; `#` section
    /// headers and unknown fields are skipped). Leaves `rdb_save_points` unset: `INFO` does
    /// not report it.
    pub fn from_info(text: &str) -> Self {
        let fields: HashMap<&str, &str> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.trim(), value.trim()))
            .collect();
        let text = |key: &str| fields.get(key).map(|v| (*v).to_owned());
        let number = |key: &str| fields.get(key).and_then(|v| v.parse::<u64>().ok());
        let flag = |key: &str| fields.get(key).map(|v| *v == "1");
        let (server, version) = match fields.get("valkey_version") {
            Some(version) => ("valkey", *version),
            None => ("redis", fields.get("redis_version").copied().unwrap_or("")),
        };
        Self {
            server: server.to_owned(),
            version: version.to_owned(),
            mode: text("server_mode").or_else(|| text("redis_mode")),
            role: text("role"),
            uptime_secs: number("uptime_in_seconds"),
            used_memory: number("used_memory"),
            maxmemory: number("maxmemory"),
            maxmemory_policy: text("maxmemory_policy"),
            aof_enabled: flag("aof_enabled"),
            rdb_save_points: None,
            rdb_last_save: number("rdb_last_save_time"),
            rdb_changes_since_last_save: number("rdb_changes_since_last_save"),
            rdb_last_bgsave_ok: fields.get("rdb_last_bgsave_status").map(|v| *v == "ok"),
        }
    }
}

impl RedisOptions {
    /// Asks the server for its [`ServerInfo`] (feature `driver`): connects like the store
    /// does, sends `INFO server`, `INFO memory`, `INFO persistence` and `INFO replication` in
    /// one pipeline, then `CONFIG GET save` (whose refusal only leaves
    /// [`rdb_save_points`](ServerInfo::rdb_save_points) unset), and closes the connection.
    /// Returns within connect timeout + command timeout. Through Sentinel it asks the master
    /// the sentinels name; in a cluster, the first seed node.
    ///
    /// # Errors
    /// As [`RedisStore::connect`](crate::RedisStore::connect): [`Unavailable`] when nothing
    /// answers in time, [`Auth`] for refused credentials (or an ACL user without `INFO`),
    /// [`Config`] for unusable options, [`Backend`] for any other refusal. The messages name
    /// the redacted URL only.
    ///
    /// [`Unavailable`]: session_core::Error::Unavailable
    /// [`Auth`]: session_core::Error::Auth
    /// [`Config`]: session_core::Error::Config
    /// [`Backend`]: session_core::Error::Backend
    pub async fn server_info(&self) -> Result<ServerInfo> {
        self.validate()?;
        let url = self.redacted_url();
        let budget = self.connect_timeout() + self.command_timeout();
        match tokio::time::timeout(budget, self.ask_server_info(&url)).await {
            Ok(result) => result,
            Err(_) => Err(errors::timed_out("INFO", &url, budget)),
        }
    }

    async fn ask_server_info(&self, url: &str) -> Result<ServerInfo> {
        // Through Sentinel the server is the master the sentinels name now; in a cluster, the
        // first seed node (one node's facts).
        let mut con = if self.sentinel().is_some() {
            crate::connection::sentinel_maker(self)?
                .connect(&self.connection_config())
                .await
        } else {
            self.client()?
                .get_multiplexed_async_connection_with_config(&self.connection_config())
                .await
        }
        .map_err(|e| errors::map(e, "connect", url))?;
        let mut pipe = redis::pipe();
        for section in ["server", "memory", "persistence", "replication"] {
            pipe.cmd("INFO").arg(section);
        }
        let sections: Vec<String> = pipe
            .query_async(&mut con)
            .await
            .map_err(|e| errors::map(e, "INFO", url))?;
        let mut info = ServerInfo::from_info(&sections.join("\r\n"));
        // CONFIG is often renamed away or refused to application users: the save points are
        // then unknown, which is no failure.
        let save: redis::RedisResult<HashMap<String, String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("save")
            .query_async(&mut con)
            .await;
        info.rdb_save_points = save.ok().and_then(|mut config| config.remove("save"));
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valkey_is_told_from_redis_by_its_own_version_field() {
        let info = ServerInfo::from_info(
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.0.0\r\n\
             server_mode:standalone\r\nredis_mode:standalone\r\nuptime_in_seconds:42\r\n\
             # Replication\r\nrole:master\r\n",
        );
        assert_eq!(info.server, "valkey");
        assert_eq!(info.version, "9.0.0");
        assert_eq!(info.mode.as_deref(), Some("standalone"));
        assert_eq!(info.role.as_deref(), Some("master"));
        assert_eq!(info.uptime_secs, Some(42));
    }

    #[test]
    fn persistence_and_memory_fields_are_read() {
        let info = ServerInfo::from_info(
            "# Memory\r\nused_memory:2097152\r\nused_memory_human:2.00M\r\n\
             maxmemory:268435456\r\nmaxmemory_policy:volatile-lru\r\n\
             # Persistence\r\nloading:0\r\nrdb_changes_since_last_save:7\r\n\
             rdb_last_save_time:1767225600\r\nrdb_last_bgsave_status:err\r\naof_enabled:1\r\n",
        );
        assert_eq!(info.used_memory, Some(2_097_152));
        assert_eq!(info.maxmemory, Some(268_435_456));
        assert_eq!(info.maxmemory_policy.as_deref(), Some("volatile-lru"));
        assert_eq!(info.aof_enabled, Some(true));
        assert_eq!(info.rdb_changes_since_last_save, Some(7));
        assert_eq!(info.rdb_last_save, Some(1_767_225_600));
        assert_eq!(info.rdb_last_bgsave_ok, Some(false));
        assert_eq!(info.rdb_save_points, None);
    }

    #[test]
    fn an_empty_reply_knows_nothing_and_does_not_panic() {
        let info = ServerInfo::from_info("");
        assert_eq!(info.server, "redis");
        assert_eq!(info.version, "");
        assert_eq!(info.used_memory, None);
        let garbage = ServerInfo::from_info("used_memory:lots\r\n:\r\nno colon\r\n");
        assert_eq!(garbage.used_memory, None);
    }
}
