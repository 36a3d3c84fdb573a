//! The store conformance suite: one function that proves every promise of [`SessionStore`]
//! on a real store. Every backend runs it (memory, Redis standalone and pooled, TLS, failover).
//!
//! ```no_run
//! # async fn make() -> std::sync::Arc<dyn session_core::SessionStore> { unimplemented!() }
//! # async fn test() {
//! // In a backend's tests (with `session-core = { features = ["testing"] }`):
//! session_core::testing::run_conformance(|| async { make().await }).await;
//! # }
//! ```
//!
//! Each check gets a fresh, empty store from the factory (for a shared Redis: a new key
//! prefix), so checks never see each other's sessions. A failed check panics with its name.

pub mod faults;
pub mod switch;

use std::{collections::HashSet, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;

use crate::{
    Codec, Condition, Cursor, Error, RECENT_TOKENS, RecentTokens, SessionId, SessionManager,
    SessionStore, Summary, Ttl, Write, WriteOutcome,
};

/// A check of the suite: its name and the function.
pub type Check = (&'static str, fn(Arc<dyn SessionStore>) -> CheckFuture);

/// What a check returns.
pub type CheckFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// Every check of the suite, in the order [`run_conformance`] runs them.
        pub const CHECKS: &[Check] = &[$(
            (stringify!($name), |store| Box::pin($name(store))),
        )*];
    };
}

checks![
    load_of_a_missing_session_is_none,
    save_any_creates_at_version_one_then_increments,
    if_absent_creates_once_and_conflicts_after,
    if_version_writes_only_at_the_current_version,
    refused_writes_return_the_current_record,
    written_reports_the_creation_that_loads_show,
    every_write_keeps_its_token_in_front_of_the_recent_ones,
    if_unchanged_compares_tokens_not_versions,
    if_unchanged_tells_a_recreated_session_apart,
    payload_and_meta_round_trip,
    created_at_is_kept_and_updated_at_moves,
    writes_set_and_reset_the_ttl,
    expired_sessions_are_never_returned,
    touch_resets_the_ttl_of_live_sessions_only,
    delete_removes_and_reports_whether_it_existed,
    listing_pages_cover_every_live_session_exactly_once,
    listing_shows_summary_version_and_ttl,
    listing_an_empty_store_is_one_empty_page,
    foreign_cursors_are_rejected,
    count_and_exists_follow_writes_and_deletes,
    ping_and_health_answer,
    ids_with_every_allowed_character_work,
    concurrent_creates_make_exactly_one_session,
    concurrent_modifies_lose_no_update,
    corrupt_payload_is_reported_not_panicked,
];

/// Runs every check, each on a fresh store from `make_store`. Panics on the first failure,
/// naming the check.
pub async fn run_conformance<F, Fut>(mut make_store: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn SessionStore>>,
{
    for (name, check) in CHECKS {
        let store = make_store().await;
        eprintln!("conformance [{}]: {name}", store.backend());
        let handle = tokio::spawn(check(store));
        if let Err(e) = handle.await {
            match e.try_into_panic() {
                Ok(panic) => {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    panic!("conformance check `{name}` failed: {msg}");
                }
                Err(e) => panic!("conformance check `{name}` did not finish: {e}"),
            }
        }
    }
}

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("test id {s:?}: {e}"))
}

fn ttl_ms(ms: u64) -> Ttl {
    Ttl::from_millis(ms).unwrap_or_else(|e| panic!("test ttl: {e}"))
}

fn write(payload: &'static [u8], condition: Condition) -> Write {
    Write::new(Bytes::from_static(payload), condition)
}

/// Every session a listing shows, following `next` to the end: a page may hold fewer than
/// `limit` sessions (even none) while more follow, e.g. a Redis SCAN over a database that
/// holds many other keys.
async fn list_all(store: &dyn SessionStore, limit: usize) -> Vec<crate::SessionInfo> {
    let mut all = Vec::new();
    let mut cursor = None;
    for _ in 0..100_000 {
        let page = must("list", store.list_page(cursor.as_ref(), limit).await);
        all.extend(page.sessions);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
    panic!("the listing does not end");
}

fn must<T>(what: &str, r: crate::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: unexpected error: {e}"))
}

fn assert_conflict<T: std::fmt::Debug>(what: &str, r: crate::Result<T>) {
    match r {
        Err(Error::Conflict { .. }) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

async fn load_of_a_missing_session_is_none(store: Arc<dyn SessionStore>) {
    assert!(must("load", store.load(&id("nobody")).await).is_none());
}

async fn save_any_creates_at_version_one_then_increments(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    for expected in 1..=3 {
        let v = must("save", store.save(&s, write(b"x", Condition::Any)).await);
        assert_eq!(v, expected, "version after write {expected}");
    }
    let rec = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    assert_eq!(rec.version, 3);
}

async fn if_absent_creates_once_and_conflicts_after(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    assert_eq!(
        must(
            "create",
            store.save(&s, write(b"first", Condition::IfAbsent)).await
        ),
        1
    );
    assert_conflict(
        "second create",
        store.save(&s, write(b"second", Condition::IfAbsent)).await,
    );
    let rec = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    assert_eq!(
        &rec.payload[..],
        b"first",
        "a failed IfAbsent must write nothing"
    );
    assert_eq!(rec.version, 1);
}

async fn if_version_writes_only_at_the_current_version(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    assert_conflict(
        "IfVersion on a missing session",
        store.save(&s, write(b"a", Condition::IfVersion(1))).await,
    );
    assert!(
        must("load", store.load(&s).await).is_none(),
        "a failed IfVersion must create nothing"
    );
    must("create", store.save(&s, write(b"a", Condition::Any)).await);
    assert_eq!(
        must(
            "cas 1",
            store.save(&s, write(b"b", Condition::IfVersion(1))).await
        ),
        2
    );
    assert_conflict(
        "stale cas",
        store.save(&s, write(b"c", Condition::IfVersion(1))).await,
    );
    assert_conflict(
        "future cas",
        store.save(&s, write(b"c", Condition::IfVersion(3))).await,
    );
    let rec = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    assert_eq!((&rec.payload[..], rec.version), (&b"b"[..], 2));
}

async fn refused_writes_return_the_current_record(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    match must(
        "write to missing",
        store.write(&s, write(b"a", Condition::IfVersion(1))).await,
    ) {
        WriteOutcome::Rejected { current: None, .. } => {}
        other => panic!(
            "IfVersion on a missing session: expected Rejected without a record, got {other:?}"
        ),
    }
    must(
        "create",
        store.save(&s, write(b"first", Condition::Any)).await,
    );
    must(
        "rewrite",
        store.save(&s, write(b"second", Condition::Any)).await,
    );
    for (what, condition) in [
        ("stale IfVersion", Condition::IfVersion(1)),
        ("IfAbsent on an existing session", Condition::IfAbsent),
    ] {
        match must(what, store.write(&s, write(b"lost", condition)).await) {
            WriteOutcome::Rejected {
                current: Some(record),
                ..
            } => {
                assert_eq!(
                    &record.payload[..],
                    b"second",
                    "{what}: not the current payload"
                );
                assert_eq!(record.version, 2, "{what}: not the current version");
                assert!(
                    record.ttl.is_some(),
                    "{what}: the current record has no TTL"
                );
            }
            other => panic!("{what}: expected Rejected with the current record, got {other:?}"),
        }
    }
    let rec = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    assert_eq!(
        (&rec.payload[..], rec.version),
        (&b"second"[..], 2),
        "a refused write wrote"
    );
}

async fn written_reports_the_creation_that_loads_show(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    let first = write(b"a", Condition::IfAbsent);
    let token = first.token;
    let WriteOutcome::Written {
        version: 1,
        created_at,
        tokens,
        ..
    } = must("create", store.write(&s, first).await)
    else {
        panic!("create was refused");
    };
    assert_eq!(
        tokens,
        RecentTokens::first(token),
        "a create stores its token"
    );
    let rec = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    assert_eq!(rec.meta.created_at, created_at);
    assert_eq!(
        rec.tokens, tokens,
        "loads show the tokens the write reported"
    );
    assert_eq!(rec.token(), Some(token));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = write(b"b", Condition::Any);
    let token2 = second.token;
    match must("rewrite", store.write(&s, second).await) {
        WriteOutcome::Written {
            version: 2,
            created_at: again,
            tokens,
            ..
        } => {
            assert_eq!(again, created_at);
            assert_eq!(tokens, RecentTokens::first(token).after(token2));
        }
        other => panic!("rewrite: {other:?}"),
    }
}

async fn every_write_keeps_its_token_in_front_of_the_recent_ones(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    let mut expected = RecentTokens::new();
    let mut basis = None;
    for n in 0..(RECENT_TOKENS + 3) {
        // Every kind of write keeps the history: unconditional, version-checked, token-checked.
        let condition = match (n % 3, basis) {
            (_, None) => Condition::IfAbsent,
            (0, Some(b)) => Condition::IfUnchanged(b),
            (1, Some(_)) => Condition::IfVersion(n as u64),
            (_, Some(_)) => Condition::Any,
        };
        let w = write(b"x", condition);
        expected = expected.after(w.token);
        match must("write", store.write(&s, w).await) {
            WriteOutcome::Written { tokens, .. } => {
                assert_eq!(tokens, expected, "write {n} ({condition:?})")
            }
            other => panic!("write {n} ({condition:?}) refused: {other:?}"),
        }
        let rec = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
        assert_eq!(rec.tokens, expected, "after write {n}");
        assert_eq!(rec.version, n as u64 + 1);
        basis = Some(rec.basis());
    }
    assert_eq!(expected.len(), RECENT_TOKENS);
}

async fn if_unchanged_compares_tokens_not_versions(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    must(
        "create",
        store.save(&s, write(b"v1", Condition::IfAbsent)).await,
    );
    let v1 = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    must(
        "write from v1",
        store
            .save(&s, write(b"v2 by a", Condition::IfUnchanged(v1.basis())))
            .await,
    );
    let a = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    // The same basis again: the session was written from it once already.
    match must(
        "second write from v1",
        store
            .write(&s, write(b"v2 by b", Condition::IfUnchanged(v1.basis())))
            .await,
    ) {
        WriteOutcome::Rejected {
            current: Some(record),
            ..
        } => assert_eq!(
            record.tokens, a.tokens,
            "the refusal shows the current record"
        ),
        other => panic!("a basis that is no longer current was accepted: {other:?}"),
    }
    assert_eq!(
        must(
            "write from the current basis",
            store
                .save(&s, write(b"v3", Condition::IfUnchanged(a.basis())))
                .await
        ),
        3
    );
}

async fn if_unchanged_tells_a_recreated_session_apart(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    must(
        "create",
        store.save(&s, write(b"old life", Condition::Any)).await,
    );
    let old = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    // No pause: created again in the same millisecond, the new session must still be told
    // apart from the old one.
    must("delete", store.delete(&s).await);
    must(
        "recreate",
        store
            .save(&s, write(b"new life", Condition::IfAbsent))
            .await,
    );
    let new = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    assert_eq!(new.version, old.version, "the test needs equal versions");
    assert_ne!(new.token(), old.token());
    match must(
        "stale IfUnchanged",
        store
            .write(&s, write(b"lost", Condition::IfUnchanged(old.basis())))
            .await,
    ) {
        WriteOutcome::Rejected {
            current: Some(record),
            ..
        } => {
            assert_eq!(&record.payload[..], b"new life");
        }
        other => panic!("IfUnchanged with the old basis: expected Rejected, got {other:?}"),
    }
    let current = Condition::IfUnchanged(new.basis());
    assert_eq!(
        must("IfUnchanged", store.save(&s, write(b"next", current)).await),
        2
    );
    assert_conflict(
        "IfUnchanged on a missing session",
        store.save(&id("nobody"), write(b"x", current)).await,
    );
}

async fn payload_and_meta_round_trip(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    let payload: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let summary = Summary::new()
        .with("state", "diagnosing")
        .with("current_attempt", 2)
        .with("use_rag", true);
    must(
        "save",
        store
            .save(
                &s,
                Write::new(Bytes::from(payload.clone()), Condition::Any)
                    .with_summary(summary.clone()),
            )
            .await,
    );
    let rec = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    assert_eq!(rec.payload.len(), payload.len());
    assert!(
        rec.payload[..] == payload[..],
        "payload bytes differ after a round trip"
    );
    assert_eq!(rec.meta.size, 5000);
    assert_eq!(rec.meta.summary, summary);
}

async fn created_at_is_kept_and_updated_at_moves(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    must("create", store.save(&s, write(b"a", Condition::Any)).await);
    let first = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    assert!(first.meta.updated_at >= first.meta.created_at);
    tokio::time::sleep(Duration::from_millis(20)).await;
    must("rewrite", store.save(&s, write(b"b", Condition::Any)).await);
    let second = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    assert_eq!(
        second.meta.created_at, first.meta.created_at,
        "created_at changed on rewrite"
    );
    assert!(
        second.meta.updated_at.as_millis() >= first.meta.updated_at.as_millis() + 10,
        "updated_at did not move: {:?} -> {:?}",
        first.meta.updated_at,
        second.meta.updated_at
    );
}

async fn writes_set_and_reset_the_ttl(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    let mut w = write(b"a", Condition::Any);
    w.ttl = ttl_ms(60_000);
    must("save", store.save(&s, w).await);
    let ttl = must("load", store.load(&s).await)
        .and_then(|r| r.ttl)
        .unwrap_or_else(|| panic!("no ttl after a write with a TTL"));
    assert!(
        ttl <= Duration::from_secs(60),
        "ttl {ttl:?} above what was set"
    );
    assert!(
        ttl > Duration::from_secs(50),
        "ttl {ttl:?} far below what was set"
    );
    let mut w = write(b"b", Condition::IfVersion(1));
    w.ttl = ttl_ms(3_600_000);
    must("save", store.save(&s, w).await);
    let ttl = must("load", store.load(&s).await)
        .and_then(|r| r.ttl)
        .unwrap_or_else(|| panic!("no ttl after rewrite"));
    assert!(
        ttl > Duration::from_secs(3500),
        "a write did not reset the TTL: {ttl:?}"
    );
    // The record remembers the TTL its last write set (sliding expiry refreshes to it), in
    // loads and in listings alike.
    let loaded = must("load", store.load(&s).await).unwrap_or_else(|| panic!("gone"));
    assert_eq!(loaded.meta.written_ttl, Some(ttl_ms(3_600_000)));
    let listed = list_all(&*store, 10).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].meta.written_ttl, Some(ttl_ms(3_600_000)));
}

async fn expired_sessions_are_never_returned(store: Arc<dyn SessionStore>) {
    let short = id("short");
    let long = id("long");
    let mut w = write(b"a", Condition::Any);
    w.ttl = ttl_ms(300);
    must("save short", store.save(&short, w).await);
    must(
        "save long",
        store.save(&long, write(b"b", Condition::Any)).await,
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        must("load", store.load(&short).await).is_none(),
        "expired session loaded"
    );
    assert!(
        !must("exists", store.exists(&short).await),
        "expired session exists"
    );
    assert!(
        !must("touch", store.touch(&short, Ttl::DEFAULT).await),
        "expired session touched"
    );
    assert_eq!(
        must("count", store.count().await),
        1,
        "count includes an expired session"
    );
    let listed = list_all(store.as_ref(), 100).await;
    let ids: Vec<_> = listed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["long"], "listing shows an expired session");
    assert_conflict(
        "IfVersion on an expired session",
        store
            .save(&short, write(b"c", Condition::IfVersion(1)))
            .await,
    );
    assert_eq!(
        must(
            "recreate",
            store.save(&short, write(b"c", Condition::IfAbsent)).await
        ),
        1,
        "an expired session must be re-creatable at version 1"
    );
}

async fn touch_resets_the_ttl_of_live_sessions_only(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    let mut w = write(b"a", Condition::Any);
    w.ttl = ttl_ms(10_000);
    must("save", store.save(&s, w).await);
    assert!(must("touch", store.touch(&s, ttl_ms(7_200_000)).await));
    let rec = must("load", store.load(&s).await).unwrap_or_else(|| panic!("s1 missing"));
    assert!(
        rec.ttl.is_some_and(|t| t > Duration::from_secs(7000)),
        "touch did not reset the TTL: {:?}",
        rec.ttl
    );
    assert_eq!(rec.version, 1, "touch must not change the version");
    assert_eq!(&rec.payload[..], b"a");
    assert!(!must(
        "touch missing",
        store.touch(&id("missing"), Ttl::DEFAULT).await
    ));
    assert!(
        must("load", store.load(&id("missing")).await).is_none(),
        "touch created a session"
    );
}

async fn delete_removes_and_reports_whether_it_existed(store: Arc<dyn SessionStore>) {
    let s = id("s1");
    must("save", store.save(&s, write(b"a", Condition::Any)).await);
    assert!(must("delete", store.delete(&s).await));
    assert!(must("load", store.load(&s).await).is_none());
    assert!(!must("delete again", store.delete(&s).await));
    assert_eq!(
        must(
            "recreate",
            store.save(&s, write(b"a", Condition::IfAbsent)).await
        ),
        1
    );
}

async fn listing_pages_cover_every_live_session_exactly_once(store: Arc<dyn SessionStore>) {
    let ids: HashSet<String> = (0..250).map(|i| format!("user-{i:04}")).collect();
    for s in &ids {
        must(
            "save",
            store.save(&id(s), write(b"x", Condition::Any)).await,
        );
    }
    for limit in [1usize, 7, 100, 1000] {
        let mut seen = HashSet::new();
        let mut cursor: Option<Cursor> = None;
        let mut pages = 0;
        loop {
            let page = must("list_page", store.list_page(cursor.as_ref(), limit).await);
            assert!(
                page.sessions.len() <= limit,
                "page of {} over limit {limit}",
                page.sessions.len()
            );
            for info in page.sessions {
                assert!(
                    seen.insert(info.id.to_string()),
                    "{} listed twice (limit {limit})",
                    info.id
                );
            }
            pages += 1;
            assert!(
                pages <= 250 * 4 + 10,
                "listing does not end (limit {limit})"
            );
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ids, "listing with limit {limit} missed sessions");
    }
}

async fn listing_shows_summary_version_and_ttl(store: Arc<dyn SessionStore>) {
    let s = id("agent-1");
    let summary = Summary::new()
        .with("state", "resolved")
        .with("current_attempt", 3);
    let w = Write::new(Bytes::from_static(b"p"), Condition::Any)
        .with_summary(summary.clone())
        .with_ttl(ttl_ms(120_000));
    must("save", store.save(&s, w.clone()).await);
    must("save", store.save(&s, w).await);
    let listed = list_all(store.as_ref(), 10).await;
    assert_eq!(listed.len(), 1);
    let info = &listed[0];
    assert_eq!(info.id, s);
    assert_eq!(info.version, 2);
    assert_eq!(info.meta.summary, summary);
    assert_eq!(info.meta.size, 1);
    assert!(
        info.ttl
            .is_some_and(|t| t <= Duration::from_secs(120) && t > Duration::from_secs(100)),
        "ttl {:?}",
        info.ttl
    );
}

async fn listing_an_empty_store_is_one_empty_page(store: Arc<dyn SessionStore>) {
    let mut cursor = None;
    for _ in 0..10_000 {
        let page = must("list", store.list_page(cursor.as_ref(), 50).await);
        assert!(
            page.sessions.is_empty(),
            "an empty store listed {:?}",
            page.sessions
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => return,
        }
    }
    panic!("listing an empty store does not end");
}

async fn foreign_cursors_are_rejected(store: Arc<dyn SessionStore>) {
    for bad in ["not a cursor!", "", "\u{0}\u{1b}[2J", "%%%%"] {
        match store.list_page(Some(&Cursor::from(bad)), 10).await {
            Err(Error::InvalidCursor { .. }) => {}
            other => panic!("cursor {bad:?}: expected InvalidCursor, got {other:?}"),
        }
    }
}

async fn count_and_exists_follow_writes_and_deletes(store: Arc<dyn SessionStore>) {
    assert_eq!(must("count", store.count().await), 0);
    for i in 0..5 {
        must(
            "save",
            store
                .save(&id(&format!("c{i}")), write(b"x", Condition::Any))
                .await,
        );
    }
    assert_eq!(must("count", store.count().await), 5);
    assert!(must("exists", store.exists(&id("c3")).await));
    must("delete", store.delete(&id("c3")).await);
    assert!(!must("exists", store.exists(&id("c3")).await));
    assert_eq!(must("count", store.count().await), 4);
}

async fn ping_and_health_answer(store: Arc<dyn SessionStore>) {
    must("ping", store.ping().await);
    let health = must("health", store.health().await);
    assert_eq!(health.backend, store.backend());
}

async fn ids_with_every_allowed_character_work(store: Arc<dyn SessionStore>) {
    let odd = [
        "A.b:c@d_e-F9",
        "::",
        "@",
        "-",
        "x".repeat(128).leak(),
        "cql:session:nested",
    ];
    for s in odd {
        must(
            "save",
            store.save(&id(s), write(b"v", Condition::Any)).await,
        );
    }
    for s in odd {
        let rec = must("load", store.load(&id(s)).await);
        assert!(rec.is_some(), "{s} missing");
    }
    let page = must("list", store.list_page(None, 100).await);
    let mut listed: Vec<_> = page.sessions.iter().map(|i| i.id.to_string()).collect();
    let mut cursor = page.next;
    while let Some(c) = cursor {
        let page = must("list", store.list_page(Some(&c), 100).await);
        listed.extend(page.sessions.iter().map(|i| i.id.to_string()));
        cursor = page.next;
    }
    listed.sort();
    let mut expected: Vec<_> = odd.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

async fn concurrent_creates_make_exactly_one_session(store: Arc<dyn SessionStore>) {
    let s = id("contested");
    let mut tasks = Vec::new();
    for n in 0..20u8 {
        let store = Arc::clone(&store);
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let w = Write::new(Bytes::from(vec![n]), Condition::IfAbsent);
            store.save(&s, w).await.map(|_| n)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(n)) => winners.push(n),
            Ok(Err(Error::Conflict { .. })) => {}
            Ok(Err(e)) => panic!("create failed: {e}"),
            Err(e) => panic!("task failed: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let rec = must("load", store.load(&s).await).unwrap_or_else(|| panic!("missing"));
    assert_eq!(
        &rec.payload[..],
        &[winners[0]],
        "the stored session is not the winner's"
    );
    assert_eq!(rec.version, 1);
}

async fn concurrent_modifies_lose_no_update(store: Arc<dyn SessionStore>) {
    const TASKS: u64 = 16;
    const EACH: u64 = 20;
    let counters: SessionManager<u64> = SessionManager::builder(Arc::clone(&store))
        .max_attempts(10_000)
        .build();
    let s = id("counter");
    must("create", counters.get_or_create(&s, || 0).await);
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let counters = counters.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..EACH {
                counters.modify(&s, |n| *n += 1).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        match t.await {
            Ok(r) => must("modify", r),
            Err(e) => panic!("task failed: {e}"),
        }
    }
    let final_state = must("get", counters.get(&s).await).unwrap_or_else(|| panic!("missing"));
    assert_eq!(*final_state, TASKS * EACH, "updates were lost");
    assert_eq!(
        final_state.version(),
        1 + TASKS * EACH,
        "every modify is one version"
    );
}

async fn corrupt_payload_is_reported_not_panicked(store: Arc<dyn SessionStore>) {
    let manager: SessionManager<Vec<String>> = SessionManager::new(Arc::clone(&store));
    let bad = id("bad");
    let good = id("good");
    must(
        "save garbage",
        store
            .save(&bad, write(b"\xc1\x01\x00\xff\xff", Condition::Any))
            .await,
    );
    let envelope = must(
        "encode",
        Codec::default().encode(&good, &vec!["fine".to_owned()]),
    );
    must(
        "save good",
        store
            .save(&good, Write::new(envelope, Condition::Any))
            .await,
    );
    match manager.get(&bad).await {
        Err(Error::Corrupt { id, .. }) => assert_eq!(id, bad),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    match manager.modify(&bad, |v| v.push("x".into())).await {
        Err(Error::Corrupt { .. }) => {}
        other => panic!("modify of a corrupt session: expected Corrupt, got {other:?}"),
    }
    let rec =
        must("load", store.load(&bad).await).unwrap_or_else(|| panic!("corrupt record vanished"));
    assert_eq!(
        &rec.payload[..],
        b"\xc1\x01\x00\xff\xff",
        "a failed decode must leave the record as it was"
    );
    let listed = must("list", manager.list().await);
    assert_eq!(listed.len(), 2, "listing must show corrupt sessions too");
    let fine = must("get good", manager.get(&good).await).unwrap_or_else(|| panic!("good missing"));
    assert_eq!(*fine, vec!["fine".to_owned()]);
}
