//! Encryption at rest (AES-256-GCM), off and on, side by side: what `get` and `update` cost
//! through the manager on Redis, and what the codec costs on this core without I/O.

use std::sync::Arc;

use session_core::{Codec, EncryptionKeys, KEY_LEN, SessionManager};
use session_redis::ConnectionMode;

use crate::agent::Agent;
use crate::recorder::measure;
use crate::report::Row;
use crate::{Args, BoxError, BoxResult, Stats, connect_store, id, plan, timed};

/// The codec with a benchmark key (the bytes do not matter to the cost).
fn encrypting() -> BoxResult<Codec> {
    Ok(Codec::default().with_encryption(EncryptionKeys::new("bench", [7; KEY_LEN])?))
}

pub(crate) async fn section(
    args: &Args,
    stats: &Stats,
    url: &str,
    rows: &mut Vec<Row>,
) -> BoxResult<()> {
    let plan = plan(args);
    let store = Arc::new(connect_store(url, ConnectionMode::Multiplexed).await?);
    for messages in [10, 100] {
        let agent = Agent::with_messages(messages);
        let sid = id(&format!("enc-{messages}"))?;
        let plain_len = Codec::default().encode(&sid, &agent)?.len();
        let section = format!(
            "Encryption, {messages}-message agent ({plain_len} B envelope): off vs AES-256-GCM"
        );
        println!("{section}");
        let k = |name: &str| format!("enc{messages}.{name}");
        for (label, codec) in [("off", Codec::default()), ("aes", encrypting()?)] {
            let stored = codec.encode(&sid, &agent)?.len();
            let m: SessionManager<Agent> = SessionManager::builder(store.clone())
                .summarize(session_core::Summarize::summary)
                .codec(codec.clone())
                .build();
            let sid = id(&format!("enc-{messages}-{label}"))?;
            m.update(&sid, &agent).await?;

            println!(" get, encryption {label}");
            let (l, s) = timed(stats, plan, async |_| {
                m.get(&sid).await?.ok_or("session vanished")?;
                Ok(())
            })
            .await?;
            let mut row = Row::latency(
                &k(&format!("{label}.get")),
                &section,
                &format!("get, encryption {label}"),
                l,
                Some(s),
            )
            .note(format!("{stored} B stored"));
            if label == "aes" {
                row = row.vs(&k("off.get"));
            }
            rows.push(row);

            println!(" update, encryption {label}");
            let (l, s) = timed(stats, plan, async |_| {
                m.update(&sid, &agent).await?;
                Ok(())
            })
            .await?;
            let mut row = Row::latency(
                &k(&format!("{label}.update")),
                &section,
                &format!("update, encryption {label}"),
                l,
                Some(s),
            );
            if label == "aes" {
                row = row.vs(&k("off.update"));
            }
            rows.push(row);
            m.delete(&sid).await?;

            // The codec alone, on this core.
            let bytes = codec.encode(&sid, &agent)?;
            let l = measure(plan, async |_| {
                std::hint::black_box(codec.encode(&sid, std::hint::black_box(&agent))?);
                Ok::<(), BoxError>(())
            })
            .await?;
            let mut row = Row::latency(
                &k(&format!("{label}.encode")),
                &section,
                &format!("Codec::encode without I/O, encryption {label}"),
                l,
                None,
            );
            if label == "aes" {
                row = row.vs(&k("off.encode"));
            }
            rows.push(row);
            let l = measure(plan, async |_| {
                let a: Agent = codec.decode(&sid, std::hint::black_box(&bytes))?;
                std::hint::black_box(a);
                Ok::<(), BoxError>(())
            })
            .await?;
            let mut row = Row::latency(
                &k(&format!("{label}.decode")),
                &section,
                &format!("Codec::decode without I/O, encryption {label}"),
                l,
                None,
            );
            if label == "aes" {
                row = row.vs(&k("off.decode"));
            }
            rows.push(row);
        }
    }
    Ok(())
}
