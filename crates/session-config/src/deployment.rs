//! Which kind of Redis deployment the settings describe: one server, a Redis Cluster
//! (`REDIS_CLUSTER_NODES`) or a master found through Redis Sentinel (`REDIS_SENTINELS`,
//! `REDIS_SENTINEL_MASTER`), chosen explicitly with `REDIS_DEPLOYMENT` or by which of the
//! lists is set.

use std::fmt;

use session_core::{Error, Result};

use crate::{
    ConnectionMode, RedisTarget,
    keys::{self, Key},
    settings::Warning,
    sources::{Given, Resolved},
    target::credential,
};

/// Where the sessions' Redis is: one server, a cluster, or a master found through Sentinel
/// (`REDIS_DEPLOYMENT`, `REDIS_CLUSTER_NODES`, `REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`).
///
/// Neither `Debug` nor `Display` shows a password.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Deployment {
    /// One server (with or without replicas): [`RedisSettings::target`](crate::RedisSettings).
    #[default]
    Single,
    /// A Redis Cluster (or Valkey in cluster mode), reached through these seed nodes; every
    /// node has the same credentials and TLS, and only database 0.
    Cluster {
        /// The seed nodes, with the credentials and TLS applied.
        nodes: Vec<RedisTarget>,
    },
    /// A master found through Redis Sentinel; the data nodes' user, password, database and
    /// TLS come from [`RedisSettings::target`](crate::RedisSettings) (its host and port are
    /// not used).
    Sentinel {
        /// The sentinels, with their own user and password (`REDIS_SENTINEL_USERNAME`,
        /// `REDIS_SENTINEL_PASSWORD`, or in the URLs) applied.
        sentinels: Vec<RedisTarget>,
        /// The name the sentinels monitor the master under.
        master: String,
    },
}

impl Deployment {
    /// `single`, `cluster` or `sentinel`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Cluster { .. } => "cluster",
            Self::Sentinel { .. } => "sentinel",
        }
    }
}

impl fmt::Display for Deployment {
    /// `single`, `cluster (nodes redis://a:7000/0, ...)` or
    /// `sentinel (master "mymaster" through redis://s:26379/0, ...)`, passwords masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |targets: &[RedisTarget]| {
            targets
                .iter()
                .map(RedisTarget::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Self::Single => f.write_str("single"),
            Self::Cluster { nodes } => write!(f, "cluster (nodes {})", list(nodes)),
            Self::Sentinel { sentinels, master } => {
                write!(
                    f,
                    "sentinel (master {master:?} through {})",
                    list(sentinels)
                )
            }
        }
    }
}

/// The deployment, the setting (as spelled) that chose it, and the one that asked for TLS
/// when a node URL did.
pub(crate) struct ChosenDeployment {
    pub(crate) deployment: Deployment,
    pub(crate) asked_by: Option<&'static str>,
    pub(crate) tls_asked_by: Option<&'static str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Single,
    Cluster,
    Sentinel,
}

fn kind(given: &Given) -> Result<Kind> {
    match given.text.to_ascii_lowercase().as_str() {
        "single" | "standalone" => Ok(Kind::Single),
        "cluster" => Ok(Kind::Cluster),
        "sentinel" => Ok(Kind::Sentinel),
        _ => Err(given.invalid(
            "single (one server), cluster (REDIS_CLUSTER_NODES) or sentinel (REDIS_SENTINELS \
             and REDIS_SENTINEL_MASTER)",
        )),
    }
}

fn non_empty(r: &Resolved, key: Key) -> Option<&Given> {
    r.get(key).filter(|g| !g.text.is_empty())
}

/// How a key is named in a message about `near`: spelled as the source of `near` spells
/// keys (`REDIS_DB` next to an environment variable, `redis.db` next to a TOML key).
fn name_like(near: &Given, key: Key) -> &'static str {
    if near.spelled.contains('.') {
        key.toml
    } else {
        key.env
    }
}

/// The deployment the layers describe. `target` is the single server's target (from
/// `REDIS_URL` and its parts): its user, password and TLS apply to cluster nodes that do not
/// say their own, and to Sentinel's data nodes.
pub(crate) fn deployment(
    r: &Resolved,
    target: &RedisTarget,
    mode: ConnectionMode,
    warnings: &mut Vec<Warning>,
) -> Result<ChosenDeployment> {
    // `redis.mode = "cluster"` (or `sentinel`) chooses the deployment as `REDIS_DEPLOYMENT`
    // does; the two must not disagree.
    let by_mode = r
        .get(keys::REDIS_MODE)
        .filter(|g| matches!(g.text.to_ascii_lowercase().as_str(), "cluster" | "sentinel"));
    let explicit = match (
        r.get(keys::REDIS_DEPLOYMENT).filter(|g| !g.text.is_empty()),
        by_mode,
    ) {
        (Some(deployment), Some(mode)) if !deployment.text.eq_ignore_ascii_case(&mode.text) => {
            return Err(mode.invalid(format!(
                "the deployment {} says ({} is set in {}): remove one of them or make them agree",
                deployment.spelled, deployment.spelled, deployment.origin
            )));
        }
        (Some(deployment), _) => Some(deployment),
        (None, mode) => mode,
    };
    let nodes = non_empty(r, keys::REDIS_CLUSTER_NODES);
    let sentinels = non_empty(r, keys::REDIS_SENTINELS);
    let master = non_empty(r, keys::REDIS_SENTINEL_MASTER);
    let chosen = match explicit {
        Some(given) => kind(given)?,
        None => match (nodes, sentinels) {
            (Some(nodes), Some(sentinels)) => {
                return Err(sentinels.error(
                    format!("(with {} set in {})", nodes.spelled, nodes.origin),
                    format!(
                        "either a cluster ({}) or Sentinel ({}), not both: remove one of them, \
                         or choose with REDIS_DEPLOYMENT (redis.deployment)",
                        nodes.spelled, sentinels.spelled
                    ),
                ));
            }
            (Some(_), None) => Kind::Cluster,
            (None, Some(_)) => Kind::Sentinel,
            (None, None) => Kind::Single,
        },
    };
    match chosen {
        Kind::Single => {
            if explicit.is_none()
                && let Some(master) = master
            {
                return Err(master.invalid(format!(
                    "no master name without sentinels: set {} too (or remove {})",
                    name_like(master, keys::REDIS_SENTINELS),
                    master.spelled
                )));
            }
            Ok(ChosenDeployment {
                deployment: Deployment::Single,
                asked_by: None,
                tls_asked_by: None,
            })
        }
        Kind::Cluster => {
            let Some(nodes) = nodes else {
                return Err(missing_list(explicit, keys::REDIS_CLUSTER_NODES, "cluster"));
            };
            if let ConnectionMode::Pool { .. } = mode
                && let Some(given) = r.get(keys::REDIS_MODE)
            {
                return Err(given.invalid(format!(
                    "multiplexed with a cluster ({} is set in {}): the cluster connection \
                     keeps one multiplexed connection per node",
                    nodes.spelled, nodes.origin
                )));
            }
            warn_unused_host(r, nodes, warnings);
            let cluster = cluster_nodes(r, nodes, target)?;
            let tls_asked_by = cluster
                .iter()
                .any(RedisTarget::tls)
                .then_some(nodes.spelled);
            Ok(ChosenDeployment {
                deployment: Deployment::Cluster { nodes: cluster },
                asked_by: Some(explicit.map_or(nodes.spelled, |g| g.spelled)),
                tls_asked_by,
            })
        }
        Kind::Sentinel => {
            let Some(sentinels) = sentinels else {
                return Err(missing_list(explicit, keys::REDIS_SENTINELS, "sentinel"));
            };
            let Some(master) = master else {
                return Err(Error::config(
                    name_like(sentinels, keys::REDIS_SENTINEL_MASTER),
                    "(not set)",
                    format!(
                        "the name the sentinels monitor the master under (`sentinel monitor \
                         <name> ...`), since {} is set in {}",
                        sentinels.spelled, sentinels.origin
                    ),
                ));
            };
            if master
                .text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(master.invalid("a master name without spaces"));
            }
            if let ConnectionMode::Pool { .. } = mode
                && let Some(given) = r.get(keys::REDIS_MODE)
            {
                return Err(given.invalid(format!(
                    "multiplexed with Sentinel ({} is set in {}): a pool of connections \
                     found through the sentinels is not supported",
                    sentinels.spelled, sentinels.origin
                )));
            }
            warn_unused_host(r, sentinels, warnings);
            let list = sentinel_list(r, sentinels)?;
            let tls_asked_by = list
                .iter()
                .any(RedisTarget::tls)
                .then_some(sentinels.spelled);
            Ok(ChosenDeployment {
                deployment: Deployment::Sentinel {
                    sentinels: list,
                    master: master.text.clone(),
                },
                asked_by: Some(explicit.map_or(sentinels.spelled, |g| g.spelled)),
                tls_asked_by,
            })
        }
    }
}

/// `REDIS_DEPLOYMENT=cluster` (or `sentinel`) without its list.
fn missing_list(explicit: Option<&Given>, list: Key, kind: &str) -> Error {
    match explicit {
        Some(given) => given.invalid(format!(
            "single, or {kind} with {} set as well (comma-separated URLs)",
            name_like(given, list)
        )),
        None => Error::config(list.env, "(not set)", "comma-separated URLs"),
    }
}

/// A warning when a server's host or port is set next to a cluster or Sentinel: they are not
/// used (the credentials, database and TLS still are).
fn warn_unused_host(r: &Resolved, list: &Given, warnings: &mut Vec<Warning>) {
    let set: Vec<&Given> = [keys::REDIS_URL, keys::REDIS_HOST, keys::REDIS_PORT]
        .into_iter()
        .filter_map(|key| non_empty(r, key))
        .collect();
    if set.is_empty() {
        return;
    }
    let names: Vec<&str> = set.iter().map(|g| g.spelled).collect();
    warnings.push(Warning::new(
        set.iter()
            .map(|g| g.spelled.to_owned())
            .chain([list.spelled.to_owned()])
            .collect(),
        format!(
            "{} set next to {}: the server's host and port are not used (the nodes come from \
             {}); its user, password, database and TLS still apply",
            names.join(", "),
            list.spelled,
            list.spelled
        ),
    ));
}

/// The URLs of a comma-separated list, each parsed as `REDIS_URL` is.
fn parse_list(given: &Given) -> Result<Vec<RedisTarget>> {
    let targets = given
        .text
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| RedisTarget::parse(u).map_err(|e| given.rekey(e)))
        .collect::<Result<Vec<_>>>()?;
    if targets.is_empty() {
        return Err(given.invalid("comma-separated redis:// or rediss:// URLs"));
    }
    Ok(targets)
}

/// The cluster's nodes: database 0 only; a node without a user or password takes
/// `REDIS_USERNAME` / `REDIS_PASSWORD` (or `REDIS_URL`'s), and one set in a later layer than
/// the list overrides the nodes', as for `REDIS_URL`; `REDIS_TLS=true` (or a `rediss://`
/// `REDIS_URL`) turns TLS on for every node.
fn cluster_nodes(r: &Resolved, list: &Given, target: &RedisTarget) -> Result<Vec<RedisTarget>> {
    if target.db() != 0 {
        let db = non_empty(r, keys::REDIS_DB)
            .or_else(|| non_empty(r, keys::REDIS_URL))
            .map_or("REDIS_DB", |g| g.spelled);
        return Err(Error::config(
            db,
            target.db().to_string(),
            format!(
                "database 0 with a cluster ({} is set in {}): a cluster has no other database",
                list.spelled, list.origin
            ),
        ));
    }
    let mut nodes = Vec::new();
    for node in parse_list(list)? {
        if node.db() != 0 {
            return Err(list.error(
                node.redacted_url(),
                "database 0 on every node: a cluster has no other database",
            ));
        }
        let username = credential(
            r,
            keys::REDIS_USERNAME,
            list,
            &node,
            node.username(),
            |given| format!("{:?}", given.text),
            |name| format!("the user {name:?}"),
        )?
        .or_else(|| target.username().map(str::to_owned));
        let password = credential(
            r,
            keys::REDIS_PASSWORD,
            list,
            &node,
            node.password().map(|p| p.expose()),
            |_| "***".to_owned(),
            |_| "another password".to_owned(),
        )?
        .or_else(|| target.password().map(|p| p.expose().to_owned()));
        let tls = node.tls() || target.tls();
        nodes.push(
            node.with_tls(tls)
                .with_username(username.unwrap_or_default())
                .with_password(password.unwrap_or_default()),
        );
    }
    Ok(nodes)
}

/// The sentinels, with their own credentials: `REDIS_SENTINEL_USERNAME` and
/// `REDIS_SENTINEL_PASSWORD` fill URLs without them and, set in a later layer than the list,
/// override them (as the parts of `REDIS_URL` do). The data nodes' credentials never go to
/// the sentinels.
fn sentinel_list(r: &Resolved, list: &Given) -> Result<Vec<RedisTarget>> {
    let mut sentinels = Vec::new();
    for sentinel in parse_list(list)? {
        let username = credential(
            r,
            keys::REDIS_SENTINEL_USERNAME,
            list,
            &sentinel,
            sentinel.username(),
            |given| format!("{:?}", given.text),
            |name| format!("the user {name:?}"),
        )?;
        let password = credential(
            r,
            keys::REDIS_SENTINEL_PASSWORD,
            list,
            &sentinel,
            sentinel.password().map(|p| p.expose()),
            |_| "***".to_owned(),
            |_| "another password".to_owned(),
        )?;
        sentinels.push(
            sentinel
                .with_username(username.unwrap_or_default())
                .with_password(password.unwrap_or_default()),
        );
    }
    Ok(sentinels)
}
