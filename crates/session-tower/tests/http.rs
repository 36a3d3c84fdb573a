//! A real axum app on tower-sessions' `SessionManagerLayer`, served on loopback sockets and
//! driven over HTTP/1.1 with cookies, over the memory store and over a real Redis.

mod common;

use std::{sync::Arc, time::Duration as StdDuration};

use common::{Browser, Instance, app};
use serde_json::Value;
use session_core::{Codec, SessionId, SessionStore};
use session_memory::MemoryStore;
use session_tower::TowerStore;
use time::Duration;
use tower_sessions::Expiry;

/// Logs `browser` in as `user` on `addr`; returns the session cookie's value.
async fn login(browser: &mut Browser, addr: std::net::SocketAddr, user: &str) -> String {
    let res = browser.post(addr, &format!("/login?user={user}")).await;
    assert_eq!(res.status, 204, "{res:?}");
    browser
        .session_cookie()
        .unwrap_or_else(|| panic!("no session cookie after login: {res:?}"))
        .to_owned()
}

async fn me(browser: &mut Browser, addr: std::net::SocketAddr) -> (u16, String) {
    let res = browser.get(addr, "/me").await;
    (res.status, res.body)
}

mod memory {
    use super::*;

    fn store() -> Arc<dyn SessionStore> {
        Arc::new(MemoryStore::new())
    }

    #[tokio::test]
    async fn login_sets_a_value_that_the_cookie_brings_back() {
        let store = store();
        let server = Instance::start(app(TowerStore::new(Arc::clone(&store)), None)).await;
        let mut ada = Browser::new();
        let cookie = login(&mut ada, server.addr, "ada").await;

        assert_eq!(me(&mut ada, server.addr).await, (200, "ada".to_owned()));
        assert_eq!(
            me(&mut Browser::new(), server.addr).await,
            (401, "anonymous".to_owned())
        );
        // Stored under the cookie's value, in our store.
        let sid = SessionId::new(&cookie).unwrap();
        assert!(store.exists(&sid).await.unwrap());
        assert_eq!(store.count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn the_session_cookie_is_tower_sessions_own() {
        let server = Instance::start(app(TowerStore::new(store()), None)).await;
        let res = Browser::new().post(server.addr, "/login?user=ada").await;
        let set_cookie = res.set_cookies().join("\n");
        assert!(set_cookie.starts_with("id="), "{set_cookie}");
        assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
        assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
        assert!(set_cookie.contains("Path=/"), "{set_cookie}");
    }

    #[tokio::test]
    async fn requests_that_change_nothing_store_nothing() {
        let store = store();
        let server = Instance::start(app(TowerStore::new(Arc::clone(&store)), None)).await;
        let mut browser = Browser::new();
        let res = browser.get(server.addr, "/me").await;
        assert_eq!(res.status, 401);
        assert!(res.set_cookies().is_empty(), "{res:?}");
        assert_eq!(store.count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn every_change_is_saved() {
        let server = Instance::start(app(TowerStore::new(store()), None)).await;
        let mut browser = Browser::new();
        for n in 1..=5 {
            let res = browser.post(server.addr, "/visit").await;
            assert_eq!((res.status, res.body), (200, n.to_string()));
        }
    }

    #[tokio::test]
    async fn logout_removes_the_session_and_the_cookie() {
        let store = store();
        let server = Instance::start(app(TowerStore::new(Arc::clone(&store)), None)).await;
        let mut ada = Browser::new();
        let cookie = login(&mut ada, server.addr, "ada").await;
        let mut stolen = ada.clone();

        let res = ada.post(server.addr, "/logout").await;
        assert_eq!(res.status, 204);
        assert_eq!(ada.session_cookie(), None, "{res:?}");
        assert_eq!(store.count().await.unwrap(), 0);
        // The old cookie is worth nothing now.
        assert_eq!(stolen.session_cookie(), Some(cookie.as_str()));
        assert_eq!(me(&mut stolen, server.addr).await.0, 401);
    }

    #[tokio::test]
    async fn cycle_id_moves_the_data_to_a_new_id() {
        let store = store();
        let server = Instance::start(app(TowerStore::new(Arc::clone(&store)), None)).await;
        let mut ada = Browser::new();
        let before = login(&mut ada, server.addr, "ada").await;
        let mut old = ada.clone();

        assert_eq!(ada.post(server.addr, "/cycle").await.status, 204);
        let after = ada.session_cookie().unwrap().to_owned();
        assert_ne!(after, before);
        assert_eq!(me(&mut ada, server.addr).await, (200, "ada".to_owned()));
        assert_eq!(me(&mut old, server.addr).await.0, 401);
        assert_eq!(store.count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn an_unknown_or_malformed_cookie_gets_a_new_session() {
        let server = Instance::start(app(TowerStore::new(store()), None)).await;
        for bogus in ["AAAAAAAAAAAAAAAAAAAAAA", "malformed", "a*b"] {
            let mut browser = Browser::new();
            browser.cookies.insert("id".into(), bogus.into());
            assert_eq!(me(&mut browser, server.addr).await.0, 401);
            let cookie = login(&mut browser, server.addr, "eve").await;
            assert_ne!(cookie, bogus);
            assert_eq!(me(&mut browser, server.addr).await, (200, "eve".to_owned()));
        }
    }

    #[tokio::test]
    async fn an_inactivity_expiry_is_respected_and_activity_extends_it() {
        let store = store();
        // Whole seconds: the cookie's Max-Age is (and a shorter one would be 0, "remove it").
        let expiry = Expiry::OnInactivity(Duration::seconds(2));
        let server = Instance::start(app(TowerStore::new(Arc::clone(&store)), Some(expiry))).await;

        let mut idle = Browser::new();
        login(&mut idle, server.addr, "idle").await;
        let mut busy = Browser::new();
        for _ in 0..5 {
            assert_eq!(busy.post(server.addr, "/visit").await.status, 200);
            tokio::time::sleep(StdDuration::from_millis(500)).await;
        }
        // 2.5 s after login: the idle session expired, the busy one lives on.
        assert_eq!(me(&mut idle, server.addr).await.0, 401);
        let res = busy.post(server.addr, "/visit").await;
        assert_eq!((res.status, res.body.as_str()), (200, "6"));
        assert_eq!(store.count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_prefix_names_the_sessions_in_the_store() {
        let store = store();
        let tower = TowerStore::new(Arc::clone(&store))
            .with_prefix("tower:")
            .unwrap();
        let server = Instance::start(app(tower, None)).await;
        let cookie = login(&mut Browser::new(), server.addr, "ada").await;
        let page = store.list_page(None, 10).await.unwrap();
        let ids: Vec<&str> = page.sessions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, [format!("tower:{cookie}")]);
    }
}

mod redis {
    use super::*;

    /// The shared test Redis' URL and a fresh prefix, or `None` (skipped).
    fn redis(test: &str) -> Option<(String, String)> {
        let url = redis_harness::env::redis_url(test)?;
        Some((url, common::unique_prefix(test)))
    }

    #[tokio::test]
    async fn two_instances_on_one_redis_share_the_login() {
        let Some((url, prefix)) = redis("two_instances_on_one_redis_share_the_login") else {
            return;
        };
        let store_a = common::redis_store(&url, &prefix).await;
        let store_b = common::redis_store(&url, &prefix).await;
        let a = Instance::start(app(TowerStore::new(Arc::clone(&store_a)), None)).await;
        let b = Instance::start(app(TowerStore::new(Arc::clone(&store_b)), None)).await;

        let mut ada = Browser::new();
        let cookie = login(&mut ada, a.addr, "ada").await;
        assert_eq!(me(&mut ada, b.addr).await, (200, "ada".to_owned()));

        // Changes go both ways, each instance reading what the other wrote.
        for (n, server) in [(1, &a), (2, &b), (3, &a), (4, &b)] {
            let res = ada.post(server.addr, "/visit").await;
            assert_eq!((res.status, res.body), (200, n.to_string()));
        }

        // And the session is one of the store's like any other: listed, readable.
        let sid = SessionId::new(&cookie).unwrap();
        let record = store_b.load(&sid).await.unwrap().unwrap();
        let state: Value = Codec::default().decode(&sid, &record.payload).unwrap();
        assert_eq!(state["data"]["user"], "ada");
        assert_eq!(state["data"]["visits"], 4);
        assert_eq!(state["id"], cookie.as_str());
        assert_eq!(store_a.count().await.unwrap(), 1);
        common::purge(&*store_a).await;
    }

    #[tokio::test]
    async fn a_restarted_instance_keeps_the_login() {
        let Some((url, prefix)) = redis("a_restarted_instance_keeps_the_login") else {
            return;
        };
        let first = common::redis_store(&url, &prefix).await;
        let server = Instance::start(app(TowerStore::new(Arc::clone(&first)), None)).await;
        let mut ada = Browser::new();
        login(&mut ada, server.addr, "ada").await;
        server.stop().await;
        drop(first);

        // A new process: a new store object, a new app, on another port; same Redis.
        let again = common::redis_store(&url, &prefix).await;
        let server = Instance::start(app(TowerStore::new(Arc::clone(&again)), None)).await;
        assert_eq!(me(&mut ada, server.addr).await, (200, "ada".to_owned()));
        let res = ada.post(server.addr, "/visit").await;
        assert_eq!((res.status, res.body.as_str()), (200, "1"));
        common::purge(&*again).await;
    }

    #[tokio::test]
    async fn an_inactivity_expiry_is_respected_on_redis() {
        let Some((url, prefix)) = redis("an_inactivity_expiry_is_respected_on_redis") else {
            return;
        };
        let store = common::redis_store(&url, &prefix).await;
        let expiry = Expiry::OnInactivity(Duration::seconds(2));
        let server = Instance::start(app(TowerStore::new(Arc::clone(&store)), Some(expiry))).await;
        let mut ada = Browser::new();
        let cookie = login(&mut ada, server.addr, "ada").await;
        let sid = SessionId::new(&cookie).unwrap();
        let ttl = store.load(&sid).await.unwrap().unwrap().ttl.unwrap();
        assert!(ttl <= StdDuration::from_secs(2), "{ttl:?}");
        assert_eq!(me(&mut ada, server.addr).await.0, 200);

        tokio::time::sleep(StdDuration::from_millis(2500)).await;
        assert_eq!(me(&mut ada, server.addr).await.0, 401);
        assert!(!store.exists(&sid).await.unwrap(), "Redis dropped the key");
    }

    #[tokio::test]
    async fn logout_on_one_instance_logs_out_everywhere() {
        let Some((url, prefix)) = redis("logout_on_one_instance_logs_out_everywhere") else {
            return;
        };
        let store_a = common::redis_store(&url, &prefix).await;
        let store_b = common::redis_store(&url, &prefix).await;
        let a = Instance::start(app(TowerStore::new(Arc::clone(&store_a)), None)).await;
        let b = Instance::start(app(TowerStore::new(store_b), None)).await;
        let mut ada = Browser::new();
        login(&mut ada, a.addr, "ada").await;
        let mut other_tab = ada.clone();
        assert_eq!(ada.post(b.addr, "/logout").await.status, 204);
        assert_eq!(me(&mut other_tab, a.addr).await.0, 401);
        assert_eq!(store_a.count().await.unwrap(), 0);
    }
}
