//! The harness against the real `redis-server` binary. Skipped (with a message) when there is
//! none, unless `SESSION_REQUIRE_REDIS=1`.

use std::io;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use redis_harness::{RedisServer, ServerOptions, env};

fn options(test: &str) -> Option<ServerOptions> {
    let binary = env::server_binary(test)?;
    Some(ServerOptions {
        binary: Some(binary),
        ..ServerOptions::default()
    })
}

fn pid_is_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        || Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

#[test]
fn started_server_answers_ping_on_loopback() -> io::Result<()> {
    let Some(opts) = options("started_server_answers_ping_on_loopback") else {
        return Ok(());
    };
    let server = RedisServer::start(opts)?;
    assert_ne!(server.port(), 6379);
    assert_eq!(server.command(&["PING"])?, "PONG");
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert_eq!(server.tls_url(), None);
    assert!(server.tls_files().is_none());
    let bind = server.command(&["CONFIG", "GET", "bind"])?;
    assert_eq!(bind, "bind\n127.0.0.1");
    let protected = server.command(&["CONFIG", "GET", "protected-mode"])?;
    assert_eq!(protected, "protected-mode\nyes");
    assert_eq!(server.command(&["SET", "k", "v"])?, "OK");
    assert_eq!(server.command(&["GET", "k"])?, "v");
    assert_eq!(server.command(&["GET", "absent"])?, "(nil)");
    assert!(server.command(&["NOSUCHCOMMAND"]).is_err());
    Ok(())
}

#[test]
fn drop_stops_the_process_and_removes_its_temp_dir() -> io::Result<()> {
    let Some(opts) = options("drop_stops_the_process_and_removes_its_temp_dir") else {
        return Ok(());
    };
    let server = RedisServer::start(opts)?;
    let (pid, dir, port) = (server.pid(), server.dir().to_path_buf(), server.port());
    assert!(pid_is_alive(pid));
    assert!(dir.is_dir());
    drop(server);
    assert!(!pid_is_alive(pid), "pid {pid} still alive after drop");
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    Ok(())
}

#[test]
fn stop_kills_only_its_own_pid_and_is_idempotent() -> io::Result<()> {
    let Some(opts) = options("stop_kills_only_its_own_pid_and_is_idempotent") else {
        return Ok(());
    };
    let mut first = RedisServer::start(opts.clone())?;
    let second = RedisServer::start(opts)?;
    assert_ne!(first.pid(), second.pid());
    first.stop()?;
    first.stop()?;
    assert!(!pid_is_alive(first.pid()));
    assert!(pid_is_alive(second.pid()));
    assert_eq!(second.command(&["PING"])?, "PONG");
    Ok(())
}

#[test]
fn restart_keeps_aof_data_on_the_same_port() -> io::Result<()> {
    let Some(mut opts) = options("restart_keeps_aof_data_on_the_same_port") else {
        return Ok(());
    };
    opts.appendonly = true;
    let mut server = RedisServer::start(opts)?;
    let (port, old_pid) = (server.port(), server.pid());
    server.command(&["SET", "survivor", "still here"])?;
    server.restart()?;
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), old_pid);
    assert!(!pid_is_alive(old_pid));
    assert_eq!(server.command(&["GET", "survivor"])?, "still here");
    Ok(())
}

#[test]
fn restart_without_appendonly_starts_empty() -> io::Result<()> {
    let Some(opts) = options("restart_without_appendonly_starts_empty") else {
        return Ok(());
    };
    let mut server = RedisServer::start(opts)?;
    server.command(&["SET", "gone", "1"])?;
    server.restart()?;
    assert_eq!(server.command(&["GET", "gone"])?, "(nil)");
    Ok(())
}

#[test]
fn password_is_required_and_in_the_url() -> io::Result<()> {
    let Some(mut opts) = options("password_is_required_and_in_the_url") else {
        return Ok(());
    };
    opts.password = Some("s3cret/pw".into());
    let server = RedisServer::start(opts)?;
    assert_eq!(server.command(&["PING"])?, "PONG");
    let anonymous = redis_harness::command_on(server.port(), None, &["PING"]);
    assert!(anonymous.is_err_and(|e| e.to_string().contains("NOAUTH")));
    assert_eq!(
        server.url(),
        format!("redis://:s3cret%2Fpw@127.0.0.1:{}", server.port())
    );
    Ok(())
}

#[test]
fn tls_server_listens_on_both_ports_with_generated_certs() -> io::Result<()> {
    let Some(mut opts) = options("tls_server_listens_on_both_ports_with_generated_certs") else {
        return Ok(());
    };
    opts.tls = true;
    let server = RedisServer::start(opts)?;
    let tls_port = server
        .tls_port()
        .ok_or_else(|| io::Error::other("no TLS port"))?;
    assert_ne!(tls_port, server.port());
    assert_eq!(
        server.tls_url(),
        Some(format!("rediss://127.0.0.1:{tls_port}"))
    );
    TcpStream::connect(("127.0.0.1", tls_port))?;
    assert_eq!(server.command(&["PING"])?, "PONG");
    let files = server
        .tls_files()
        .ok_or_else(|| io::Error::other("no TLS files"))?;
    for path in [
        &files.ca_cert,
        &files.server_cert,
        &files.server_key,
        &files.client_cert,
        &files.client_key,
    ] {
        assert!(path.is_file(), "{} missing", path.display());
    }
    // The client certificate verifies against the CA, for clients that present it.
    let verify = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&files.ca_cert)
        .arg(&files.client_cert)
        .arg(&files.server_cert)
        .output()?;
    assert!(verify.status.success(), "{verify:?}");
    Ok(())
}

#[test]
fn tls_port_answers_ping_over_tls() -> io::Result<()> {
    let Some(mut opts) = options("tls_port_answers_ping_over_tls") else {
        return Ok(());
    };
    opts.tls = true;
    let server = RedisServer::start(opts)?;
    let (Some(port), Some(files)) = (server.tls_port(), server.tls_files()) else {
        return Err(io::Error::other("no TLS"));
    };
    // A real TLS handshake that checks the server certificate for 127.0.0.1, with and without
    // the client certificate (`tls-auth-clients optional`).
    for with_client_cert in [true, false] {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
        ])
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(&files.ca_cert);
        if with_client_cert {
            cmd.arg("-cert")
                .arg(&files.client_cert)
                .arg("-key")
                .arg(&files.client_key);
        }
        let output = run_with_input(&mut cmd, b"PING\r\nQUIT\r\n")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("+PONG"),
            "client cert {with_client_cert}: {stdout} / {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn run_with_input(cmd: &mut Command, input: &[u8]) -> io::Result<std::process::Output> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    child.wait_with_output()
}

#[test]
fn port_6379_is_refused() {
    let opts = ServerOptions {
        port: Some(6379),
        ..ServerOptions::default()
    };
    assert!(RedisServer::start(opts).is_err());
}

#[test]
fn free_port_is_never_6379() -> io::Result<()> {
    for _ in 0..20 {
        assert_ne!(redis_harness::free_port()?, 6379);
    }
    Ok(())
}

#[test]
fn missing_binary_is_a_clear_error() {
    let opts = ServerOptions {
        binary: Some("/nonexistent/redis-server".into()),
        ..ServerOptions::default()
    };
    let err = RedisServer::start(opts).err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("/nonexistent/redis-server")),
        "{err:?}"
    );
}

#[test]
fn a_public_address_outside_a_namespace_is_refused() {
    let opts = ServerOptions {
        bind: Some(std::net::Ipv4Addr::new(10, 192, 0, 2)),
        ..ServerOptions::default()
    };
    let err = RedisServer::start(opts).err().map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("namespace")),
        "{err:?}"
    );
}

#[test]
fn clients_lists_the_connections_of_others_with_their_ids() -> io::Result<()> {
    let Some(opts) = options("clients_lists_the_connections_of_others_with_their_ids") else {
        return Ok(());
    };
    let server = RedisServer::start(opts)?;
    assert_eq!(
        server.clients()?,
        Vec::new(),
        "only the harness' own connection"
    );
    let held = TcpStream::connect(server.addr())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let clients = loop {
        let clients = server.clients()?;
        if !clients.is_empty() || std::time::Instant::now() > deadline {
            break clients;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert_eq!(clients[0].flags, "N");
    assert_eq!(clients[0].addr, held.local_addr()?.to_string());
    assert!(clients[0].id > 0);
    Ok(())
}

/// A server inside a network namespace of the test's own: reachable over the link, silent
/// (no refusal, no reset: nothing at all) while the link is cut, reachable again after, and
/// nothing left behind once the partition is dropped.
#[test]
fn a_cut_partition_swallows_packets_and_heals() -> io::Result<()> {
    const TEST: &str = "a_cut_partition_swallows_packets_and_heals";
    let Some(opts) = options(TEST) else {
        return Ok(());
    };
    let Some(partition) = redis_harness::Partition::for_test(TEST) else {
        return Ok(());
    };
    let namespace = partition.namespace().to_owned();
    let mut server = RedisServer::start(partition.server_options(opts))?;
    assert_eq!(server.host(), partition.address());
    assert_eq!(
        server.url(),
        format!("redis://{}:{}", partition.address(), server.port())
    );
    assert_eq!(server.command(&["PING"])?, "PONG");
    let protected = server.command(&["CONFIG", "GET", "protected-mode"])?;
    assert_eq!(protected, "protected-mode\nno");

    let mut held = TcpStream::connect(server.addr())?;
    held.set_read_timeout(Some(std::time::Duration::from_millis(500)))?;
    partition.cut()?;
    // A new connection hangs (the harness' client gives up after its connect timeout) ...
    let started = std::time::Instant::now();
    let refused = redis_harness::command_at(server.addr(), None, &["PING"]);
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "failed fast instead of hanging: {refused:?} after {:?}",
        started.elapsed()
    );
    // ... and so does a command on a connection made before the cut.
    use std::io::{Read, Write};
    held.write_all(&redis_harness::encode_command(&["PING"]))?;
    let mut buf = [0u8; 16];
    let hung = held.read(&mut buf);
    assert!(
        hung.as_ref().is_err_and(|e| matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )),
        "{hung:?}"
    );
    partition.heal()?;
    assert_eq!(server.command(&["PING"])?, "PONG");

    server.stop()?;
    drop(server);
    drop(partition);
    let left = Command::new("ip").args(["netns", "list"]).output()?;
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.contains(&namespace),
        "{namespace} is still there: {left}"
    );
    Ok(())
}
