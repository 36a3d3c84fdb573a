//! From settings to a store and a manager.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use session_config::{Settings, Sources};
use session_core::{Codec, Compression, Error, FLAG_COMPRESSED, SessionId, Ttl};

#[tokio::test]
async fn the_manager_gets_the_session_settings() {
    let settings = Settings::load_from(&Sources::new().envs([
        ("SESSION_TTL", "90"),
        ("SESSION_MAX_BYTES", "128"),
        ("SESSION_SLIDING_EXPIRY", "5"),
        ("SESSION_MAX_MODIFY_ATTEMPTS", "3"),
    ]))
    .unwrap();
    let manager = settings.build_manager::<String>().await.unwrap();
    assert_eq!(manager.backend(), "memory");
    assert_eq!(manager.ttl(), Ttl::from_secs(90).unwrap());
    assert_eq!(manager.codec().max_size(), 128);
    let debug = format!("{manager:?}");
    assert!(
        debug.contains(&format!("{:?}", Some(Duration::from_secs(5)))),
        "{debug}"
    );
    assert!(debug.contains("max_attempts: 3"), "{debug}");

    let id = SessionId::new("user-1").unwrap();
    let session = manager
        .get_or_create(&id, || "hello".to_owned())
        .await
        .unwrap();
    assert_eq!(&*session, "hello");
    let too_big = "x".repeat(200);
    assert!(matches!(
        manager.update(&id, &too_big).await,
        Err(Error::TooLarge { limit: 128, .. })
    ));
}

#[tokio::test]
async fn the_manager_gets_the_configured_compression_and_reads_either_kind() {
    let settings = Settings::load_from(&Sources::new().envs([
        ("SESSION_MAX_BYTES", "4096"),
        ("SESSION_COMPRESSION", "lz4"),
        ("SESSION_COMPRESSION_MIN_BYTES", "256"),
    ]))
    .unwrap();
    let store = settings.memory_store();
    let lz4 = settings.manager_builder::<String>(store.clone()).build();
    assert_eq!(
        *lz4.codec(),
        Codec::new(4096, Compression::Lz4 { min_bytes: 256 })
    );
    let plain = Settings::load_from(&Sources::new().env("SESSION_MAX_BYTES", "4096"))
        .unwrap()
        .manager_builder::<String>(store.clone())
        .build();
    assert_eq!(*plain.codec(), Codec::new(4096, Compression::Off));

    let long = "the printer shows error E042 again; ".repeat(50);
    let (a, b) = (SessionId::new("a").unwrap(), SessionId::new("b").unwrap());
    lz4.update(&a, &long).await.unwrap();
    plain.update(&b, &long).await.unwrap();
    let stored_a = store.load(&a).await.unwrap().unwrap().payload;
    let stored_b = store.load(&b).await.unwrap().unwrap().payload;
    assert_eq!(stored_a[2], FLAG_COMPRESSED);
    assert_eq!(stored_b[2], 0);
    assert!(stored_a.len() * 4 < stored_b.len());
    // Each reads what the other wrote.
    assert_eq!(*plain.get(&a).await.unwrap().unwrap(), long);
    assert_eq!(*lz4.get(&b).await.unwrap().unwrap(), long);
    // Under the threshold, nothing is compressed.
    lz4.update(&a, &"short".to_owned()).await.unwrap();
    assert_eq!(store.load(&a).await.unwrap().unwrap().payload[2], 0);
    // The limit counts the state uncompressed: compressible or not, 4097 bytes are too many.
    let too_big = "x".repeat(4096);
    assert!(matches!(
        lz4.update(&a, &too_big).await,
        Err(Error::TooLarge { limit: 4096, .. })
    ));
}

#[tokio::test]
async fn the_memory_store_gets_its_capacity() {
    let settings = Settings::load_from(&Sources::new().env("MEMORY_CAPACITY", "2")).unwrap();
    let manager = settings.build_manager::<u32>().await.unwrap();
    for n in 0..3 {
        let id = SessionId::new(format!("s{n}")).unwrap();
        manager.update(&id, &n).await.unwrap();
    }
    assert_eq!(manager.count().await.unwrap(), 2);
}

#[tokio::test]
async fn without_use_redis_the_memory_store_is_built_and_no_fallback_is_active() {
    let settings = Settings::load_from(&Sources::new()).unwrap();
    let built = settings.build_store().await.unwrap();
    assert_eq!(built.backend(), "memory");
    assert_eq!(built.fallback, None);
    assert!(!built.fallback_active());
    // A BuiltStore is what manager_builder takes, like any Arc<dyn SessionStore>.
    let manager = settings.manager_builder::<u8>(built).build();
    assert_eq!(manager.backend(), "memory");
}

#[cfg(not(feature = "redis"))]
#[tokio::test]
async fn use_redis_without_the_redis_feature_is_a_clear_error() {
    let settings = Settings::load_from(&Sources::new().env("USE_REDIS", "true")).unwrap();
    match settings.build_store().await {
        Err(Error::Config { key, expected, .. }) => {
            assert_eq!(key, "USE_REDIS");
            assert!(expected.contains("feature `redis`"), "{expected}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    // The memory store is still there for whoever asks.
    assert_eq!(settings.memory_store().backend(), "memory");
}

/// Without the network: what the settings hand to the Redis store.
#[cfg(feature = "redis")]
mod redis_options {
    use std::time::Duration;

    use session_config::{ConnectionMode, Settings, Sources};

    #[test]
    fn carry_every_redis_setting() {
        let settings = Settings::load_from(&Sources::new().envs([
            ("REDIS_URL", "redis://app:pw@10.1.2.3:6390/4"),
            ("REDIS_KEY_PREFIX", "svc:s:"),
            ("REDIS_CONNECT_TIMEOUT_MS", "250"),
            ("REDIS_COMMAND_TIMEOUT_MS", "125"),
        ]))
        .unwrap();
        let options = settings.redis_options().unwrap();
        assert_eq!(options.target(), &settings.redis.target);
        assert_eq!(options.redacted_url(), "redis://app:***@10.1.2.3:6390/4");
        assert_eq!(options.key_prefix(), "svc:s:");
        assert_eq!(options.connect_timeout(), Duration::from_millis(250));
        assert_eq!(options.command_timeout(), Duration::from_millis(125));
        assert_eq!(options.mode(), ConnectionMode::Multiplexed);
        assert!(options.tls_files().is_empty());
        assert!(!format!("{options:?}").contains("pw@"));
    }

    #[cfg(feature = "pool")]
    #[test]
    fn carry_the_pool_size() {
        let settings = Settings::load_from(
            &Sources::new()
                .env("REDIS_MODE", "pool")
                .env("REDIS_POOL_SIZE", "3"),
        )
        .unwrap();
        assert_eq!(
            settings.redis_options().unwrap().mode(),
            ConnectionMode::Pool {
                max_size: std::num::NonZeroUsize::new(3).unwrap()
            }
        );
    }

    #[cfg(not(feature = "pool"))]
    #[test]
    fn the_pool_without_its_feature_is_a_config_error_naming_the_setting() {
        let settings = Settings::load_from(&Sources::new().env("REDIS_MODE", "pool")).unwrap();
        match settings.redis_options() {
            Err(session_core::Error::Config { key, expected, .. }) => {
                assert_eq!(key, "REDIS_MODE");
                assert!(expected.contains("feature `pool`"), "{expected}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[cfg(not(feature = "tls"))]
    #[tokio::test]
    async fn rediss_without_the_tls_feature_is_a_config_error_naming_the_setting() {
        for (sources, key) in [
            (
                Sources::new().env("REDIS_URL", "rediss://:pw@cache:6380/0"),
                "REDIS_URL",
            ),
            (Sources::new().env("REDIS_TLS", "yes"), "REDIS_TLS"),
        ] {
            let settings = Settings::load_from(&sources.env("USE_REDIS", "true")).unwrap();
            for result in [
                settings.redis_options().map(drop),
                settings.build_store().await.map(drop),
            ] {
                match result {
                    Err(e @ session_core::Error::Config { .. }) => {
                        let text = e.to_string();
                        assert!(text.contains(key), "{text}");
                        assert!(text.contains("feature `tls`"), "{text}");
                        assert!(!text.contains("pw@"), "{text}");
                    }
                    other => panic!("expected a configuration error, got {other:?}"),
                }
            }
        }
    }
}

#[tokio::test]
async fn a_manager_builder_takes_any_store() {
    let settings = Settings::load_from(&Sources::new().env("SESSION_TTL", "7")).unwrap();
    let manager = settings
        .manager_builder::<Vec<u8>>(settings.memory_store())
        .build();
    assert_eq!(manager.ttl(), Ttl::from_secs(7).unwrap());
}
