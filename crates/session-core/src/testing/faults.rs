//! Conformance under faults: what a store must still promise when its server loses writes,
//! loses a reply, or restarts. A backend's tests implement [`FaultHarness`] with real faults
//! (the memory store restores a snapshot; the Redis tests restart a real `redis-server` from
//! an older RDB file and put a proxy that drops replies between client and server) and run
//! [`run_fault_checks`].
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use session_core::{SessionStore, testing::faults::{FaultHarness, run_fault_checks}};
//! # async fn demo(harness: impl FaultHarness) {
//! run_fault_checks(&harness).await;
//! # }
//! ```

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Error, SessionId, SessionManager, SessionStore};

/// What the fault checks need from a backend under test. Every method acts on the one
/// backend all stores from [`store`](Self::store) talk to.
#[async_trait]
pub trait FaultHarness: Send + Sync {
    /// A new store on the backend: another client, as another service instance would have.
    async fn store(&self) -> Arc<dyn SessionStore>;

    /// Remembers the backend's state now (Redis: `SAVE`, and keep the RDB file).
    async fn snapshot(&self);

    /// Brings the backend back to the last [`snapshot`](Self::snapshot), losing every write
    /// since, the way a restart from an older RDB file, a lost AOF second or a failover to a
    /// lagging replica do.
    async fn roll_back(&self);

    /// Whether [`lose_next_write_reply`](Self::lose_next_write_reply) can arm a fault. `false`
    /// when this backend has no reply to lose (the memory store).
    fn can_lose_replies(&self) -> bool {
        false
    }

    /// Arms a fault that lets the next write reach the backend and be applied, but loses its
    /// reply (Redis: a proxy forwards the request, drops the reply and closes the connection).
    /// `false` when this backend has no reply to lose.
    fn lose_next_write_reply(&self) -> bool {
        false
    }

    /// How many armed faults fired so far.
    fn faults_fired(&self) -> usize {
        0
    }

    /// Restarts the backend, keeping its data (Redis: `SAVE`, stop, start from the RDB on the
    /// same port). `false` when the backend cannot restart (the memory store).
    async fn restart(&self) -> bool {
        false
    }
}

/// The state the checks write: a conversation, one message per change.
type Messages = Vec<String>;

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("test id {s:?}: {e}"))
}

fn must<T>(what: &str, r: crate::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: unexpected error: {e}"))
}

async fn manager(harness: &dyn FaultHarness) -> SessionManager<Messages> {
    SessionManager::new(harness.store().await)
}

async fn stored(harness: &dyn FaultHarness, s: &SessionId) -> (Messages, u64) {
    let reader = manager(harness).await;
    let session =
        must("read back", reader.get(s).await).unwrap_or_else(|| panic!("session {s} is missing"));
    let version = session.version();
    (session.into_value(), version)
}

/// Runs every fault check the harness supports, printing a `SKIPPED` line for the others.
/// Panics on the first failure, naming the check.
pub async fn run_fault_checks(harness: &dyn FaultHarness) {
    let backend = harness.store().await.backend();
    eprintln!(
        "fault check [{backend}]: a_rollback_never_lets_a_stale_copy_overwrite_an_acknowledged_write"
    );
    a_rollback_never_lets_a_stale_copy_overwrite_an_acknowledged_write(harness).await;
    if harness.can_lose_replies() {
        eprintln!("fault check [{backend}]: a_write_whose_reply_is_lost_is_applied_exactly_once");
        a_write_whose_reply_is_lost_is_applied_exactly_once(harness).await;
    } else {
        eprintln!(
            "SKIPPED fault check [{backend}]: a_write_whose_reply_is_lost_is_applied_exactly_once \
             (this backend has no reply to lose)"
        );
    }
    let fresh = manager(harness).await;
    let s = id("idle-over-restart");
    must("create", fresh.get_or_create(&s, Vec::new).await);
    if harness.restart().await {
        eprintln!(
            "fault check [{backend}]: the_first_write_after_a_restart_on_an_idle_manager_succeeds"
        );
        the_first_write_after_a_restart_on_an_idle_manager_succeeds(harness, fresh, s).await;
    } else {
        eprintln!(
            "SKIPPED fault check [{backend}]: the_first_write_after_a_restart_on_an_idle_manager_succeeds \
             (this backend does not restart)"
        );
    }
}

/// Instance A writes, the server rolls back past that write, instance B writes the same
/// version from the older state and is acknowledged; A's next `modify` must not overwrite B's
/// write from its copy (which carries the same version number as B's write).
async fn a_rollback_never_lets_a_stale_copy_overwrite_an_acknowledged_write(
    harness: &dyn FaultHarness,
) {
    let a = manager(harness).await;
    let b = manager(harness).await;
    let s = id("rolled-back");
    must(
        "A creates",
        a.get_or_create(&s, || vec!["hello".to_owned()]).await,
    );
    harness.snapshot().await;
    let lost = must(
        "A writes what the rollback loses",
        a.modify(&s, |m| m.push("a: lost in the rollback".into()))
            .await,
    );
    assert_eq!(lost.version(), 2);
    harness.roll_back().await;
    let acknowledged = must(
        "B writes from the rolled-back state",
        b.modify(&s, |m| m.push("b: acknowledged".into())).await,
    );
    assert_eq!(
        acknowledged.version(),
        2,
        "the test needs B's write at the version A's copy has"
    );
    let after = must(
        "A writes again",
        a.modify(&s, |m| m.push("a: after the rollback".into()))
            .await,
    );
    let (messages, version) = stored(harness, &s).await;
    assert_eq!(
        messages,
        ["hello", "b: acknowledged", "a: after the rollback"],
        "B's acknowledged write was overwritten from A's stale copy (or A's lost write came back)"
    );
    assert_eq!(version, 3);
    assert_eq!(after.version(), 3);
}

/// Every kind of write, each with its reply lost once: the write ends as success exactly as
/// if the reply had arrived, and the change is stored once.
async fn a_write_whose_reply_is_lost_is_applied_exactly_once(harness: &dyn FaultHarness) {
    let m = manager(harness).await;
    let s = id("lost-replies");
    let mut fired = harness.faults_fired();
    let mut expect_fired = |harness: &dyn FaultHarness, what: &str| {
        let now = harness.faults_fired();
        assert_eq!(now, fired + 1, "{what}: the armed fault did not fire");
        fired = now;
    };

    assert!(harness.lose_next_write_reply());
    let created = must(
        "get_or_create with its reply lost",
        m.get_or_create(&s, || vec!["created".to_owned()]).await,
    );
    expect_fired(harness, "get_or_create");
    assert_eq!(created.version(), 1);
    assert_eq!(stored(harness, &s).await, (vec!["created".to_owned()], 1));

    assert!(harness.lose_next_write_reply());
    let modified = must(
        "modify with its reply lost",
        m.modify(&s, |msgs| msgs.push("modified once".into())).await,
    );
    expect_fired(harness, "modify");
    assert_eq!(modified.version(), 2);
    assert_eq!(
        stored(harness, &s).await,
        (vec!["created".to_owned(), "modified once".to_owned()], 2),
        "a modify whose reply was lost was applied twice (or not at all)"
    );

    assert!(harness.lose_next_write_reply());
    let value = vec!["updated".to_owned()];
    let version = must("update with its reply lost", m.update(&s, &value).await);
    expect_fired(harness, "update");
    assert_eq!(version, 3);
    assert_eq!(stored(harness, &s).await, (value, 3));

    let mut session = must("get", m.get(&s).await).unwrap_or_else(|| panic!("{s} missing"));
    session.push("saved once".into());
    assert!(harness.lose_next_write_reply());
    must("save with its reply lost", m.save(&mut session).await);
    expect_fired(harness, "save");
    assert_eq!(session.version(), 4);
    assert_eq!(
        stored(harness, &s).await,
        (vec!["updated".to_owned(), "saved once".to_owned()], 4)
    );
    // And the session goes on normally from there, from the copy the lost reply left.
    let next = must(
        "modify after",
        m.modify(&s, |msgs| msgs.push("next".into())).await,
    );
    assert_eq!(next.version(), 5);
}

/// A manager that was idle while the server restarted: its first write must succeed, not fail
/// on the dead connection.
async fn the_first_write_after_a_restart_on_an_idle_manager_succeeds(
    harness: &dyn FaultHarness,
    idle: SessionManager<Messages>,
    s: SessionId,
) {
    match idle
        .modify(&s, |m| m.push("after the restart".into()))
        .await
    {
        Ok(session) => assert_eq!(session.version(), 2),
        Err(e @ Error::NotFound { .. }) => {
            panic!("the restart lost the session (the harness must keep data): {e}")
        }
        Err(e) => panic!("the first write after a restart failed: {e}"),
    }
    let version = must(
        "update after the restart",
        idle.update(&s, &vec!["again".to_owned()]).await,
    );
    assert_eq!(version, 3);
    let (messages, _) = stored(harness, &s).await;
    assert_eq!(messages, ["again"]);
}
