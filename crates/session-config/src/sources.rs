//! Where settings come from ([`Sources`]) and how the layers are stacked: built-in defaults,
//! `config/default.toml`, `config/{APP_ENV}.toml`, `config/local.toml`, `.env`, environment.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
};

use config::{FileFormat, Source, Value, ValueKind};
use session_core::{Error, quote_for_humans};

use crate::keys::{self, Key};

/// The environment in which no `APP_ENV` is set.
pub const DEFAULT_APP_ENV: &str = "development";

/// How many characters of a value an error message quotes (with [`quote_for_humans`]).
const QUOTE_MAX_CHARS: usize = 100;

/// Where [`Settings::load_from`](crate::Settings::load_from) reads settings: an environment
/// map, a `.env` file and a configuration directory. Nothing here touches the process
/// environment, so tests can load settings in parallel.
///
/// ```
/// use session_config::{Settings, Sources};
///
/// let sources = Sources::new().env("SESSION_TTL", "60").env("USE_REDIS", "no");
/// let settings = Settings::load_from(&sources)?;
/// assert_eq!(settings.session.ttl.as_millis(), 60_000);
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Sources {
    env: HashMap<String, String>,
    dotenv: Option<PathBuf>,
    config_dir: Option<PathBuf>,
}

impl Sources {
    /// No sources at all: loading gives the built-in defaults (plus what is added with the
    /// methods below).
    pub fn new() -> Self {
        Self::default()
    }

    /// What [`Settings::load`](crate::Settings::load) reads: the process environment
    /// (variables that are not UTF-8 are skipped), `.env` in the current directory, and
    /// `./config` as the configuration directory when `CONFIG_DIR` is not set.
    pub fn from_process() -> Self {
        Self {
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            dotenv: Some(PathBuf::from(".env")),
            config_dir: Some(PathBuf::from("config")),
        }
    }

    /// Sets one environment variable (of this map, not of the process).
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Sets several environment variables.
    #[must_use]
    pub fn envs<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Reads `KEY=value` lines from `path` when that file exists (a missing file is not an
    /// error). Quotes, comments and `export` are understood as `dotenvy` does; a `${NAME}`
    /// substitution sees earlier lines of the file and the process environment (it only
    /// reads it).
    #[must_use]
    pub fn dotenv(mut self, path: impl Into<PathBuf>) -> Self {
        self.dotenv = Some(path.into());
        self
    }

    /// The configuration directory to use when `CONFIG_DIR` is not set. When it does not
    /// exist, the built-in defaults stand in for its files.
    #[must_use]
    pub fn config_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_dir = Some(path.into());
        self
    }
}

impl fmt::Debug for Sources {
    /// Shows the variable names, never their values (they may hold a password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.env.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Sources")
            .field("env", &names)
            .field("dotenv", &self.dotenv)
            .field("config_dir", &self.config_dir)
            .finish()
    }
}

/// A layer of settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    File(PathBuf),
    DotEnv(PathBuf),
    Env,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) | Self::DotEnv(path) => write!(f, "{}", path.display()),
            Self::Env => f.write_str("the environment"),
        }
    }
}

/// One value as given, and where.
#[derive(Clone)]
pub(crate) struct Given {
    /// The text, trimmed.
    pub(crate) text: String,
    /// The key as the source spells it: `REDIS_PORT` or `redis.port`.
    pub(crate) spelled: &'static str,
    /// The layer: higher wins.
    pub(crate) layer: usize,
    pub(crate) origin: Origin,
}

impl fmt::Debug for Given {
    /// Shows where the value was set and how long it is, never the value: any setting may
    /// hold a secret (a password, or a URL with one).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Given")
            .field("spelled", &self.spelled)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field("layer", &self.layer)
            .field("origin", &self.origin)
            .finish()
    }
}

impl Given {
    /// A configuration error about this value. `shown` is the value as it may be shown
    /// (masked when secret).
    pub(crate) fn error(&self, shown: String, expected: impl fmt::Display) -> Error {
        Error::config(
            self.spelled,
            shown,
            format!("{expected} (set in {})", self.origin),
        )
    }

    /// A configuration error showing the value quoted.
    pub(crate) fn invalid(&self, expected: impl fmt::Display) -> Error {
        self.error(quote_for_humans(&self.text, QUOTE_MAX_CHARS), expected)
    }

    /// `e` about this value, keyed as the user spelled it and saying where it was set: for
    /// the errors of session-redis' parsers, which key by the environment variable. Other
    /// errors pass unchanged.
    pub(crate) fn rekey(&self, e: Error) -> Error {
        match e {
            Error::Config {
                value, expected, ..
            } => self.error(value, expected),
            other => other,
        }
    }
}

/// The layers stacked: for each key, the value of the highest layer that sets it.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) app_env: String,
    values: HashMap<&'static str, Given>,
}

impl Resolved {
    /// The winning value of `key`, if any layer sets it.
    pub(crate) fn get(&self, key: Key) -> Option<&Given> {
        self.values.get(key.toml)
    }
}

/// One value of a layer: the key as spelled there, the key, the text.
type Entry = (&'static str, Key, String);
/// One layer: where it comes from and its values.
type Layer = (Origin, Vec<Entry>);

/// Reads every source and stacks the layers.
pub(crate) fn resolve(sources: &Sources) -> Result<Resolved, Error> {
    let dotenv = match &sources.dotenv {
        Some(path) => read_dotenv(path)?,
        None => BTreeMap::new(),
    };
    // APP_ENV and CONFIG_DIR choose the files, so they come from the environment or `.env`.
    let early = |name: &str| -> Option<(String, Origin)> {
        let from = |map: Option<&String>, origin: Origin| {
            map.map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(|v| (v.to_owned(), origin))
        };
        from(sources.env.get(name), Origin::Env).or_else(|| {
            from(
                dotenv.get(name),
                Origin::DotEnv(sources.dotenv.clone().unwrap_or_default()),
            )
        })
    };

    let config_dir = match early(keys::CONFIG_DIR) {
        Some((dir, origin)) => {
            let path = PathBuf::from(&dir);
            if !path.is_dir() {
                return Err(Error::config(
                    keys::CONFIG_DIR,
                    quote_for_humans(&dir, QUOTE_MAX_CHARS),
                    format!("an existing directory (set in {origin})"),
                ));
            }
            Some(path)
        }
        None => sources.config_dir.clone().filter(|dir| dir.is_dir()),
    };

    let app_env = early(keys::APP_ENV);
    if let Some((name, origin)) = &app_env {
        let valid = name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !valid {
            return Err(Error::config(
                keys::APP_ENV,
                quote_for_humans(name, QUOTE_MAX_CHARS),
                format!(
                    "an environment name of letters, digits, '-' and '_' such as development, \
                     test or production (set in {origin})"
                ),
            ));
        }
    }

    let mut layers: Vec<Layer> = Vec::new();
    if let Some(dir) = &config_dir {
        let default = dir.join("default.toml");
        if default.is_file() {
            layers.push(toml_layer(&default)?);
        }
        if let Some(layer) = app_env_file(dir, app_env.as_ref())? {
            layers.push(toml_layer(&layer)?);
        }
        let local = dir.join("local.toml");
        if local.is_file() {
            layers.push(toml_layer(&local)?);
        }
    } else if let Some((name, origin)) = &app_env {
        let looked = sources
            .config_dir
            .as_ref()
            .map(|d| format!(" ({} does not exist)", d.display()))
            .unwrap_or_default();
        return Err(Error::config(
            keys::APP_ENV,
            quote_for_humans(name, QUOTE_MAX_CHARS),
            format!(
                "an environment with a file {name}.toml in the configuration directory, but \
                 there is no configuration directory{looked}: set CONFIG_DIR (APP_ENV set in \
                 {origin})"
            ),
        ));
    }
    if let Some(path) = &sources.dotenv {
        layers.push((Origin::DotEnv(path.clone()), env_layer(&dotenv)));
    }
    layers.push((Origin::Env, env_layer(&sources.env)));

    let mut values = HashMap::new();
    for (layer, (origin, entries)) in layers.into_iter().enumerate() {
        for (spelled, key, text) in entries {
            values.insert(
                key.toml,
                Given {
                    text,
                    spelled,
                    layer,
                    origin: origin.clone(),
                },
            );
        }
    }
    Ok(Resolved {
        app_env: app_env.map_or_else(|| DEFAULT_APP_ENV.to_owned(), |(name, _)| name),
        values,
    })
}

/// `{APP_ENV}.toml` when it exists; an error when `APP_ENV` was set and it does not.
fn app_env_file(dir: &Path, app_env: Option<&(String, Origin)>) -> Result<Option<PathBuf>, Error> {
    let name = app_env.map_or(DEFAULT_APP_ENV, |(name, _)| name.as_str());
    let path = dir.join(format!("{name}.toml"));
    if path.is_file() {
        return Ok(Some(path));
    }
    let Some((name, origin)) = app_env else {
        return Ok(None);
    };
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|f| f.strip_suffix(".toml").map(str::to_owned))
                .filter(|f| f != "default" && f != "local")
                .collect()
        })
        .unwrap_or_default();
    found.sort_unstable();
    let found = if found.is_empty() {
        "none".to_owned()
    } else {
        found.join(", ")
    };
    Err(Error::config(
        keys::APP_ENV,
        quote_for_humans(name, QUOTE_MAX_CHARS),
        format!(
            "an environment with a file {} (environments in {}: {found}; APP_ENV set in \
             {origin})",
            path.display(),
            dir.display(),
        ),
    ))
}

/// The known variables of an environment map; empty values count as unset.
fn env_layer<'a>(vars: impl IntoIterator<Item = (&'a String, &'a String)>) -> Vec<Entry> {
    let vars: HashMap<&str, &str> = vars
        .into_iter()
        .map(|(k, v)| (k.as_str(), v.trim()))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    keys::ALL
        .iter()
        .filter_map(|key| Some((key.env, *key, (*vars.get(key.env)?).to_owned())))
        .collect()
}

/// Reads `.env` into a map without touching the process environment. A missing file is an
/// empty map. Parse errors name the variable when they can, never its value.
fn read_dotenv(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    let key = path.display().to_string();
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(e) if e.not_found() => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(Error::config(
                key,
                "(unreadable)",
                format!("a readable file: {e}"),
            ));
        }
    };
    let mut vars = BTreeMap::new();
    for item in iter {
        match item {
            Ok((name, value)) => {
                vars.insert(name, value);
            }
            Err(dotenvy::Error::LineParse(line, _)) => {
                let name = line
                    .split_once('=')
                    .map(|(name, _)| name.trim().trim_start_matches("export ").trim())
                    .filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                    .filter(|n| !n.is_empty());
                let shown = match name {
                    Some(name) => format!("a line {name}=*** (value masked)"),
                    None => "a line (masked)".to_owned(),
                };
                return Err(Error::config(
                    key,
                    shown,
                    "lines of NAME=value, with values that contain spaces, '#' or quotes in \
                     single or double quotes",
                ));
            }
            Err(e) => {
                return Err(Error::config(
                    key,
                    "(unreadable)",
                    format!("a readable file: {e}"),
                ));
            }
        }
    }
    Ok(vars)
}

/// Reads one TOML file: every leaf as text, keyed by its dotted path.
fn toml_layer(path: &Path) -> Result<Layer, Error> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(&file, "(unreadable)", format!("a readable TOML file: {e}")))?;
    let table = config::File::from_str(&text, FileFormat::Toml)
        .collect()
        .map_err(|e| {
            // The TOML error quotes the offending line, which may hold a password: keep
            // only the position and the reason.
            let reason: Vec<String> = e
                .to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.contains('|'))
                .map(str::to_owned)
                .collect();
            Error::config(
                &file,
                "(not valid TOML)",
                format!("a valid TOML file: {}", reason.join(": ")),
            )
        })?;
    let mut leaves = Vec::new();
    flatten("", table, &mut leaves);
    let mut entries = Vec::new();
    for (path_key, value) in leaves {
        let section = path_key.split('.').next().unwrap_or_default();
        let known = keys::by_toml(&path_key);
        let Some(key) = known else {
            if keys::SECTIONS.contains(&section) || keys::ALL.iter().any(|k| k.toml == section) {
                return Err(unknown_key(&file, &path_key, section));
            }
            // Another top-level table or key: the application's, not ours.
            continue;
        };
        let text = match value.kind {
            ValueKind::String(s) => s.trim().to_owned(),
            ValueKind::Boolean(b) => b.to_string(),
            ValueKind::I64(n) => n.to_string(),
            ValueKind::I128(n) => n.to_string(),
            ValueKind::U64(n) => n.to_string(),
            ValueKind::U128(n) => n.to_string(),
            ValueKind::Float(n) => n.to_string(),
            ValueKind::Array(items) if keys::LISTS.contains(&key) => {
                let mut texts = Vec::with_capacity(items.len());
                for item in items {
                    match item.kind {
                        ValueKind::String(s) => texts.push(s.trim().to_owned()),
                        _ => {
                            return Err(Error::config(
                                key.toml,
                                "(a list with a non-string item)",
                                format!("URLs as strings (set in {file})"),
                            ));
                        }
                    }
                }
                texts.join(",")
            }
            ValueKind::Nil | ValueKind::Array(_) | ValueKind::Table(_) => {
                return Err(Error::config(
                    key.toml,
                    "(a list or table)",
                    format!("a single value (set in {file})"),
                ));
            }
        };
        entries.push((key.toml, key, text));
    }
    Ok((Origin::File(path.to_path_buf()), entries))
}

fn unknown_key(file: &str, path_key: &str, section: &str) -> Error {
    let known: Vec<&str> = keys::ALL
        .iter()
        .map(|k| k.toml)
        .filter(|k| k.split('.').next() == Some(section))
        .collect();
    Error::config(
        path_key,
        "(unknown key)",
        format!("one of the known keys {} (set in {file})", known.join(", ")),
    )
}

fn flatten(prefix: &str, table: config::Map<String, Value>, out: &mut Vec<(String, Value)>) {
    for (name, value) in table {
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        match value.kind {
            ValueKind::Table(inner) => flatten(&path, inner, out),
            _ => out.push((path, value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_form_of_resolved_settings_shows_no_value() {
        let sources = Sources::new()
            .env("REDIS_PASSWORD", "hunter2-secret")
            .env("REDIS_URL", "redis://:url-secret@db:6379/0")
            .config_dir("/nonexistent-config-dir");
        let resolved = match resolve(&sources) {
            Ok(resolved) => resolved,
            Err(e) => panic!("{e}"),
        };
        let text = format!("{resolved:?}");
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(!text.contains("url-secret"), "{text}");
        assert!(text.contains("REDIS_PASSWORD"), "{text}");
        let sources = format!("{sources:?}");
        assert!(!sources.contains("secret"), "{sources}");
    }
}
