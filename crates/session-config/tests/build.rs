//! From settings to a store and a manager.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use session_config::{Settings, Sources};
use session_core::{Error, SessionId, Ttl};

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
async fn use_redis_without_the_redis_feature_is_a_clear_error() {
    let settings = Settings::load_from(&Sources::new().env("USE_REDIS", "true")).unwrap();
    match settings.build_store().await {
        Err(Error::Config { key, expected, .. }) => {
            assert_eq!(key, "USE_REDIS");
            assert!(
                expected.contains("feature `redis`") || cfg!(feature = "redis"),
                "{expected}"
            );
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    // The memory store is still there for whoever asks.
    assert_eq!(settings.memory_store().backend(), "memory");
}

#[tokio::test]
async fn a_manager_builder_takes_any_store() {
    let settings = Settings::load_from(&Sources::new().env("SESSION_TTL", "7")).unwrap();
    let manager = settings
        .manager_builder::<Vec<u8>>(settings.memory_store())
        .build();
    assert_eq!(manager.ttl(), Ttl::from_secs(7).unwrap());
}
