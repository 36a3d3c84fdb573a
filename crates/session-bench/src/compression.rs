//! The codec's compression, off and LZ4, side by side: bytes stored, what Redis holds, how many
//! sessions fit in the seed's `maxmemory`, and what `get` and `update` cost either way.

use std::sync::Arc;

use session_core::{Codec, Compression, SessionManager};
use session_redis::ConnectionMode;

use crate::agent::Agent;
use crate::recorder::Latency;
use crate::report::Row;
use crate::{
    Args, BoxResult, Stats, connect_store, id, plan, raw, raw_manager, sessions_in_maxmemory, timed,
};

/// `codec` without compression (what the envelope is before compression).
pub(crate) fn plain(codec: &Codec) -> Codec {
    codec.clone().with_compression(Compression::Off)
}

pub(crate) async fn section(
    args: &Args,
    stats: &Stats,
    url: &str,
    rows: &mut Vec<Row>,
) -> BoxResult<()> {
    let plan = plan(args);
    let store = Arc::new(connect_store(url, ConnectionMode::Multiplexed).await?);
    let mut con = raw_manager(url).await?;
    let variants = [
        ("10-message agent", Agent::with_messages(10)),
        ("100-message agent", Agent::with_messages(100)),
        (
            "100-message agent of varied text",
            Agent::with_varied_messages(100),
        ),
    ];
    for (n, (what, agent)) in variants.into_iter().enumerate() {
        let section = format!("Compression, {what}: off vs {}", Compression::LZ4);
        println!("{section}");
        let k = |name: &str| format!("comp{n}.{name}");
        for (label, compression) in [("off", Compression::Off), ("lz4", Compression::LZ4)] {
            let codec = Codec::default().with_compression(compression);
            let m: SessionManager<Agent> = SessionManager::builder(store.clone())
                .summarize(session_core::Summarize::summary)
                .codec(codec.clone())
                .build();
            let sid = id(&format!("comp-{n}-{label}"))?;
            let stored = codec.encode(&sid, &agent)?.len();
            m.update(&sid, &agent).await?;
            let usage = raw::memory_usage(&mut con, &store.key_of(&sid)).await?;
            let mut size = Row::latency(
                &k(&format!("{label}.size")),
                &section,
                &format!("size, compression {label}"),
                Latency::from_samples(Vec::new()),
                None,
            )
            .note(format!(
                "{stored} B stored; MEMORY USAGE {usage} B; {}",
                sessions_in_maxmemory(usage)
            ));
            size.latency = None;
            rows.push(size);

            println!(" get, compression {label}");
            let (l, s) = timed(stats, plan, async |_| {
                m.get(&sid).await?.ok_or("session vanished")?;
                Ok(())
            })
            .await?;
            let mut row = Row::latency(
                &k(&format!("{label}.get")),
                &section,
                &format!("get, compression {label}"),
                l,
                Some(s),
            );
            if label == "lz4" {
                row = row.vs(&k("off.get"));
            }
            rows.push(row);

            println!(" update, compression {label}");
            let (l, s) = timed(stats, plan, async |_| {
                m.update(&sid, &agent).await?;
                Ok(())
            })
            .await?;
            let mut row = Row::latency(
                &k(&format!("{label}.update")),
                &section,
                &format!("update, compression {label}"),
                l,
                Some(s),
            );
            if label == "lz4" {
                row = row.vs(&k("off.update"));
            }
            rows.push(row);
            m.delete(&sid).await?;
        }
    }
    Ok(())
}
