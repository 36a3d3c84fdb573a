//! The store conformance suite on a real Redis: multiplexed, pooled, and over TLS.
//!
//! Each flavour uses its own database of the shared test server, so that one flavour's writes
//! never rehash the keyspace another is scanning.
#![cfg(feature = "driver")]

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_store_passes_the_conformance_suite() {
    let Some(url) = redis_harness::env::redis_url("multiplexed_store_passes_the_conformance_suite")
    else {
        return;
    };
    common::conformance(common::options(&url, 1, "conf-mux"), "conf-mux").await;
}

#[cfg(feature = "pool")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_store_passes_the_conformance_suite() {
    let Some(url) = redis_harness::env::redis_url("pooled_store_passes_the_conformance_suite")
    else {
        return;
    };
    let options = common::options(&url, 2, "conf-pool").with_mode(common::pool(4));
    common::conformance(options, "conf-pool").await;
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_store_with_a_ca_passes_the_conformance_suite() {
    let Some(tls) = redis_harness::env::tls("tls_store_with_a_ca_passes_the_conformance_suite")
    else {
        return;
    };
    let options = common::options(&tls.url, 3, "conf-tls")
        .with_tls_files(session_redis::TlsFiles::new().with_ca_file(tls.ca));
    common::conformance(options, "conf-tls").await;
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_store_with_a_client_certificate_passes_the_conformance_suite() {
    let Some(tls) =
        redis_harness::env::tls("tls_store_with_a_client_certificate_passes_the_conformance_suite")
    else {
        return;
    };
    let options = common::options(&tls.url, 4, "conf-mtls")
        .with_tls_files(
            session_redis::TlsFiles::new()
                .with_ca_file(tls.ca)
                .with_client(session_redis::ClientIdentity::new(
                    tls.client_cert,
                    tls.client_key,
                )),
        )
        .with_mode(common::pool(2));
    #[cfg(not(feature = "pool"))]
    let options = options.with_mode(session_redis::ConnectionMode::Multiplexed);
    common::conformance(options, "conf-mtls").await;
}

/// Without the CA, the test server's certificate is not trusted: connecting fails (rustls
/// refuses the handshake) instead of talking to an unverified server.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_a_server_certificate_it_does_not_trust() {
    let Some(tls) = redis_harness::env::tls("tls_refuses_a_server_certificate_it_does_not_trust")
    else {
        return;
    };
    match session_redis::RedisStore::connect(common::options(&tls.url, 0, "tls-untrusted")).await {
        Err(e @ session_core::Error::Unavailable { .. }) => {
            eprintln!("untrusted certificate: {e}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// A CA file that holds no certificate is a configuration error when connecting, not an empty
/// trust store that makes every handshake fail (which would read as "Redis unavailable").
#[cfg(feature = "tls")]
#[tokio::test]
async fn a_ca_file_without_certificates_is_a_config_error() {
    let path = std::env::temp_dir().join(format!("{}.pem", common::unique_prefix("no-ca")));
    std::fs::write(&path, "not a certificate\n").unwrap_or_else(|e| panic!("{e}"));
    // Nothing listens on the address: the files are read before connecting.
    let options = session_redis::RedisOptions::new(
        session_redis::RedisTarget::new("127.0.0.1", 1)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_tls(true),
    )
    .with_tls_files(session_redis::TlsFiles::new().with_ca_file(&path));
    let result = session_redis::RedisStore::connect(options).await;
    let _ = std::fs::remove_file(&path);
    match result {
        Err(session_core::Error::Config { key, .. }) => assert_eq!(key, "REDIS_TLS_CA_FILE"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}
