//! `SessionManager` on the memory store: the seed's flow and the manager's own promises.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use session_core::{Error, SessionId, SessionManager, SessionStore, Summarize, Summary, Ttl};
use session_memory::MemoryStore;

/// The seed's repair agent, reduced to what the flow needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Agent {
    state: String,
    current_attempt: u32,
    max_attempts: u32,
    conversation_history: Vec<Message>,
    use_rag: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Message {
    role: String,
    content: String,
}

impl Agent {
    fn new() -> Self {
        Self {
            state: "new_problem".into(),
            current_attempt: 0,
            max_attempts: 3,
            conversation_history: Vec::new(),
            use_rag: true,
        }
    }

    fn chat(&mut self, message: &str) -> String {
        self.conversation_history.push(Message {
            role: "user".into(),
            content: message.into(),
        });
        self.current_attempt += 1;
        self.state = "diagnosing".into();
        let reply = format!(
            "attempt {}: try restarting the service",
            self.current_attempt
        );
        self.conversation_history.push(Message {
            role: "assistant".into(),
            content: reply.clone(),
        });
        reply
    }
}

impl Agent {
    /// What the user said, in order.
    fn user_messages(&self) -> Vec<&str> {
        self.conversation_history
            .iter()
            .filter(|m| m.role == "user")
            .map(|m| m.content.as_str())
            .collect()
    }
}

impl Summarize for Agent {
    fn summary(&self) -> Summary {
        Summary::new()
            .with("state", &self.state)
            .with("current_attempt", self.current_attempt)
    }
}

fn agents(store: Arc<dyn SessionStore>) -> SessionManager<Agent> {
    SessionManager::builder(store)
        .summarize(Agent::summary)
        .build()
}

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

#[tokio::test]
async fn the_seed_flow_create_chat_update_list_delete() {
    let manager = agents(Arc::new(MemoryStore::new()));
    let user = id("user-123");

    // get_or_create_agent
    let mut agent = manager.get_or_create(&user, Agent::new).await.unwrap();
    assert_eq!(agent.state, "new_problem");
    assert_eq!(agent.version(), 1);

    // chat, then update_agent
    let reply = agent.chat("my build fails");
    assert!(reply.contains("attempt 1"));
    let version = manager.update(&user, &agent).await.unwrap();
    assert_eq!(version, 2);

    // a second get_or_create returns the stored agent, not a new one
    let again = manager.get_or_create(&user, Agent::new).await.unwrap();
    assert_eq!(again.current_attempt, 1);
    assert_eq!(again.conversation_history.len(), 2);

    // list_sessions shows state, attempt and a TTL
    let listed = manager.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    let info = &listed[0];
    assert_eq!(info.id, user);
    assert_eq!(
        info.meta.summary.get("state").and_then(|v| v.as_str()),
        Some("diagnosing")
    );
    assert_eq!(
        info.meta
            .summary
            .get("current_attempt")
            .and_then(|v| v.as_i64()),
        Some(1)
    );
    let ttl = info.ttl.unwrap();
    assert!(
        ttl <= Duration::from_secs(3600) && ttl > Duration::from_secs(3500),
        "{ttl:?}"
    );
    assert_eq!(info.version, 2);

    // delete_session
    assert!(manager.delete(&user).await.unwrap());
    assert!(manager.get(&user).await.unwrap().is_none());
    assert!(manager.list().await.unwrap().is_empty());
    assert!(!manager.delete(&user).await.unwrap());
}

#[tokio::test]
async fn save_refuses_a_stale_session_and_writes_nothing() {
    let manager = agents(Arc::new(MemoryStore::new()));
    let user = id("u");
    manager.get_or_create(&user, Agent::new).await.unwrap();
    let mut first = manager.get(&user).await.unwrap().unwrap();
    let mut second = manager.get(&user).await.unwrap().unwrap();

    first.chat("from instance A");
    manager.save(&mut first).await.unwrap();
    assert_eq!(first.version(), 2);

    second.chat("from instance B");
    match manager.save(&mut second).await {
        Err(Error::Conflict {
            expected: Some(1),
            actual: Some(2),
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    let stored = manager.get(&user).await.unwrap().unwrap();
    assert_eq!(stored.conversation_history[0].content, "from instance A");

    // Saving again from the up-to-date session works and keeps counting versions.
    first.chat("again");
    manager.save(&mut first).await.unwrap();
    assert_eq!(first.version(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_racing_to_create_end_up_with_one_session() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let user = id("race");
    let mut tasks = Vec::new();
    for n in 0..16u32 {
        let manager = agents(Arc::clone(&store));
        let user = user.clone();
        tasks.push(tokio::spawn(async move {
            manager
                .get_or_create(&user, || Agent {
                    current_attempt: n,
                    ..Agent::new()
                })
                .await
                .map(|s| s.current_attempt)
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap().unwrap());
    }
    seen.dedup();
    assert_eq!(seen.len(), 1, "instances saw different sessions: {seen:?}");
    assert_eq!(store.count().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modify_or_create_from_many_tasks_loses_no_message() {
    let manager = agents(Arc::new(MemoryStore::new()));
    let user = id("busy");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let manager = manager.clone();
        let user = user.clone();
        tasks.push(tokio::spawn(async move {
            for m in 0..10 {
                manager
                    .modify_or_create(&user, Agent::new, |a| a.chat(&format!("{t}-{m}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let agent = manager.get(&user).await.unwrap().unwrap();
    assert_eq!(agent.current_attempt, 80);
    assert_eq!(agent.conversation_history.len(), 160);
    assert_eq!(agent.version(), 80);
}

#[tokio::test]
async fn modify_returns_what_the_closure_returned_and_not_found_for_missing() {
    let manager = agents(Arc::new(MemoryStore::new()));
    let user = id("m");
    match manager.modify(&user, |a| a.current_attempt += 1).await {
        Err(Error::NotFound { id }) => assert_eq!(id, user),
        other => panic!("{other:?}"),
    }
    manager.get_or_create(&user, Agent::new).await.unwrap();
    let (agent, reply) = manager.modify_with(&user, |a| a.chat("hi")).await.unwrap();
    assert!(reply.starts_with("attempt 1"));
    assert_eq!(agent.version(), 2);
    assert_eq!(
        agent.meta().summary.get("state").and_then(|v| v.as_str()),
        Some("diagnosing")
    );
}

#[tokio::test]
async fn oversized_sessions_are_refused_and_the_stored_one_is_kept() {
    let manager: SessionManager<Agent> = SessionManager::builder(Arc::new(MemoryStore::new()))
        .max_size(2048)
        .build();
    let user = id("big");
    manager.get_or_create(&user, Agent::new).await.unwrap();
    let result = manager
        .modify(&user, |a| {
            a.conversation_history.push(Message {
                role: "user".into(),
                content: "x".repeat(4096),
            })
        })
        .await;
    match result {
        Err(Error::TooLarge {
            id,
            size,
            limit: 2048,
        }) => {
            assert_eq!(id, user);
            assert!(size > 4096);
        }
        other => panic!("{other:?}"),
    }
    let stored = manager.get(&user).await.unwrap().unwrap();
    assert!(stored.conversation_history.is_empty());
    assert_eq!(stored.version(), 1);
}

#[tokio::test]
async fn update_with_a_per_call_ttl_expires_on_its_own() {
    let manager = agents(Arc::new(MemoryStore::new()));
    let user = id("short-lived");
    manager
        .update_with_ttl(&user, &Agent::new(), Ttl::from_millis(100).unwrap())
        .await
        .unwrap();
    assert!(manager.exists(&user).await.unwrap());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!manager.exists(&user).await.unwrap());
    assert!(manager.get(&user).await.unwrap().is_none());
}

#[tokio::test]
async fn touch_resets_the_ttl() {
    let manager: SessionManager<Agent> = SessionManager::builder(Arc::new(MemoryStore::new()))
        .ttl(Ttl::from_millis(300).unwrap())
        .build();
    let user = id("t");
    manager.get_or_create(&user, Agent::new).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(manager.touch(&user).await.unwrap());
    }
    assert!(
        manager.exists(&user).await.unwrap(),
        "touch did not keep the session alive"
    );
    assert!(!manager.touch(&id("nobody")).await.unwrap());
}

#[tokio::test]
async fn sliding_expiry_keeps_read_sessions_alive_with_one_touch_per_interval() {
    let store = Arc::new(MemoryStore::new());
    let manager: SessionManager<Agent> = SessionManager::builder(store.clone())
        .ttl(Ttl::from_millis(400).unwrap())
        .sliding_expiry(Duration::from_millis(100))
        .build();
    let plain: SessionManager<Agent> = SessionManager::builder(store)
        .ttl(Ttl::from_millis(400).unwrap())
        .build();
    let user = id("reader");
    let other = id("unread");
    manager.get_or_create(&user, Agent::new).await.unwrap();
    plain.get_or_create(&other, Agent::new).await.unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        // A burst of reads: the first refreshes, the rest find the TTL fresh.
        for _ in 0..20 {
            let s = manager
                .get(&user)
                .await
                .unwrap()
                .expect("read keeps it alive");
            assert!(
                s.ttl().unwrap() > Duration::from_millis(250),
                "{:?}",
                s.ttl()
            );
        }
    }
    assert!(manager.exists(&user).await.unwrap());
    assert!(
        !plain.exists(&other).await.unwrap(),
        "the unread session should have expired"
    );
}

#[tokio::test]
async fn sliding_expiry_refreshes_to_the_ttl_the_session_was_written_with() {
    // Manager default: one hour. The session is written with 600 ms.
    let manager: SessionManager<Agent> = SessionManager::builder(Arc::new(MemoryStore::new()))
        .sliding_expiry(Duration::from_millis(100))
        .build();
    let user = id("short-lived");
    manager
        .update_with_ttl(&user, &Agent::new(), Ttl::from_millis(600).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let read = manager.get(&user).await.unwrap().expect("still alive");
    let ttl = read.ttl().unwrap();
    // Refreshed (more than the ~350 ms left), and to its own 600 ms, not to the hour.
    assert!(ttl > Duration::from_millis(450), "not refreshed: {ttl:?}");
    assert!(
        ttl <= Duration::from_millis(600),
        "pushed to the default TTL: {ttl:?}"
    );
    assert_eq!(
        read.meta().written_ttl,
        Some(Ttl::from_millis(600).unwrap())
    );
    // The store agrees with what the read reported.
    let stored = manager.get(&user).await.unwrap().unwrap().ttl().unwrap();
    assert!(stored <= Duration::from_millis(600), "{stored:?}");
}

#[tokio::test]
async fn sliding_expiry_with_an_interval_at_or_above_the_ttl_still_refreshes() {
    let manager: SessionManager<Agent> = SessionManager::builder(Arc::new(MemoryStore::new()))
        .ttl(Ttl::from_millis(400).unwrap())
        .sliding_expiry(Duration::from_secs(10))
        .build();
    let user = id("long-interval");
    manager.get_or_create(&user, Agent::new).await.unwrap();
    // 900 ms of reads every 150 ms: more than twice the TTL. Without refreshes it expires.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            manager.get(&user).await.unwrap().is_some(),
            "expired although read every 150 ms"
        );
    }
}

/// The memory store, except that every `touch` fails as an unreachable server does.
#[derive(Debug)]
struct TouchFails(MemoryStore);

#[async_trait::async_trait]
impl SessionStore for TouchFails {
    fn backend(&self) -> &'static str {
        "touch-fails"
    }
    async fn load(&self, id: &SessionId) -> session_core::Result<Option<session_core::Record>> {
        self.0.load(id).await
    }
    async fn write(
        &self,
        id: &SessionId,
        write: session_core::Write,
    ) -> session_core::Result<session_core::WriteOutcome> {
        self.0.write(id, write).await
    }
    async fn delete(&self, id: &SessionId) -> session_core::Result<bool> {
        self.0.delete(id).await
    }
    async fn touch(&self, _: &SessionId, _: Ttl) -> session_core::Result<bool> {
        Err(Error::unavailable(
            "touch-fails",
            "connection refused",
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        ))
    }
    async fn list_page(
        &self,
        cursor: Option<&session_core::Cursor>,
        limit: usize,
    ) -> session_core::Result<session_core::Page> {
        self.0.list_page(cursor, limit).await
    }
    async fn count(&self) -> session_core::Result<u64> {
        self.0.count().await
    }
    async fn ping(&self) -> session_core::Result<()> {
        self.0.ping().await
    }
}

#[tokio::test]
async fn a_failed_sliding_refresh_leaves_the_read_a_success() {
    let manager: SessionManager<Agent> =
        SessionManager::builder(Arc::new(TouchFails(MemoryStore::new())))
            .ttl(Ttl::from_millis(1000).unwrap())
            .sliding_expiry(Duration::from_millis(50))
            .build();
    let user = id("refresh-fails");
    manager.get_or_create(&user, Agent::new).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    for _ in 0..2 {
        // Each read tries the refresh (a failed one is not remembered), fails, and still reads.
        let read = manager
            .get(&user)
            .await
            .expect("a failed refresh must not fail the read")
            .expect("the session is there");
        let ttl = read.ttl().unwrap();
        assert!(
            ttl < Duration::from_millis(900),
            "reported as refreshed: {ttl:?}"
        );
    }
}

#[tokio::test]
async fn corrupt_data_is_a_typed_error_naming_the_session() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let numbers: SessionManager<Vec<u32>> = SessionManager::new(Arc::clone(&store));
    let user = id("typed");
    numbers.update(&user, &vec![1, 2, 3]).await.unwrap();
    // The same session read as another type: not a panic, a Corrupt error.
    let manager = agents(store);
    match manager.get(&user).await {
        Err(e @ Error::Corrupt { .. }) => assert!(e.to_string().contains("typed"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// A store that counts the calls reaching it, to prove how many round trips an operation costs.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryStore,
    loads: std::sync::atomic::AtomicUsize,
    writes: std::sync::atomic::AtomicUsize,
}

impl Counting {
    fn take(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.loads.swap(0, SeqCst), self.writes.swap(0, SeqCst))
    }
}

#[session_core::async_trait]
impl SessionStore for Counting {
    fn backend(&self) -> &'static str {
        "counting"
    }
    async fn load(&self, id: &SessionId) -> session_core::Result<Option<session_core::Record>> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.load(id).await
    }
    async fn write(
        &self,
        id: &SessionId,
        write: session_core::Write,
    ) -> session_core::Result<session_core::WriteOutcome> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.write(id, write).await
    }
    async fn delete(&self, id: &SessionId) -> session_core::Result<bool> {
        self.inner.delete(id).await
    }
    async fn touch(&self, id: &SessionId, ttl: Ttl) -> session_core::Result<bool> {
        self.inner.touch(id, ttl).await
    }
    async fn list_page(
        &self,
        cursor: Option<&session_core::Cursor>,
        limit: usize,
    ) -> session_core::Result<session_core::Page> {
        self.inner.list_page(cursor, limit).await
    }
    async fn count(&self) -> session_core::Result<u64> {
        self.inner.count().await
    }
    async fn ping(&self) -> session_core::Result<()> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn modify_after_this_instance_wrote_is_one_write_and_no_read() {
    let store = Arc::new(Counting::default());
    let manager = agents(store.clone());
    let user = id("u");
    manager.get_or_create(&user, Agent::new).await.unwrap();
    store.take();
    for n in 1..=5 {
        let agent = manager
            .modify(&user, |a| a.current_attempt += 1)
            .await
            .unwrap();
        assert_eq!(agent.current_attempt, n);
        assert_eq!(store.take(), (0, 1), "modify {n}: (loads, writes)");
    }
}

#[tokio::test]
async fn modify_after_another_instance_wrote_costs_no_extra_read() {
    let store = Arc::new(Counting::default());
    let a = agents(store.clone());
    let b = agents(store.clone());
    let user = id("u");
    a.get_or_create(&user, Agent::new).await.unwrap();
    b.modify(&user, |s| s.chat("from b")).await.unwrap();
    store.take();
    // A's copy is stale: its write is refused, the refusal carries B's state, A writes again.
    let agent = a.modify(&user, |s| s.chat("from a")).await.unwrap();
    assert_eq!(store.take(), (0, 2), "(loads, writes)");
    let said = agent.user_messages();
    assert_eq!(said, ["from b", "from a"]);
    // An instance that never saw the session reads once, then writes once.
    let c = agents(store.clone());
    c.modify(&user, |s| s.chat("from c")).await.unwrap();
    assert_eq!(store.take(), (1, 1), "(loads, writes)");
    // A has seen another writer: while instances take turns, it reads first (a read is cheaper
    // than a doomed write of the whole state) ...
    a.modify(&user, |s| s.chat("a again")).await.unwrap();
    assert_eq!(store.take(), (1, 1), "(loads, writes) while shared");
    // ... until a read finds its own last write: then it writes from its copy again.
    a.modify(&user, |s| s.chat("a alone")).await.unwrap();
    assert_eq!(
        store.take(),
        (1, 1),
        "(loads, writes) when the read confirms the copy"
    );
    a.modify(&user, |s| s.chat("a alone again")).await.unwrap();
    assert_eq!(
        store.take(),
        (0, 1),
        "(loads, writes) back to one round trip"
    );
}

#[tokio::test]
async fn a_stale_copy_never_overwrites_a_recreated_session() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let a = agents(Arc::clone(&store));
    let b = agents(Arc::clone(&store));
    let user = id("reborn");
    a.get_or_create(&user, Agent::new).await.unwrap();
    a.modify(&user, |s| s.chat("old conversation"))
        .await
        .unwrap(); // A remembers version 2
    // Deleted and created again at once (the same millisecond, most likely): the new session's
    // write tokens still tell it apart.
    b.delete(&user).await.unwrap();
    b.get_or_create(&user, Agent::new).await.unwrap();
    b.modify(&user, |s| s.chat("new conversation"))
        .await
        .unwrap(); // version 2 again
    let agent = a.modify(&user, |s| s.chat("next")).await.unwrap();
    let said = agent.user_messages();
    assert_eq!(
        said,
        ["new conversation", "next"],
        "the old conversation came back"
    );
}

#[tokio::test]
async fn local_copies_can_be_turned_off() {
    let store = Arc::new(Counting::default());
    let manager: SessionManager<Agent> = SessionManager::builder(store.clone())
        .local_copy_bytes(0)
        .build();
    let user = id("u");
    manager.get_or_create(&user, Agent::new).await.unwrap();
    store.take();
    manager
        .modify(&user, |a| a.current_attempt += 1)
        .await
        .unwrap();
    assert_eq!(store.take(), (1, 1), "(loads, writes)");
}
