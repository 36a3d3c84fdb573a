//! `SESSION_ENCRYPTION_KEYS` (`session.encryption_keys`): parsed from every layer, the first key
//! encrypting, invalid values refused naming the setting, and no key ever shown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::{TempDir, config_error};
use session_config::{Settings, Sources};
use session_core::{Codec, Error, FLAG_ENCRYPTED, SessionId};

const VAR: &str = "SESSION_ENCRYPTION_KEYS";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `id:base64` of 32 bytes of `byte`.
fn entry(id: &str, byte: u8) -> String {
    format!("{id}:{}", b64(&[byte; 32]))
}

fn load(value: &str) -> Result<Settings, Error> {
    Settings::load_from(&Sources::new().env(VAR, value))
}

#[test]
fn keys_are_off_by_default() {
    let settings = Settings::load_from(&Sources::new()).unwrap();
    assert!(settings.session.encryption.is_none());
    assert!(settings.codec().encryption().is_none());
    assert!(
        settings
            .to_string()
            .contains("session.encryption_keys = off")
    );
}

#[test]
fn the_first_key_encrypts_and_every_key_decrypts() {
    let settings = load(&format!("{}, {}", entry("k2", 2), entry("k1", 1))).unwrap();
    let keys = settings.session.encryption.as_ref().unwrap();
    assert_eq!(keys.current_id(), "k2");
    assert_eq!(keys.ids().collect::<Vec<_>>(), ["k2", "k1"]);

    let id = SessionId::new("user-1").unwrap();
    let codec = settings.codec();
    let bytes = codec.encode(&id, &"hello").unwrap();
    assert_eq!(bytes[2] & FLAG_ENCRYPTED, FLAG_ENCRYPTED);
    assert_eq!(Codec::inspect(&id, &bytes).unwrap().key_id(), Some("k2"));
    // What k1 alone wrote is read by the rotated settings.
    let old = load(&entry("k1", 1)).unwrap().codec();
    let written = old.encode(&id, &"older").unwrap();
    assert_eq!(codec.decode::<String>(&id, &written).unwrap(), "older");
    // The size limit and compression still come from their settings.
    assert_eq!(codec.max_size(), settings.session.max_size);
}

#[test]
fn url_safe_and_unpadded_base64_are_accepted() {
    // 32 bytes of 0xfb: '+' and '/' in standard base64, '-' and '_' in the URL-safe alphabet.
    let key = [0xfb; 32];
    let standard = b64(&key);
    assert!(standard.contains('+') || standard.contains('/'));
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
    let reference = load(&format!("k:{standard}")).unwrap().session.encryption;
    for text in [
        standard.trim_end_matches('=').to_owned(),
        url_safe.clone(),
        format!("{url_safe}="),
    ] {
        assert_eq!(
            load(&format!("k:{text}")).unwrap().session.encryption,
            reference,
            "{text}"
        );
    }
}

#[test]
fn keys_come_from_the_files_and_the_environment_wins() {
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        &format!(
            "[session]\nencryption_keys = \"{}\"\n",
            entry("file-key", 7)
        ),
    );
    let from_file = Settings::load_from(&Sources::new().config_dir(dir.path())).unwrap();
    assert_eq!(
        from_file.session.encryption.unwrap().current_id(),
        "file-key"
    );
    let from_env = Settings::load_from(
        &Sources::new()
            .config_dir(dir.path())
            .env(VAR, entry("env", 8)),
    )
    .unwrap();
    assert_eq!(from_env.session.encryption.unwrap().current_id(), "env");
    // An empty string in a later file clears it.
    dir.write("local.toml", "[session]\nencryption_keys = \"\"\n");
    let cleared = Settings::load_from(&Sources::new().config_dir(dir.path())).unwrap();
    assert!(cleared.session.encryption.is_none());
    // An error from a file is keyed as the file spells it.
    dir.write(
        "local.toml",
        "[session]\nencryption_keys = \"k1:c2hvcnQ=\"\n",
    );
    let (key, value, expected) =
        config_error(Settings::load_from(&Sources::new().config_dir(dir.path())));
    assert_eq!(key, "session.encryption_keys");
    assert_eq!(value, "k1:***");
    assert!(
        expected.contains("the key of k1 is 5 bytes, not 32"),
        "{expected}"
    );
    assert!(expected.contains("local.toml"), "{expected}");
}

#[test]
fn invalid_keys_are_errors_naming_the_setting_and_never_the_key() {
    let good = entry("k1", 1);
    let short = format!("k2:{}", b64(&[9; 16]));
    let long = format!("k2:{}", b64(&[9; 33]));
    let secret_b64 = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXh4eA"; // 31 bytes
    let cases: Vec<(String, &str, String)> = vec![
        (
            format!("{good},{short}"),
            "the key of k2 is 16 bytes, not 32",
            "k1:***,k2:***".to_owned(),
        ),
        (
            long.clone(),
            "the key of k2 is 33 bytes, not 32",
            "k2:***".into(),
        ),
        (
            format!("k3:{secret_b64}"),
            "the key of k3 is 31 bytes, not 32",
            "k3:***".into(),
        ),
        (
            "k1:not base64!!".into(),
            "the key of k1 is not base64",
            "k1:***".into(),
        ),
        (
            "k1:".into(),
            "the key of k1 is 0 bytes, not 32",
            "k1:***".into(),
        ),
        (
            format!("{good},{}", entry("k1", 2)),
            "key id k1 is given twice",
            "k1:***,k1:***".into(),
        ),
        (format!("{good},"), "entry 2 is empty", "k1:***,".into()),
        (format!(",{good}"), "entry 1 is empty", ",k1:***".into()),
        // A key pasted without its id: not shown, not even as an id.
        (b64(&[5; 32]), "entry 1 is not id:key", "***".into()),
        (
            format!("key one:{}", b64(&[5; 32])),
            "the key id of entry 1 is not 1 to 32 characters",
            "***".into(),
        ),
        (
            format!("{}:{}", "k".repeat(33), b64(&[5; 32])),
            "the key id of entry 1 is not 1 to 32 characters",
            "***".into(),
        ),
    ];
    for (value, reason, shown) in cases {
        let result = load(&value);
        let seen = format!("{result:?}");
        let (key, masked, expected) = config_error(result);
        assert_eq!(key, VAR, "{value}");
        assert_eq!(masked, shown, "{value}");
        assert!(expected.contains(reason), "{value}: {expected}");
        assert!(
            expected.contains("32 bytes in base64")
                && expected.ends_with("(set in the environment)"),
            "{expected}"
        );
        // No key material, in any form the error takes.
        for part in value
            .split(',')
            .filter_map(|e| e.split_once(':').map(|(_, k)| k))
        {
            if part.len() > 3 {
                assert!(!seen.contains(part), "{value}: {seen}");
            }
        }
        assert!(!seen.contains(&b64(&[5; 32])), "{seen}");
        assert!(!seen.contains(secret_b64), "{seen}");
    }
}

#[test]
fn settings_show_the_key_ids_never_the_keys() {
    let first = b64(&[0x42; 32]);
    let second = b64(&[0x43; 32]);
    let settings = load(&format!("primary:{first},old.2025:{second}")).unwrap();
    let text = settings.to_string();
    assert!(
        text.contains("session.encryption_keys = primary (encrypts), old.2025"),
        "{text}"
    );
    let everything = format!(
        "{settings} {settings:?} {:?} {:?}",
        settings.codec(),
        settings.session
    );
    for secret in [&first[..], &second[..], &first[..12], &second[..12]] {
        assert!(!everything.contains(secret), "{everything}");
    }
    // 0x42 is 66 and 'B': the bytes do not show in any notation either.
    for bytes in ["66, 66", "0x42", "BBBB", "67, 67"] {
        assert!(!everything.contains(bytes), "{everything}");
    }
    assert!(everything.contains("primary"), "{everything}");
}

#[tokio::test]
async fn the_manager_encrypts_and_a_manager_without_keys_refuses_its_sessions() {
    let with_keys = load(&entry("k1", 1)).unwrap();
    let store = with_keys.memory_store();
    let encrypting = with_keys.manager_builder::<String>(store.clone()).build();
    let id = SessionId::new("user-1").unwrap();
    encrypting
        .update(&id, &"a secret conversation".to_owned())
        .await
        .unwrap();
    let record = store.load(&id).await.unwrap().unwrap();
    assert_eq!(record.payload[2] & FLAG_ENCRYPTED, FLAG_ENCRYPTED);
    assert!(!record.payload.windows(6).any(|w| w == b"secret"));
    assert_eq!(
        *encrypting.get(&id).await.unwrap().unwrap(),
        "a secret conversation"
    );

    let without = Settings::load_from(&Sources::new())
        .unwrap()
        .manager_builder::<String>(store.clone())
        .build();
    match without.get(&id).await {
        Err(e @ Error::Corrupt { .. }) => {
            let text = e.to_string();
            assert!(text.contains("user-1"), "{text}");
            assert!(text.contains("no encryption key is configured"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}
