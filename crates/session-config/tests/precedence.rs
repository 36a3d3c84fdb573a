//! Which setting wins between `REDIS_URL` and its parts (`REDIS_HOST`, `REDIS_PORT`,
//! `REDIS_DB`, `REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_TLS`), layer by layer: one test per
//! row of the README's "Which setting wins" table, named after the row, in the table's order;
//! then the container image and docker-compose.yml, read as they are.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeMap, path::Path};

use common::{TempDir, config_error};
use session_config::{RedisTarget, Settings, Sources};

fn load(sources: &Sources) -> Settings {
    match Settings::load_from(sources) {
        Ok(settings) => {
            assert!(settings.warnings().is_empty(), "{:?}", settings.warnings());
            settings
        }
        Err(e) => panic!("{e}"),
    }
}

fn target(sources: &Sources) -> RedisTarget {
    load(sources).redis.target
}

/// A configuration directory with one `default.toml`.
fn with_default_toml(text: &str) -> (TempDir, Sources) {
    let dir = TempDir::new();
    dir.write("default.toml", text);
    let sources = Sources::new().config_dir(dir.path());
    (dir, sources)
}

fn workspace_file(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path),
    )
    .unwrap()
}

#[test]
fn url_in_a_file_and_host_in_the_environment_take_the_host_from_the_environment() {
    let (_dir, sources) =
        with_default_toml("[redis]\nurl = \"rediss://app:s%40cret@cache-1.internal:6380/2\"\n");
    let t = target(&sources.env("REDIS_HOST", "cache-2.internal"));
    assert_eq!(t.host(), "cache-2.internal");
    // Everything else is the URL's.
    assert_eq!((t.port(), t.db(), t.tls()), (6380, 2, true));
    assert_eq!(t.username(), Some("app"));
    assert_eq!(t.password().unwrap().expose(), "s@cret");
}

#[test]
fn url_in_dotenv_and_port_and_db_in_the_environment_take_them_from_the_environment() {
    let dir = TempDir::new();
    let dotenv = dir.write(".env", "REDIS_URL=redis://:pw@cache:6379/0\n");
    let t = target(
        &Sources::new()
            .dotenv(&dotenv)
            .env("REDIS_PORT", "7000")
            .env("REDIS_DB", "3"),
    );
    assert_eq!(t.connection_url(), "redis://:pw@cache:7000/3");
}

#[test]
fn url_in_the_app_env_file_and_host_in_local_toml_take_the_host_from_local_toml() {
    let dir = TempDir::new();
    dir.write("production.toml", "[redis]\nurl = \"redis://far:6390/1\"\n");
    dir.write("local.toml", "[redis]\nhost = \"near\"\n");
    let t = target(
        &Sources::new()
            .config_dir(dir.path())
            .env("APP_ENV", "production"),
    );
    assert_eq!(t.to_string(), "redis://near:6390/1");
}

#[test]
fn url_in_the_environment_and_host_in_a_file_take_the_url() {
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        "[redis]\nhost = \"from-file\"\nport = 1234\ndb = 9\n",
    );
    // Overridden, an earlier layer's part is not validated, as any overridden setting.
    let dotenv = dir.write(".env", "REDIS_PORT=not-a-port\n");
    let t = target(
        &Sources::new()
            .config_dir(dir.path())
            .dotenv(&dotenv)
            .env("REDIS_URL", "redis://cache"),
    );
    assert_eq!(t.to_string(), "redis://cache:6379/0");
}

#[test]
fn url_and_another_host_both_in_the_environment_are_an_error() {
    let result = Settings::load_from(
        &Sources::new()
            .env("REDIS_URL", "redis://app:hunter2@a:6379/0")
            .env("REDIS_HOST", "b"),
    );
    let text = result.as_ref().map(drop).unwrap_err().to_string();
    let (key, value, expected) = config_error(result);
    assert_eq!(key, "REDIS_HOST");
    assert_eq!(value, "\"b\"");
    assert!(
        expected.contains("REDIS_URL = redis://app:***@a:6379/0"),
        "{expected}"
    );
    assert!(expected.contains("the host \"a\""), "{expected}");
    assert!(
        expected.contains("both are set in the environment"),
        "{expected}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(
        text,
        "invalid configuration REDIS_HOST = \"b\": expected what REDIS_URL = \
         redis://app:***@a:6379/0 says, the host \"a\", since both are set in the environment: \
         remove one of them or make them agree (set in a later layer, REDIS_HOST would \
         override that part of REDIS_URL)"
    );
    // The same in `.env`: one layer too.
    let dir = TempDir::new();
    let dotenv = dir.write(".env", "REDIS_URL=redis://a:6379\nREDIS_PORT=6380\n");
    let (key, _, expected) = config_error(Settings::load_from(&Sources::new().dotenv(&dotenv)));
    assert_eq!(key, "REDIS_PORT");
    assert!(expected.contains("REDIS_URL"), "{expected}");
    assert!(expected.contains("the port 6379"), "{expected}");
    assert!(expected.contains(".env"), "{expected}");
}

#[test]
fn url_and_another_host_in_the_same_file_are_an_error() {
    let dir = TempDir::new();
    let file = dir.write(
        "production.toml",
        "[redis]\nurl = \"redis://a:6379/0\"\nhost = \"b\"\n",
    );
    let (key, value, expected) = config_error(Settings::load_from(
        &Sources::new()
            .config_dir(dir.path())
            .env("APP_ENV", "production"),
    ));
    assert_eq!(key, "redis.host");
    assert_eq!(value, "\"b\"");
    assert!(
        expected.contains("redis.url = redis://a:6379/0"),
        "{expected}"
    );
    assert!(
        expected.contains(&format!("both are set in {}", file.display())),
        "{expected}"
    );
    // Another database in the same file too.
    let (_dir, sources) = with_default_toml("[redis]\nurl = \"redis://a/1\"\ndb = 2\n");
    let (key, _, expected) = config_error(Settings::load_from(&sources));
    assert_eq!(key, "redis.db");
    assert!(expected.contains("the database 1"), "{expected}");
}

#[test]
fn url_and_an_agreeing_part_in_the_same_layer_are_accepted() {
    let t = target(&Sources::new().envs([
        ("REDIS_URL", "rediss://app:pw@Cache.Internal:6379/0"),
        // Host names compare without regard to case; the URL's port and db are said even
        // when left out.
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_PORT", "6379"),
        ("REDIS_DB", "0"),
        ("REDIS_USERNAME", "app"),
        ("REDIS_PASSWORD", "pw"),
        ("REDIS_TLS", "yes"),
    ]));
    assert_eq!(t.connection_url(), "rediss://app:pw@Cache.Internal:6379/0");
    let t = target(
        &Sources::new()
            .env("REDIS_URL", "redis://[::1]:6379")
            .env("REDIS_HOST", "0:0:0:0:0:0:0:1"),
    );
    assert_eq!(t.host(), "::1");
    // The shipped default.toml with every Redis example uncommented: they agree.
    let shipped = workspace_file("config/default.toml");
    let text: String = shipped
        .lines()
        .map(|line| {
            for key in ["url", "host", "port", "db"] {
                if let Some(rest) = line.strip_prefix(&format!("# {key} = ")) {
                    return format!("{key} = {rest}\n");
                }
            }
            format!("{line}\n")
        })
        .collect();
    let (_dir, sources) = with_default_toml(&text);
    assert_eq!(target(&sources), RedisTarget::default());
}

#[test]
fn password_in_the_environment_fills_a_url_without_one() {
    let t = target(
        &Sources::new()
            .env("REDIS_URL", "redis://cache:6379/0")
            .env("REDIS_PASSWORD", "p@ss word"),
    );
    assert_eq!(t.connection_url(), "redis://:p%40ss%20word@cache:6379/0");
    let (_dir, sources) = with_default_toml("[redis]\nurl = \"rediss://app@cache:6380/1\"\n");
    let t = target(&sources.env("REDIS_PASSWORD", "pw"));
    assert_eq!(t.connection_url(), "rediss://app:pw@cache:6380/1");
}

#[test]
fn password_in_an_earlier_layer_fills_a_url_without_one() {
    let dir = TempDir::new();
    let dotenv = dir.write(".env", "REDIS_PASSWORD=from-dotenv\n");
    let t = target(
        &Sources::new()
            .dotenv(&dotenv)
            .env("REDIS_URL", "redis://app@cache:6379/0"),
    );
    assert_eq!(t.connection_url(), "redis://app:from-dotenv@cache:6379/0");
}

#[test]
fn password_in_the_environment_overrides_the_password_of_a_url_in_a_file() {
    let (_dir, sources) = with_default_toml("[redis]\nurl = \"redis://app:old@cache:6379/0\"\n");
    let t = target(&sources.env("REDIS_PASSWORD", "new"));
    assert_eq!(t.connection_url(), "redis://app:new@cache:6379/0");
    // An empty string in a later file clears it, as it clears any optional setting.
    let dir = TempDir::new();
    dir.write("default.toml", "[redis]\nurl = \"redis://:old@cache\"\n");
    dir.write("local.toml", "[redis]\npassword = \"\"\n");
    let t = target(&Sources::new().config_dir(dir.path()));
    assert_eq!(t.password(), None);
}

#[test]
fn password_in_a_file_yields_to_the_password_of_a_url_in_the_environment() {
    let (_dir, sources) = with_default_toml("[redis]\npassword = \"from-file\"\n");
    let t = target(&sources.env("REDIS_URL", "redis://:from-url@cache:6379/0"));
    assert_eq!(t.password().unwrap().expose(), "from-url");
}

#[test]
fn password_and_a_url_with_another_password_in_the_environment_are_an_error() {
    let result = Settings::load_from(
        &Sources::new()
            .env("REDIS_URL", "redis://app:url-secret@cache:6379/0")
            .env("REDIS_PASSWORD", "env-secret"),
    );
    let text = match &result {
        Err(e) => format!("{e} {e:?}"),
        Ok(settings) => panic!("expected an error, got {settings:?}"),
    };
    let (key, value, expected) = config_error(result);
    assert_eq!((key.as_str(), value.as_str()), ("REDIS_PASSWORD", "***"));
    assert!(
        expected.contains("REDIS_URL = redis://app:***@cache:6379/0"),
        "{expected}"
    );
    assert!(expected.contains("another password"), "{expected}");
    for secret in ["url-secret", "env-secret"] {
        assert!(!text.contains(secret), "{text}");
    }
    // The same password twice is no contradiction; nor is an empty REDIS_PASSWORD, which
    // counts as unset.
    for password in ["url-secret", ""] {
        let t = target(
            &Sources::new()
                .env("REDIS_URL", "redis://app:url-secret@cache:6379/0")
                .env("REDIS_PASSWORD", password),
        );
        assert_eq!(t.password().unwrap().expose(), "url-secret");
    }
}

#[test]
fn username_in_the_environment_overrides_the_user_of_a_url_in_a_file() {
    let (_dir, sources) =
        with_default_toml("[redis]\nurl = \"rediss://old-user:pw@cache:6380/0\"\n");
    let t = target(&sources.env("REDIS_USERNAME", "acl-user"));
    assert_eq!(t.username(), Some("acl-user"));
    assert_eq!(t.password().unwrap().expose(), "pw");
    assert!(t.tls());
    // In the URL's own layer, another user is a contradiction.
    let (key, _, expected) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_URL", "redis://old-user:pw@cache")
            .env("REDIS_USERNAME", "acl-user"),
    ));
    assert_eq!(key, "REDIS_USERNAME");
    assert!(expected.contains("the user \"old-user\""), "{expected}");
}

#[test]
fn username_fills_a_url_without_one() {
    for sources in [
        Sources::new()
            .env("REDIS_URL", "redis://:pw@cache:6379/0")
            .env("REDIS_USERNAME", "acl-user"),
        with_default_toml("[redis]\nusername = \"acl-user\"\n")
            .1
            .env("REDIS_URL", "redis://:pw@cache:6379/0"),
    ] {
        assert_eq!(
            target(&sources).connection_url(),
            "redis://acl-user:pw@cache:6379/0"
        );
    }
}

#[test]
fn tls_in_the_environment_turns_on_tls_for_a_redis_url_in_a_file() {
    let (_dir, sources) = with_default_toml("[redis]\nurl = \"redis://cache:6380/0\"\n");
    let t = target(&sources.env("REDIS_TLS", "true"));
    assert_eq!(t.to_string(), "rediss://cache:6380/0");
}

#[test]
fn a_rediss_url_in_the_environment_keeps_tls_over_tls_off_in_a_file() {
    let (_dir, sources) = with_default_toml("[redis.tls]\nenabled = false\n");
    let t = target(&sources.env("REDIS_URL", "rediss://cache:6380/0"));
    assert!(t.tls());
}

#[test]
fn a_rediss_url_and_tls_off_in_the_same_layer_are_an_error() {
    let (key, value, expected) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_URL", "rediss://cache:6380/0")
            .env("REDIS_TLS", "false"),
    ));
    assert_eq!((key.as_str(), value.as_str()), ("REDIS_TLS", "\"false\""));
    assert!(expected.contains("TLS (rediss://)"), "{expected}");
}

#[test]
fn a_percent_encoded_password_survives_a_host_override() {
    let url = "redis://bob:p%40ss%3Aw%2Frd%20%25@cache-1:6379/4";
    let (_dir, sources) = with_default_toml(&format!("[redis]\nurl = \"{url}\"\n"));
    let t = target(&sources.env("REDIS_HOST", "cache-2"));
    assert_eq!(t.password().unwrap().expose(), "p@ss:w/rd %");
    assert_eq!(
        t.connection_url(),
        "redis://bob:p%40ss%3Aw%2Frd%20%25@cache-2:6379/4"
    );
    // Alone, the URL is as it was.
    assert_eq!(
        target(&Sources::new().env("REDIS_URL", url)),
        RedisTarget::parse(url).unwrap()
    );
}

#[test]
fn a_url_in_a_later_layer_replaces_an_earlier_url_wholly() {
    let (_dir, sources) = with_default_toml("[redis]\nurl = \"rediss://app:file-pw@far:6390/5\"\n");
    let t = target(&sources.env("REDIS_URL", "redis://near"));
    assert_eq!(t.connection_url(), "redis://near:6379/0");
}

#[test]
fn without_a_url_each_part_comes_from_its_highest_layer() {
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        "[redis]\nhost = \"cache\"\nport = 7000\nusername = \"app\"\n",
    );
    let dotenv = dir.write(".env", "REDIS_PASSWORD=from-dotenv\nREDIS_PORT=7001\n");
    let t = target(
        &Sources::new()
            .config_dir(dir.path())
            .dotenv(&dotenv)
            .env("REDIS_DB", "2"),
    );
    assert_eq!(t.connection_url(), "redis://app:from-dotenv@cache:7001/2");
}

/// The `KEY=value` pairs of the Dockerfile's `ENV` instructions.
fn dockerfile_env(dockerfile: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let mut in_env = false;
    for line in dockerfile.lines() {
        let line = line.trim();
        let words = match line.strip_prefix("ENV ") {
            Some(rest) => rest,
            None if in_env => line,
            None => continue,
        };
        // A line ending in a backslash continues the instruction.
        in_env = words.ends_with('\\');
        for word in words.trim_end_matches('\\').split_whitespace() {
            let (name, value) = word.split_once('=').unwrap();
            vars.insert(name.to_owned(), value.to_owned());
        }
    }
    vars
}

/// The variables of the `demo` service's `environment:` map in docker-compose.yml.
fn compose_demo_env(compose: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let mut lines = compose.lines().skip_while(|l| *l != "  demo:");
    assert!(lines.next().is_some(), "no demo service");
    let mut lines = lines
        .take_while(|l| l.is_empty() || l.starts_with("   "))
        .skip_while(|l| *l != "    environment:");
    assert!(lines.next().is_some(), "no environment of the demo");
    for line in lines.take_while(|l| l.starts_with("      ")) {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once(": ").unwrap();
        vars.insert(name.to_owned(), value.trim_matches('"').to_owned());
    }
    vars
}

#[test]
fn the_container_image_names_its_redis_in_the_lowest_layer_so_docker_run_e_wins() {
    let dockerfile = workspace_file("crates/session-demo/Dockerfile");
    let compose = workspace_file("docker-compose.yml");
    let image_env = dockerfile_env(&dockerfile);
    let compose_env = compose_demo_env(&compose);
    assert_eq!(image_env["APP_ENV"], "production");
    assert_eq!(compose_env["APP_ENV"], "production");
    // No Redis address in the image's or the compose file's environment, where it would sit
    // in the layer of every `-e`.
    for name in ["REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB"] {
        assert!(!image_env.contains_key(name), "Dockerfile ENV sets {name}");
        assert!(!compose_env.contains_key(name), "compose sets {name}");
    }

    // The image's config directory: the repository's, with the host `redis` written into
    // default.toml by the Dockerfile's sed.
    let sed = r#"sed -i 's/^# host = "localhost"$/host = "redis"/' /app/config/default.toml"#;
    assert!(dockerfile.contains(sed), "the Dockerfile's sed changed");
    let shipped = workspace_file("config/default.toml");
    assert_eq!(
        shipped
            .lines()
            .filter(|l| *l == "# host = \"localhost\"")
            .count(),
        1
    );
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        &shipped.replace("\n# host = \"localhost\"\n", "\nhost = \"redis\"\n"),
    );
    dir.write("production.toml", &workspace_file("config/production.toml"));
    let run = |extra: &[(&str, &str)]| {
        // The image's ENV, then compose's environment over it, then `-e` over both; the
        // image's CONFIG_DIR stands for the directory above.
        let mut env = image_env.clone();
        env.extend(compose_env.clone());
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env.insert("CONFIG_DIR".into(), dir.path().to_str().unwrap().into());
        load(&Sources::new().envs(env))
    };

    let plain = run(&[]);
    assert!(plain.use_redis);
    assert_eq!(plain.redis.target.to_string(), "redis://redis:6379/0");
    assert_eq!(
        run(&[("REDIS_HOST", "cache-2")]).redis.target.to_string(),
        "redis://cache-2:6379/0"
    );
    assert_eq!(
        run(&[("REDIS_HOST", "cache-2"), ("REDIS_PASSWORD", "pw")])
            .redis
            .target
            .connection_url(),
        "redis://:pw@cache-2:6379/0"
    );
    assert_eq!(
        run(&[("REDIS_URL", "redis://other:6380/1")])
            .redis
            .target
            .to_string(),
        "redis://other:6380/1"
    );
}
