//! What the scenario files share beside the `integration_tests` library: servers of their own.

use redis_harness::{RedisServer, ServerOptions};

/// A `redis-server` of the test's own (for restarts, passwords, ACLs ...), on the binary the
/// environment contract names; `None` (the test skips, or panics when Redis is required) when
/// there is none.
pub(crate) fn private_server(test: &str, options: ServerOptions) -> Option<RedisServer> {
    let binary = redis_harness::env::server_binary(test)?;
    Some(
        RedisServer::start(ServerOptions {
            binary: Some(binary),
            ..options
        })
        .unwrap_or_else(|e| panic!("{test}: cannot start redis-server: {e}")),
    )
}
