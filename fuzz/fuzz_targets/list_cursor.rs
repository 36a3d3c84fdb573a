//! The listing cursors of both stores, on arbitrary text.
//!
//! Redis (`r1:<scan>:<id>,<id>,...`, through `session_redis::__fuzz`): an accepted cursor
//! re-serializes to the same text when it is in the canonical form the store writes (no
//! leading zeros), and to a cursor that parses to the same position in any case; only
//! `InvalidCursor` is ever returned; every position the store can hand out parses back to
//! itself. Memory (`m1:<last id>`, through `MemoryStore::list_page` on a small fixed store):
//! a cursor is accepted exactly when it is `m1:` and a valid id; a page after it holds only
//! later ids, in order, at most the limit, and its own cursor is accepted again.
//! Every refusal's text is safe to log (no control characters).
#![no_main]

use std::{
    future::Future,
    pin::pin,
    sync::OnceLock,
    task::{Context, Poll, Waker},
};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use session_core::{Condition, Cursor, Error, SessionId, SessionStore, Ttl, Write};
use session_memory::MemoryStore;
use session_redis::__fuzz::ListCursor;

#[derive(Debug, Arbitrary)]
enum Input {
    /// Text handed to both parsers (the text last, so that a seed file is the tag, the limit
    /// and the text as it is).
    Text { limit: u8, text: String },
    /// A position the Redis store could hand out.
    Position {
        scan: Option<u64>,
        pending: Vec<String>,
    },
}

/// The memory store's futures never wait: one poll finishes them.
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a memory store future waited"),
    }
}

/// Ids in the memory store: a few that sort around the characters the fuzzer tries.
const IDS: &[&str] = &[
    "-", "0", "9", ":", "@", "A", "Z", "_", "a", "a.b", "m1", "z", "zz",
];

fn memory_store() -> &'static MemoryStore {
    static STORE: OnceLock<MemoryStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = MemoryStore::new();
        for id in IDS {
            let id = SessionId::new(id).expect("a valid id");
            // The longest TTL: nothing expires during a run.
            let write = Write::new(Bytes::from_static(b"state"), Condition::Any).with_ttl(Ttl::MAX);
            now(store.write(&id, write)).expect("written");
        }
        store
    })
}

fn assert_invalid_cursor(text: &str, e: &Error) {
    assert!(
        matches!(e, Error::InvalidCursor { .. }),
        "{text:?}: {e:?} is not InvalidCursor"
    );
    let shown = e.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
}

fn redis_text(text: &str) {
    let cursor = Cursor::from(text);
    let position = match ListCursor::parse(&cursor) {
        Ok(position) => position,
        Err(e) => return assert_invalid_cursor(text, &e),
    };
    let (scan, ids) = text
        .strip_prefix("r1:")
        .and_then(|rest| rest.split_once(':'))
        .expect("an accepted cursor has its tag and SCAN position");
    assert!(scan.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(position.scan, scan.parse::<u64>().ok().filter(|&n| n != 0));
    assert_eq!(
        position.pending.len(),
        ids.split(',').filter(|s| !s.is_empty()).count()
    );
    match position.to_cursor() {
        // `r1:0:`: SCAN done, nothing carried: the listing is complete.
        None => assert!(position.scan.is_none() && position.pending.is_empty()),
        Some(again) => {
            assert_eq!(ListCursor::parse(&again).ok().as_ref(), Some(&position));
            let canonical = scan == "0" || !scan.starts_with('0');
            if canonical {
                assert_eq!(again.as_str(), text);
            }
        }
    }
}

fn redis_position(scan: Option<u64>, pending: Vec<String>) {
    let pending: Vec<SessionId> = pending
        .iter()
        .filter_map(|id| SessionId::new(id).ok())
        .collect();
    let position = ListCursor {
        scan: scan.filter(|&n| n != 0),
        pending,
    };
    match position.to_cursor() {
        None => assert!(position.scan.is_none() && position.pending.is_empty()),
        Some(cursor) => {
            assert!(
                cursor
                    .as_str()
                    .bytes()
                    .all(|b| session_core::is_id_byte(b) || b == b','),
                "{cursor:?} is not URL-safe"
            );
            assert_eq!(ListCursor::parse(&cursor).ok(), Some(position));
        }
    }
}

fn memory_text(text: &str, limit: u8) {
    let store = memory_store();
    let limit = usize::from(limit % 16);
    let cursor = Cursor::from(text);
    let after = text
        .strip_prefix("m1:")
        .and_then(|id| SessionId::new(id).ok());
    let page = match now(store.list_page(Some(&cursor), limit)) {
        Ok(page) => page,
        Err(e) => {
            assert!(after.is_none(), "{text:?} refused: {e}");
            return assert_invalid_cursor(text, &e);
        }
    };
    let after = after.unwrap_or_else(|| panic!("{text:?} accepted"));
    assert!(page.sessions.len() <= limit.max(1));
    let mut last = &after;
    for info in &page.sessions {
        assert!(&info.id > last, "{} listed after {last}", info.id);
        last = &info.id;
    }
    let expected: Vec<&str> = IDS
        .iter()
        .copied()
        .filter(|id| *id > after.as_str())
        .take(limit.max(1))
        .collect();
    let listed: Vec<&str> = page.sessions.iter().map(|info| info.id.as_str()).collect();
    assert_eq!(listed, expected, "after {after}");
    if let Some(next) = &page.next {
        assert_eq!(next.as_str(), format!("m1:{last}"));
        assert!(now(store.list_page(Some(next), 1)).is_ok());
    }
}

fuzz_target!(|input: Input| {
    match input {
        Input::Text { text, limit } => {
            redis_text(&text);
            memory_text(&text, limit);
        }
        Input::Position { scan, pending } => redis_position(scan, pending),
    }
});
