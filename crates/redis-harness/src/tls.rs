//! Throwaway TLS material made with the `openssl` command line tool: a CA, a server certificate
//! for `127.0.0.1` and `localhost`, and a client certificate, both signed by the CA.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Paths of the TLS files the harness generated (all PEM, keys unencrypted PKCS#8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate: what clients trust (`SESSION_TEST_REDIS_TLS_CA`).
    pub ca_cert: PathBuf,
    /// The CA private key.
    pub ca_key: PathBuf,
    /// The server certificate, valid for `127.0.0.1` and `localhost` (subjectAltName).
    pub server_cert: PathBuf,
    /// The server private key.
    pub server_key: PathBuf,
    /// A client certificate signed by the CA (`SESSION_TEST_REDIS_TLS_CLIENT_CERT`).
    pub client_cert: PathBuf,
    /// The client private key (`SESSION_TEST_REDIS_TLS_CLIENT_KEY`).
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// Generates a fresh CA, server and client certificate (ECDSA P-256, valid 30 days) into
    /// `dir/tls/` with the `openssl` binary found on `PATH`.
    pub fn generate(dir: &Path) -> io::Result<TlsFiles> {
        let tls = dir.join("tls");
        fs::create_dir_all(&tls)?;
        let files = TlsFiles {
            ca_cert: tls.join("ca.crt"),
            ca_key: tls.join("ca.key"),
            server_cert: tls.join("server.crt"),
            server_key: tls.join("server.key"),
            client_cert: tls.join("client.crt"),
            client_key: tls.join("client.key"),
        };
        run(openssl()
            .args(["req", "-x509", "-new", "-nodes"])
            .args(EC_KEY)
            .args(["-days", DAYS, "-subj", "/CN=redis-harness test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&files.ca_key)
            .arg("-out")
            .arg(&files.ca_cert))?;
        files.sign(
            &tls,
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n",
            &files.server_key,
            &files.server_cert,
        )?;
        files.sign(
            &tls,
            "client",
            "redis-harness client",
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n",
            &files.client_key,
            &files.client_cert,
        )?;
        Ok(files)
    }

    /// Makes a key and a certificate for `cn` with the X.509 v3 `extensions`, signed by the CA.
    fn sign(
        &self,
        tls: &Path,
        name: &str,
        cn: &str,
        extensions: &str,
        key: &Path,
        cert: &Path,
    ) -> io::Result<()> {
        let csr = tls.join(format!("{name}.csr"));
        let ext = tls.join(format!("{name}.ext"));
        fs::write(&ext, extensions)?;
        run(openssl()
            .args(["req", "-new", "-nodes"])
            .args(EC_KEY)
            .arg("-subj")
            .arg(format!("/CN={cn}"))
            .arg("-keyout")
            .arg(key)
            .arg("-out")
            .arg(&csr))?;
        run(openssl()
            .args(["x509", "-req", "-CAcreateserial", "-days", DAYS])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&self.ca_cert)
            .arg("-CAkey")
            .arg(&self.ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(cert))?;
        // The CSR and extension file are scaffolding; failing to remove them is harmless.
        let _ = fs::remove_file(csr);
        let _ = fs::remove_file(ext);
        Ok(())
    }
}

const EC_KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
const DAYS: &str = "30";

fn openssl() -> Command {
    let mut cmd = Command::new("openssl");
    cmd.stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let output = cmd.output().map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot run `openssl` to generate test TLS certificates: {err}"),
        )
    })?;
    if output.status.success() {
        return Ok(());
    }
    let shown: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    Err(io::Error::other(format!(
        "`openssl {}` failed ({}): {}",
        shown.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}
