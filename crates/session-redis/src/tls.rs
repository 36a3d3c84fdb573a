//! TLS (feature `tls`): `rediss://` through rustls with the ring provider, trusting a CA file
//! (or the system store) and optionally presenting a client certificate.

use std::path::Path;

use redis::{Client, ClientTlsConfig, ConnectionInfo, TlsCertificates};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use session_core::{Error, Result};

use crate::options::RedisOptions;

/// Builds a TLS client from the files named in `options`.
pub(crate) fn client(options: &RedisOptions, info: ConnectionInfo) -> Result<Client> {
    Client::build_with_tls(info, certificates(options)?).map_err(|e| bad_files(options, &e))
}

/// The certificates `options` name (the CA, the client identity), read and checked; the ring
/// provider installed.
pub(crate) fn certificates(options: &RedisOptions) -> Result<TlsCertificates> {
    install_ring_provider();
    let files = options.tls_files();
    let root_cert = files
        .ca_file
        .as_deref()
        .map(|p| read_certificates("REDIS_TLS_CA_FILE", p))
        .transpose()?;
    let client_tls = match &files.client {
        Some(identity) => Some(ClientTlsConfig {
            client_cert: read_certificates("REDIS_TLS_CERT_FILE", &identity.cert_file)?,
            client_key: read("REDIS_TLS_KEY_FILE", &identity.key_file)?,
        }),
        None => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

fn bad_files(options: &RedisOptions, e: &redis::RedisError) -> Error {
    Error::config(
        "REDIS_TLS_CA_FILE",
        options.tls_files().ca_file.as_deref().map_or_else(
            || "(system trust store)".to_owned(),
            |p| p.display().to_string(),
        ),
        format!("PEM certificates and a PEM private key that rustls accepts ({e})"),
    )
}

/// Reads a PEM file that must hold at least one certificate. redis-rs accepts a file without
/// any (an empty trust store), which would turn a wrong `REDIS_TLS_CA_FILE` into failed
/// handshakes, i.e. "Redis unavailable", instead of a configuration error.
fn read_certificates(key: &str, path: &Path) -> Result<Vec<u8>> {
    let pem = read(key, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::config(
                key,
                path.display().to_string(),
                format!("a PEM file of certificates ({e})"),
            )
        })?;
    if certificates.is_empty() {
        return Err(Error::config(
            key,
            path.display().to_string(),
            "a PEM file with at least one certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(pem)
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::config(
            key,
            path.display().to_string(),
            format!("a readable PEM file ({e})"),
        )
    })
}

/// Makes ring the process-wide rustls provider unless the application chose one already.
/// With only ring compiled in rustls would pick it anyway; installing it explicitly keeps TLS
/// working should another crate in the application enable a second provider.
fn install_ring_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing the race to another installer is fine: some provider is then installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
