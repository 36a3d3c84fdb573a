//! Encryption at rest on a real Redis: what the library stores holds no plaintext, and
//! `sessionctl rekey` rewrites every session under the current key, resumably, without losing a
//! concurrent update.

mod common;

use std::{process::Stdio, sync::Arc};

use base64::Engine;
use common::{Agent, Env};
use serde_json::json;
use session_core::{
    Codec, Compression, EncryptionKeys, FLAG_COMPRESSED, FLAG_ENCRYPTED, SessionId, SessionManager,
    SessionStore,
};
use session_redis::RedisStore;

const K1: [u8; 32] = [0x11; 32];
const K2: [u8; 32] = [0x22; 32];
/// Words of the agents' conversations: none may appear in what Redis holds of an encrypted
/// session's state.
const PLAINTEXT: [&str; 4] = ["printer", "broken", "Try turning", "diagnosing"];

fn b64(key: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// `SESSION_ENCRYPTION_KEYS` with k2 first, k1 after it.
fn rotated_env() -> String {
    format!("k2:{},k1:{}", b64(&K2), b64(&K1))
}

fn keys(list: &[(&str, [u8; 32])]) -> EncryptionKeys {
    EncryptionKeys::from_keys(list.iter().copied()).unwrap()
}

fn codec_k1() -> Codec {
    Codec::default().with_encryption(keys(&[("k1", K1)]))
}

fn codec_k2() -> Codec {
    Codec::default().with_encryption(keys(&[("k2", K2)]))
}

/// An agent with a long conversation (compressible, over the 1 KiB threshold).
fn chatty(attempt: u32) -> Agent {
    let mut agent = Agent::new("diagnosing", attempt);
    for n in 0..40 {
        agent.conversation_history.push((
            "user".to_owned(),
            format!("the printer is still broken after restart number {n}"),
        ));
    }
    agent
}

/// Writes `agents` through a manager with `codec`, as a service with those settings would.
fn write_with(
    rt: &tokio::runtime::Runtime,
    store: &RedisStore,
    codec: Codec,
    agents: &[(&str, Agent)],
) {
    let manager = SessionManager::<Agent>::builder(Arc::new(store.clone()))
        .summarize(Agent::summary)
        .codec(codec)
        .build();
    rt.block_on(async {
        for (id, agent) in agents {
            manager
                .update(&SessionId::new(*id).unwrap(), agent)
                .await
                .unwrap();
        }
    });
}

/// The payload Redis holds for the session (its record after the header and the meta), read
/// with a plain connection.
fn raw_payload(env: &Env, rt: &tokio::runtime::Runtime, store: &RedisStore, id: &str) -> Vec<u8> {
    let key = store.key_of(&SessionId::new(id).unwrap());
    rt.block_on(async {
        let client = redis::Client::open(env.url.as_str()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let value = redis::cmd("GET")
            .arg(&key)
            .query_async::<Vec<u8>>(&mut con)
            .await
            .unwrap();
        session_redis::RecordParts::split(&value)
            .unwrap()
            .payload
            .to_vec()
    })
}

fn assert_no_plaintext(bytes: &[u8], what: &str) {
    for word in PLAINTEXT {
        assert!(
            !bytes.windows(word.len()).any(|w| w == word.as_bytes()),
            "{what}: {word:?} readable in {bytes:?}"
        );
    }
}

#[test]
fn encrypted_sessions_hold_no_plaintext_in_redis() {
    let Some(env) = common::start("encrypted_sessions_hold_no_plaintext_in_redis") else {
        return;
    };
    let (rt, store) = env.store();
    write_with(&rt, &store, Codec::default(), &[("plain", chatty(1))]);
    write_with(&rt, &store, codec_k1(), &[("sealed", chatty(1))]);
    write_with(
        &rt,
        &store,
        codec_k1().with_compression(Compression::LZ4),
        &[("sealed-lz4", chatty(1))],
    );
    // The unencrypted one shows its text: the check would see plaintext if it were there.
    let plain = raw_payload(&env, &rt, &store, "plain");
    assert!(plain.windows(7).any(|w| w == b"printer"));
    let sealed = raw_payload(&env, &rt, &store, "sealed");
    assert_eq!(sealed[2], FLAG_ENCRYPTED);
    assert_no_plaintext(&sealed, "sealed");
    let both = raw_payload(&env, &rt, &store, "sealed-lz4");
    assert_eq!(both[2], FLAG_COMPRESSED | FLAG_ENCRYPTED);
    assert_no_plaintext(&both, "sealed-lz4");
    assert!(
        both.len() * 2 < sealed.len(),
        "compressed before encryption"
    );
    // Read back through the store, as stored.
    let record = rt
        .block_on(store.load(&SessionId::new("sealed").unwrap()))
        .unwrap()
        .unwrap();
    assert_eq!(&record.payload[..], &sealed[..]);
    let id = SessionId::new("sealed").unwrap();
    assert_eq!(
        codec_k1().decode::<Agent>(&id, &record.payload).unwrap(),
        chatty(1)
    );

    // sessionctl with the keys shows it; without them it says why it cannot.
    let k1_env = format!("k1:{}", b64(&K1));
    let run = env
        .run_env(
            &[
                ("SESSION_ENCRYPTION_KEYS", &k1_env),
                ("REDIS_URL", &env.url),
            ],
            &["show", "sealed"],
        )
        .code(0);
    let shown: Agent = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown, chatty(1));
    let run = env.run(&["show", "sealed"]).code(1);
    assert!(
        run.stderr.contains("sealed") && run.stderr.contains("no encryption key is configured"),
        "{}",
        run.stderr
    );
    // show --raw says what the header says, without the key.
    let run = env.run(&["show", "sealed", "--raw"]).code(0);
    assert!(
        run.stdout.contains(
            "flags 0x02 (encrypted under key k1); does not decode: session sealed is corrupt"
        ),
        "{}",
        run.stdout
    );
    // The listing summary is kept beside the state, unencrypted, for listings.
    let list = env.run(&["--json", "list"]).code(0).json();
    assert_eq!(list["count"], 3);
}

#[test]
fn rekey_rewrites_every_session_under_the_current_key_and_a_rerun_skips_them() {
    let Some(env) =
        common::start("rekey_rewrites_every_session_under_the_current_key_and_a_rerun_skips_them")
    else {
        return;
    };
    let (rt, store) = env.store();
    write_with(
        &rt,
        &store,
        Codec::default(),
        &[("plain-1", Agent::new("new_problem", 0))],
    );
    write_with(
        &rt,
        &store,
        Codec::default().with_compression(Compression::LZ4),
        &[("lz4-1", chatty(2))],
    );
    write_with(
        &rt,
        &store,
        codec_k1(),
        &[("old-1", Agent::new("diagnosing", 1)), ("old-2", chatty(3))],
    );
    write_with(
        &rt,
        &store,
        codec_k2(),
        &[("new-1", Agent::new("resolved", 4))],
    );
    let ids = ["plain-1", "lz4-1", "old-1", "old-2", "new-1"];
    let load = |id: &str| {
        rt.block_on(store.load(&SessionId::new(id).unwrap()))
            .unwrap()
            .unwrap()
    };
    let before: Vec<_> = ids.iter().map(|id| load(id)).collect();

    let keys_env = rotated_env();
    let vars = [
        ("SESSION_ENCRYPTION_KEYS", keys_env.as_str()),
        ("SESSION_COMPRESSION", "lz4"),
        ("REDIS_URL", env.url.as_str()),
    ];
    // A dry run counts and writes nothing.
    let run = env.run_env(&vars, &["rekey", "--dry-run"]).code(0);
    assert!(
        run.stdout
            .contains("would rekey 4 sessions under key k2 (1 already under it"),
        "{run:?}"
    );
    for (id, old) in ids.iter().zip(&before) {
        assert_eq!(load(id).payload, old.payload, "{id}");
    }

    let run = env.run_env(&vars, &["rekey"]).code(0);
    assert!(
        run.stdout.contains(
            "rekeyed 4 sessions under key k2 (1 already under it, 0 gone meanwhile, 0 failed)"
        ),
        "{run:?}"
    );
    let k2_only = codec_k2();
    let expected = [
        Agent::new("new_problem", 0),
        chatty(2),
        Agent::new("diagnosing", 1),
        chatty(3),
        Agent::new("resolved", 4),
    ];
    for ((id, old), agent) in ids.iter().zip(&before).zip(&expected) {
        let new = load(id);
        let sid = SessionId::new(*id).unwrap();
        let raw = raw_payload(&env, &rt, &store, id);
        assert_eq!(raw, new.payload.to_vec());
        assert_eq!(raw[2] & FLAG_ENCRYPTED, FLAG_ENCRYPTED, "{id}");
        assert_eq!(Codec::inspect(&sid, &raw).unwrap().key_id(), Some("k2"));
        assert_no_plaintext(&raw, id);
        // Readable without k1 now, the same state, the same summary, no longer to live.
        assert_eq!(&k2_only.decode::<Agent>(&sid, &raw).unwrap(), agent, "{id}");
        assert_eq!(new.meta.summary, old.meta.summary, "{id}");
        assert!(new.ttl.unwrap() <= old.ttl.unwrap(), "{id}");
        let rewritten = *id != "new-1";
        assert_eq!(new.version, old.version + u64::from(rewritten), "{id}");
    }
    // The large states are compressed (SESSION_COMPRESSION=lz4), then encrypted.
    assert_eq!(load("old-2").payload[2], FLAG_COMPRESSED | FLAG_ENCRYPTED);
    assert_eq!(load("lz4-1").payload[2], FLAG_COMPRESSED | FLAG_ENCRYPTED);

    // Run again: nothing left to do, so a run that stopped half way continues this way.
    let doc = env.run_env(&vars, &["--json", "rekey"]).code(0).json();
    assert_eq!(
        doc,
        json!({"key": "k2", "rekeyed": 0, "already": 5, "gone": 0, "failed": 0,
               "errors": [], "dry_run": false})
    );
    // k1 can go: the settings with k2 alone read everything.
    let k2_env = format!("k2:{}", b64(&K2));
    let run = env
        .run_env(
            &[
                ("SESSION_ENCRYPTION_KEYS", &k2_env),
                ("REDIS_URL", &env.url),
            ],
            &["show", "old-1"],
        )
        .code(0);
    assert_eq!(
        serde_json::from_str::<Agent>(&run.stdout).unwrap(),
        Agent::new("diagnosing", 1)
    );
}

#[test]
fn rekey_reports_sessions_it_cannot_read_and_rewrites_the_rest() {
    let Some(env) = common::start("rekey_reports_sessions_it_cannot_read_and_rewrites_the_rest")
    else {
        return;
    };
    let (rt, store) = env.store();
    let retired = Codec::default().with_encryption(keys(&[("k0", [0x33; 32])]));
    write_with(
        &rt,
        &store,
        retired,
        &[("lost-1", Agent::new("new_problem", 0))],
    );
    write_with(
        &rt,
        &store,
        codec_k1(),
        &[("old-1", Agent::new("diagnosing", 1))],
    );
    let keys_env = rotated_env();
    let vars = [
        ("SESSION_ENCRYPTION_KEYS", keys_env.as_str()),
        ("REDIS_URL", env.url.as_str()),
    ];
    let run = env.run_env(&vars, &["rekey"]).code(1);
    assert!(
        run.stderr
            .contains("not rekeyed: session lost-1 is corrupt")
            && run
                .stderr
                .contains("key k0, which is not among the configured keys (k2, k1)"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("rekeyed 1 session under key k2"),
        "{run:?}"
    );
    let lost = raw_payload(&env, &rt, &store, "lost-1");
    assert_eq!(
        Codec::inspect(&SessionId::new("lost-1").unwrap(), &lost)
            .unwrap()
            .key_id(),
        Some("k0"),
        "left as it was"
    );
}

#[test]
fn rekey_without_keys_fails_and_says_what_to_set() {
    let Some(env) = common::start("rekey_without_keys_fails_and_says_what_to_set") else {
        return;
    };
    let run = env.run(&["rekey"]).code(1);
    assert!(
        run.stderr.contains("SESSION_ENCRYPTION_KEYS") && run.stderr.contains("hint:"),
        "{run:?}"
    );
    // A malformed key is a configuration error naming the setting, never the key.
    let bad = format!("k1:{}", b64(&[0x44; 16]));
    let run = env
        .run_env(
            &[("SESSION_ENCRYPTION_KEYS", &bad), ("REDIS_URL", &env.url)],
            &["rekey"],
        )
        .code(1);
    assert!(
        run.stderr.contains("SESSION_ENCRYPTION_KEYS = k1:***")
            && run.stderr.contains("the key of k1 is 16 bytes, not 32"),
        "{run:?}"
    );
    assert!(!run.stderr.contains(&b64(&[0x44; 16])), "{run:?}");
}

#[test]
fn rekey_loses_no_concurrent_update() {
    let Some(env) = common::start("rekey_loses_no_concurrent_update") else {
        return;
    };
    let (rt, store) = env.store();
    // An instance that still writes under k1 (k1 first) but reads k2: each of its writes puts
    // the session back under k1, so rekey and it keep meeting.
    let writer = Codec::default().with_encryption(keys(&[("k1", K1), ("k2", K2)]));
    let ids: Vec<String> = (0..300).map(|n| format!("busy-{n:03}")).collect();
    let agents: Vec<(&str, Agent)> = ids
        .iter()
        .map(|id| (id.as_str(), Agent::new("diagnosing", 0)))
        .collect();
    write_with(&rt, &store, writer.clone(), &agents);
    let manager = SessionManager::<Agent>::builder(Arc::new(store.clone()))
        .summarize(Agent::summary)
        .codec(writer)
        .build();

    const ROUNDS: u32 = 6;
    let keys_env = rotated_env();
    let mut rekeys = Vec::new();
    rt.block_on(async {
        for round in 0..ROUNDS {
            // A rekey process in the background of every other round of modifies.
            if round % 2 == 0 {
                let mut cmd = env.command();
                cmd.env("SESSION_ENCRYPTION_KEYS", &keys_env)
                    .env("REDIS_URL", &env.url)
                    .arg("--json")
                    .arg("rekey")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                rekeys.push(cmd.spawn().unwrap());
            }
            let mut tasks = tokio::task::JoinSet::new();
            for id in &ids {
                let (manager, id) = (manager.clone(), SessionId::new(id).unwrap());
                tasks.spawn(async move {
                    manager
                        .modify(&id, |agent| agent.current_attempt += 1)
                        .await
                        .unwrap();
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        }
    });
    let mut rekeyed = 0;
    for child in rekeys {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["failed"], 0, "{doc}");
        rekeyed += doc["rekeyed"].as_u64().unwrap();
    }
    assert!(rekeyed > 0, "the rekeys met the writes");
    // Every modify counted: no rekey write overwrote one.
    let reader = Codec::default().with_encryption(keys(&[("k2", K2), ("k1", K1)]));
    for id in &ids {
        let sid = SessionId::new(id).unwrap();
        let record = rt.block_on(store.load(&sid)).unwrap().unwrap();
        let agent: Agent = reader.decode(&sid, &record.payload).unwrap();
        assert_eq!(agent.current_attempt, ROUNDS, "{id}");
    }
    // A last rekey with nobody writing leaves every session under k2.
    let vars = [
        ("SESSION_ENCRYPTION_KEYS", keys_env.as_str()),
        ("REDIS_URL", env.url.as_str()),
    ];
    env.run_env(&vars, &["rekey"]).code(0);
    let doc = env.run_env(&vars, &["--json", "rekey"]).code(0).json();
    assert_eq!(doc["already"], 300);
}
