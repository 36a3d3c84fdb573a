//! `FaultProxy` between the harness' RESP client and a real `redis-server`. Tests that need the
//! server are skipped (with a message) when there is none, unless `SESSION_REQUIRE_REDIS=1`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use redis_harness::{
    FaultProxy, RedisServer, ServerOptions, command_on, encode_command as encode, env, free_port,
};

/// Bound for every wait in these tests; none of them is a speed assertion.
const PATIENCE: Duration = Duration::from_secs(20);

fn setup(test: &str) -> Option<(RedisServer, FaultProxy)> {
    let server = env::private_server(test, ServerOptions::default())?;
    let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
    let proxy = FaultProxy::start(upstream)
        .unwrap_or_else(|e| panic!("{test}: cannot start the proxy: {e}"));
    Some((server, proxy))
}

/// A connection through the proxy that stays open between commands.
struct Client(TcpStream);

impl Client {
    fn connect(port: u16) -> io::Result<Client> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(PATIENCE))?;
        stream.set_write_timeout(Some(PATIENCE))?;
        Ok(Client(stream))
    }

    fn send(&mut self, args: &[&str]) -> io::Result<()> {
        self.0.write_all(&encode(args))
    }

    /// One reply line (simple replies only), CRLF included; `Ok(None)` at EOF.
    fn line(&mut self) -> io::Result<Option<String>> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if self.0.read(&mut byte)? == 0 {
                return Ok(None);
            }
            line.push(byte[0]);
        }
        Ok(Some(String::from_utf8_lossy(&line).into_owned()))
    }

    fn ping(&mut self) -> io::Result<Option<String>> {
        self.send(&["PING"])?;
        self.line()
    }

    /// Whether the connection was closed: the next read sees EOF or a reset, not a timeout.
    fn is_closed(&mut self) -> bool {
        match self.0.read(&mut [0u8; 64]) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        }
    }
}

#[test]
fn commands_pass_through_the_proxy() -> io::Result<()> {
    let Some((server, proxy)) = setup("commands_pass_through_the_proxy") else {
        return Ok(());
    };
    assert_ne!(proxy.port(), 6379);
    assert_ne!(proxy.port(), server.port());
    assert_eq!(proxy.url(), format!("redis://127.0.0.1:{}", proxy.port()));
    assert_eq!(proxy.upstream().port(), server.port());
    assert_eq!(command_on(proxy.port(), None, &["SET", "k", "v"])?, "OK");
    assert_eq!(command_on(proxy.port(), None, &["GET", "k"])?, "v");
    assert_eq!(server.command(&["GET", "k"])?, "v");
    let big = "x".repeat(100_000);
    assert_eq!(command_on(proxy.port(), None, &["SET", "big", &big])?, "OK");
    assert_eq!(command_on(proxy.port(), None, &["GET", "big"])?, big);
    let mut client = Client::connect(proxy.port())?;
    for _ in 0..3 {
        assert_eq!(client.ping()?.as_deref(), Some("+PONG\r\n"));
    }
    assert_eq!(proxy.faults_fired(), 0);
    Ok(())
}

#[test]
fn a_lost_reply_applies_the_write_but_the_client_never_sees_it() -> io::Result<()> {
    let Some((server, proxy)) =
        setup("a_lost_reply_applies_the_write_but_the_client_never_sees_it")
    else {
        return Ok(());
    };
    proxy.drop_reply_after(b"INCR");
    assert_eq!(proxy.faults_armed(), 1);
    // Other commands are not affected.
    assert_eq!(
        command_on(proxy.port(), None, &["SET", "other", "x"])?,
        "OK"
    );
    assert_eq!(proxy.faults_fired(), 0);

    let lost = command_on(proxy.port(), None, &["INCR", "counter"]);
    assert!(lost.is_err(), "the reply came through: {lost:?}");
    assert_eq!(proxy.faults_fired(), 1);
    assert_eq!(proxy.faults_armed(), 0);
    // The client saw its connection close only after the server had answered.
    assert_eq!(server.command(&["GET", "counter"])?, "1");

    // One-shot: new connections through the proxy work again.
    assert_eq!(command_on(proxy.port(), None, &["INCR", "counter"])?, "2");
    assert_eq!(proxy.faults_fired(), 1);
    Ok(())
}

#[test]
fn a_lost_reply_can_stall_the_proxy_once_the_server_answered() -> io::Result<()> {
    let Some((server, proxy)) = setup("a_lost_reply_can_stall_the_proxy_once_the_server_answered")
    else {
        return Ok(());
    };
    proxy.drop_reply_after_then_stall(b"INCR");
    assert!(!proxy.is_stalled());
    let lost = command_on(proxy.port(), None, &["INCR", "counter"]);
    assert!(lost.is_err(), "the reply came through: {lost:?}");
    // The request was executed before the stall began ...
    assert_eq!(server.command(&["GET", "counter"])?, "1");
    assert!(proxy.is_stalled());
    // ... and what comes next waits for the release.
    let port = proxy.port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(command_on(port, None, &["INCR", "counter"]));
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "a request went through the stalled proxy"
    );
    assert_eq!(server.command(&["GET", "counter"])?, "1");
    proxy.set_stalled(false);
    let after = rx
        .recv_timeout(PATIENCE)
        .map_err(|e| io::Error::other(format!("no answer after the stall: {e}")))?;
    assert_eq!(after?, "2");
    Ok(())
}

#[test]
fn a_lost_reply_to_a_large_request_forwards_all_of_it() -> io::Result<()> {
    let Some((server, proxy)) = setup("a_lost_reply_to_a_large_request_forwards_all_of_it") else {
        return Ok(());
    };
    // 20 KB: more than one read of the proxy's buffer; the needle is in the first one.
    let value = "v".repeat(20_000);
    proxy.drop_reply_after(b"big-key");
    let lost = command_on(proxy.port(), None, &["SET", "big-key", &value]);
    assert!(lost.is_err(), "the reply came through: {lost:?}");
    assert_eq!(server.command(&["STRLEN", "big-key"])?, "20000");
    assert_eq!(proxy.faults_fired(), 1);
    Ok(())
}

#[test]
fn a_lost_request_never_reaches_the_server() -> io::Result<()> {
    let Some((server, proxy)) = setup("a_lost_request_never_reaches_the_server") else {
        return Ok(());
    };
    assert_eq!(server.command(&["SET", "counter", "5"])?, "OK");
    proxy.drop_request(b"INCR");
    let lost = command_on(proxy.port(), None, &["INCR", "counter"]);
    assert!(lost.is_err(), "the request went through: {lost:?}");
    assert_eq!(proxy.faults_fired(), 1);
    assert_eq!(server.command(&["GET", "counter"])?, "5");

    // One-shot across connections: the next INCR goes through.
    assert_eq!(command_on(proxy.port(), None, &["INCR", "counter"])?, "6");
    assert_eq!(proxy.faults_fired(), 1);
    Ok(())
}

#[test]
fn faults_fire_in_order_and_can_be_disarmed() -> io::Result<()> {
    let Some((server, proxy)) = setup("faults_fire_in_order_and_can_be_disarmed") else {
        return Ok(());
    };
    proxy.drop_request(b"INCR");
    proxy.drop_reply_after(b"INCR");
    proxy.drop_request(b"DECR");
    assert!(command_on(proxy.port(), None, &["INCR", "n"]).is_err());
    assert_eq!(server.command(&["GET", "n"])?, "(nil)");
    assert!(command_on(proxy.port(), None, &["INCR", "n"]).is_err());
    assert_eq!(server.command(&["GET", "n"])?, "1");
    assert_eq!(proxy.faults_fired(), 2);
    assert_eq!(proxy.faults_armed(), 1);
    proxy.disarm();
    assert_eq!(command_on(proxy.port(), None, &["DECR", "n"])?, "0");
    assert_eq!(proxy.faults_fired(), 2);
    Ok(())
}

#[test]
fn cut_all_closes_open_connections_and_new_ones_work() -> io::Result<()> {
    let Some((_server, proxy)) = setup("cut_all_closes_open_connections_and_new_ones_work") else {
        return Ok(());
    };
    let mut first = Client::connect(proxy.port())?;
    let mut second = Client::connect(proxy.port())?;
    assert_eq!(first.ping()?.as_deref(), Some("+PONG\r\n"));
    assert_eq!(second.ping()?.as_deref(), Some("+PONG\r\n"));
    // Both have answered, so both are connected upstream and registered.
    assert_eq!(proxy.open_connections(), 2);

    proxy.cut_all();
    assert!(first.is_closed(), "the first connection is still open");
    assert!(second.is_closed(), "the second connection is still open");
    assert_eq!(proxy.open_connections(), 0);

    let mut third = Client::connect(proxy.port())?;
    assert_eq!(third.ping()?.as_deref(), Some("+PONG\r\n"));
    assert_eq!(command_on(proxy.port(), None, &["PING"])?, "PONG");
    Ok(())
}

#[test]
fn a_stalled_proxy_holds_bytes_until_released() -> io::Result<()> {
    let Some((_server, proxy)) = setup("a_stalled_proxy_holds_bytes_until_released") else {
        return Ok(());
    };
    let mut client = Client::connect(proxy.port())?;
    assert_eq!(client.ping()?.as_deref(), Some("+PONG\r\n"));

    proxy.set_stalled(true);
    client.send(&["PING"])?;
    // While stalled nothing comes back, however long one waits; a short look suffices.
    client
        .0
        .set_read_timeout(Some(Duration::from_millis(200)))?;
    let held = client.0.read(&mut [0u8; 16]);
    assert!(
        held.as_ref().is_err_and(|e| matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )),
        "a reply came through a stalled proxy: {held:?}"
    );
    // A connection opened around the end of the stall gets its answer too.
    let port = proxy.port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(command_on(port, None, &["ECHO", "late"]));
    });

    proxy.set_stalled(false);
    client.0.set_read_timeout(Some(PATIENCE))?;
    assert_eq!(client.line()?.as_deref(), Some("+PONG\r\n"));
    let late = rx.recv_timeout(PATIENCE).map_err(io::Error::other)?;
    assert_eq!(late?, "late");
    Ok(())
}

#[test]
fn dropping_the_proxy_closes_everything_and_ends_its_threads() -> io::Result<()> {
    let Some((server, proxy)) = setup("dropping_the_proxy_closes_everything_and_ends_its_threads")
    else {
        return Ok(());
    };
    let port = proxy.port();
    let mut client = Client::connect(port)?;
    assert_eq!(client.ping()?.as_deref(), Some("+PONG\r\n"));
    proxy.set_stalled(true); // threads holding bytes must end too
    client.send(&["PING"])?;

    // Drop joins every thread of the proxy: it returning at all is the assertion.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        drop(proxy);
        let _ = tx.send(());
    });
    rx.recv_timeout(PATIENCE)
        .map_err(|_| io::Error::other("dropping the proxy did not return"))?;

    assert!(
        client.is_closed(),
        "a proxied connection outlived the proxy"
    );
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "the proxy's port still accepts connections"
    );
    assert_eq!(server.command(&["PING"])?, "PONG");
    Ok(())
}

#[test]
fn a_refused_upstream_closes_the_client_connection() -> io::Result<()> {
    // Nothing listens on the upstream port: no redis-server needed.
    let proxy = FaultProxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)))?;
    let mut client = Client::connect(proxy.port())?;
    assert!(client.is_closed());
    assert!(command_on(proxy.port(), None, &["PING"]).is_err());
    Ok(())
}

#[test]
fn only_loopback_upstreams_other_than_6379_are_accepted() {
    let remote = FaultProxy::start(SocketAddr::from(([10, 0, 0, 1], 7000)));
    assert_eq!(
        remote.err().map(|e| e.kind()),
        Some(io::ErrorKind::InvalidInput)
    );
    let default_port = FaultProxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 6379)));
    assert_eq!(
        default_port.err().map(|e| e.kind()),
        Some(io::ErrorKind::InvalidInput)
    );
}

#[test]
fn hung_connections_stay_hung_while_new_ones_work() -> io::Result<()> {
    let Some((_server, proxy)) = setup("hung_connections_stay_hung_while_new_ones_work") else {
        return Ok(());
    };
    let mut old = Client::connect(proxy.port())?;
    assert_eq!(old.ping()?.as_deref(), Some("+PONG\r\n"));
    assert_eq!(proxy.hang_open_connections(), 1);
    old.0.set_read_timeout(Some(Duration::from_millis(300)))?;
    old.send(&["PING"])?;
    let hung = old.line();
    assert!(
        hung.as_ref().is_err_and(|e| matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )),
        "{hung:?}"
    );
    // A new connection is not affected.
    assert_eq!(command_on(proxy.port(), None, &["PING"])?, "PONG");
    let mut new = Client::connect(proxy.port())?;
    assert_eq!(new.ping()?.as_deref(), Some("+PONG\r\n"));
    // The old one stays hung.
    thread::sleep(Duration::from_millis(100));
    let still = old.line();
    assert!(still.is_err(), "{still:?}");
    Ok(())
}
