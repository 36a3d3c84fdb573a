//! A tiny RESP2 client over a blocking `std::net::TcpStream`: enough for PING, AUTH, INFO,
//! SHUTDOWN and the odd test assertion. Not a Redis client library.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Replies larger than this are refused: the harness never needs big values.
const MAX_BULK: usize = 512 * 1024 * 1024;

/// Sends one command to the Redis server listening on `127.0.0.1:port` and returns a readable
/// rendering of its reply.
///
/// When `password` is given, `AUTH password` is sent first. Rendering: a simple string or bulk
/// string as its text (bulk strings decoded as lossy UTF-8), an integer in decimal, a nil reply as
/// `(nil)`, an array as its elements rendered the same way and joined by `\n` (nested arrays are
/// flattened), an empty array as `(empty array)`. An error reply becomes an [`io::Error`] of kind
/// [`io::ErrorKind::Other`] whose message starts with `redis error: `.
///
/// A command after which the server closes the connection without replying (a successful
/// `SHUTDOWN`) returns an empty string.
pub fn command_on(port: u16, password: Option<&str>, args: &[&str]) -> io::Result<String> {
    command_at(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        password,
        args,
    )
}

/// [`command_on`] for a server at any address: one a [`Partition`](crate::Partition) put in a
/// network namespace, say.
pub fn command_at(addr: SocketAddr, password: Option<&str>, args: &[&str]) -> io::Result<String> {
    request_at(addr, password, args).map(|reply| reply.render())
}

/// [`command_at`] for a reply whose elements may hold line breaks (`CLUSTER GETKEYSINSLOT`):
/// each element of an array reply rendered on its own, or the one rendered reply that is not
/// an array; an empty array is an empty list.
pub(crate) fn command_items(
    addr: SocketAddr,
    password: Option<&str>,
    args: &[&str],
) -> io::Result<Vec<String>> {
    Ok(match request_at(addr, password, args)? {
        Reply::Array(items) => items.iter().map(Reply::render).collect(),
        other => vec![other.render()],
    })
}

fn request_at(addr: SocketAddr, password: Option<&str>, args: &[&str]) -> io::Result<Reply> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    if let Some(password) = password {
        writer.write_all(&encode_command(&["AUTH", password]))?;
        read_reply(&mut reader)?;
    }
    writer.write_all(&encode_command(args))?;
    writer.flush()?;
    match read_reply(&mut reader) {
        Ok(reply) => Ok(reply),
        Err(err) if is_shutdown(args) && err.kind() == io::ErrorKind::UnexpectedEof => {
            Ok(Reply::Text(String::new()))
        }
        Err(err) if is_shutdown(args) && err.kind() == io::ErrorKind::ConnectionReset => {
            Ok(Reply::Text(String::new()))
        }
        Err(err) => Err(err),
    }
}

fn is_shutdown(args: &[&str]) -> bool {
    args.first()
        .is_some_and(|c| c.eq_ignore_ascii_case("SHUTDOWN"))
}

/// A command as RESP bytes (an array of bulk strings), as clients send it: for tests that
/// write to a socket themselves (through a [`FaultProxy`](crate::FaultProxy), say).
pub fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[derive(Debug, PartialEq)]
enum Reply {
    Text(String),
    Integer(i64),
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    fn render(&self) -> String {
        match self {
            Reply::Text(text) => text.clone(),
            Reply::Integer(n) => n.to_string(),
            Reply::Nil => "(nil)".to_owned(),
            Reply::Array(items) if items.is_empty() => "(empty array)".to_owned(),
            Reply::Array(items) => items
                .iter()
                .map(Reply::render)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

fn protocol_error(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("RESP protocol error: {what}"),
    )
}

fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    let n = reader.read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "redis closed the connection",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(protocol_error("line not terminated by CRLF"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| protocol_error("non UTF-8 header line"))
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let line = read_line(reader)?;
    let (kind, rest) = line
        .split_at_checked(1)
        .ok_or_else(|| protocol_error("empty line"))?;
    match kind {
        "+" => Ok(Reply::Text(rest.to_owned())),
        "-" => Err(io::Error::other(format!("redis error: {rest}"))),
        ":" => rest
            .parse()
            .map(Reply::Integer)
            .map_err(|_| protocol_error(format!("bad integer {rest:?}"))),
        "$" => {
            let len: i64 = rest
                .parse()
                .map_err(|_| protocol_error(format!("bad bulk length {rest:?}")))?;
            if len < 0 {
                return Ok(Reply::Nil);
            }
            let len = usize::try_from(len).map_err(protocol_error)?;
            if len > MAX_BULK {
                return Err(protocol_error(format!("bulk of {len} bytes is too large")));
            }
            let mut buf = vec![0; len + 2];
            reader.read_exact(&mut buf)?;
            buf.truncate(len);
            Ok(Reply::Text(String::from_utf8_lossy(&buf).into_owned()))
        }
        "*" => {
            let len: i64 = rest
                .parse()
                .map_err(|_| protocol_error(format!("bad array length {rest:?}")))?;
            if len < 0 {
                return Ok(Reply::Nil);
            }
            let len = usize::try_from(len).map_err(protocol_error)?;
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                items.push(read_reply(reader)?);
            }
            Ok(Reply::Array(items))
        }
        other => Err(protocol_error(format!("unknown reply type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut BufReader::new(bytes))
    }

    #[test]
    fn commands_are_encoded_as_arrays_of_bulk_strings() {
        assert_eq!(
            encode_command(&["GET", "k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }

    #[test]
    fn replies_render_readably() -> io::Result<()> {
        assert_eq!(parse(b"+PONG\r\n")?.render(), "PONG");
        assert_eq!(parse(b":42\r\n")?.render(), "42");
        assert_eq!(parse(b"$-1\r\n")?.render(), "(nil)");
        assert_eq!(parse(b"$5\r\nhe\r\no\r\n")?.render(), "he\r\no");
        assert_eq!(parse(b"*0\r\n")?.render(), "(empty array)");
        assert_eq!(parse(b"*2\r\n$1\r\na\r\n:1\r\n")?.render(), "a\n1");
        Ok(())
    }

    #[test]
    fn error_replies_are_errors() {
        let err = parse(b"-NOAUTH Authentication required.\r\n").err();
        assert!(err.is_some_and(|e| e.to_string().contains("NOAUTH")));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        assert!(parse(b"$10\r\nabc").is_err());
        assert!(parse(b"*3\r\n").is_err());
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b"").is_err());
    }
}
