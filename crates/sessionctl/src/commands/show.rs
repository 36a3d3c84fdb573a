//! `sessionctl show ID [--raw]`: the state as pretty JSON, or the stored fields as they are.

use std::process::ExitCode;

use base64::Engine;
use serde_json::{Value, json};
use session_core::{Codec, MAGIC, SessionId, SessionInfo, SessionStore};

use crate::{
    Context,
    cli::ShowArgs,
    error::{CliError, CliResult},
    output::{self, human_size, human_summary, human_time, human_ttl},
    parse_id, state,
};

/// Bytes of the payload shown in hex by `--raw` for people (JSON gets all of them).
const HEX_PREVIEW: usize = 64;

pub(crate) async fn run(ctx: &Context, args: ShowArgs) -> CliResult<ExitCode> {
    let id = parse_id(&args.id)?;
    if args.raw {
        return raw(ctx, &id).await;
    }
    let store = ctx.store().await?;
    let record = store
        .load(&id)
        .await
        .map_err(|e| ctx.fail(e))?
        .ok_or_else(|| not_found(&id))?;
    let state = state::decode(&ctx.codec(), &id, &record.payload).map_err(|e| ctx.fail(e))?;
    if ctx.json {
        let info = SessionInfo::new(id.clone(), record.meta, record.version, record.ttl);
        let mut doc = output::info_json(&info);
        doc["state"] = state;
        output::print_json(&doc)?;
    } else {
        output::print_json(&state)?;
        if !ctx.quiet {
            eprintln!(
                "session {id}: version {}, ttl {}, updated {}, {}, {}",
                record.version,
                human_ttl(record.ttl),
                human_time(record.meta.updated_at),
                human_size(record.meta.size),
                human_summary(&record.meta.summary)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn not_found(id: &SessionId) -> CliError {
    CliError::failure(format!("session {id} not found (it may have expired)"))
        .hint("`sessionctl list` shows the sessions there are; check --prefix and --url")
}

/// `--raw`: TYPE, PTTL and the stored value of the key (a record's header fields, meta and
/// payload; or the fields of a hash of the earlier layouts), each part shown as stored.
async fn raw(ctx: &Context, id: &SessionId) -> CliResult<ExitCode> {
    let key = format!("{}{}", ctx.options.key_prefix(), id);
    let mut con = ctx.raw_for(&key).await?;
    let kind: String = ctx
        .query(&mut con, redis::cmd("TYPE").arg(&key), "TYPE")
        .await?;
    if kind == "none" {
        return Err(not_found(id));
    }
    let pttl: i64 = ctx
        .query(&mut con, redis::cmd("PTTL").arg(&key), "PTTL")
        .await?;
    let ttl_ms = (pttl >= 0).then_some(pttl);
    let mut doc = json!({ "key": key, "type": kind, "ttl_ms": ttl_ms });
    let mut lines = vec![
        format!("key       {key}"),
        format!("type      {kind}"),
        format!(
            "ttl       {}",
            ttl_ms.map_or("none (no expiry)".to_owned(), |ms| format!(
                "{} ({ms} ms)",
                output::human_duration(std::time::Duration::from_millis(ms.unsigned_abs()))
            ))
        ),
    ];
    if kind == "string" {
        let value: Vec<u8> = ctx
            .query(&mut con, redis::cmd("GET").arg(&key), "GET")
            .await?;
        match session_redis::RecordParts::split(&value) {
            Some(parts) => {
                doc["layout"] = json!("record");
                let mut json_fields = serde_json::Map::new();
                // Named as the fields of the earlier hash layout, in the header's order.
                for (name, bytes) in [
                    ("t", parts.tokens),
                    ("x", parts.fences),
                    ("v", parts.version),
                    ("c", parts.created_at),
                    ("m", parts.meta),
                    ("d", parts.payload),
                ] {
                    let (text, shown) = describe_field(ctx, id, name, bytes);
                    lines.push(format!("{name:<9} {text}"));
                    json_fields.insert(name.to_owned(), shown);
                }
                doc["fields"] = Value::Object(json_fields);
            }
            None => {
                lines.push(format!(
                    "problem   the key holds a string of {} bytes that is not a session record \
                     (delete it to reuse the id)",
                    value.len()
                ));
                doc["problem"] = json!("the key holds a string that is not a session record");
            }
        }
    } else if kind != "hash" {
        lines.push(format!(
            "problem   the key holds a {kind}, not a session (delete it to reuse the id)"
        ));
        doc["problem"] = json!(format!("the key holds a {kind}, not a session"));
    } else {
        // A record of the earlier hash layouts.
        doc["layout"] = json!("hash");
        let fields: Vec<(Vec<u8>, Vec<u8>)> = ctx
            .query(&mut con, redis::cmd("HGETALL").arg(&key), "HGETALL")
            .await?;
        let mut json_fields = serde_json::Map::new();
        for (name, value) in &fields {
            let name = String::from_utf8_lossy(name).into_owned();
            let (text, shown) = describe_field(ctx, id, &name, value);
            lines.push(format!("{name:<9} {text}"));
            json_fields.insert(name, shown);
        }
        for missing in ["d", "m", "v"] {
            if !json_fields.contains_key(missing) {
                lines.push(format!("{missing:<9} (missing: the session is corrupt)"));
            }
        }
        doc["fields"] = Value::Object(json_fields);
    }
    if ctx.json {
        output::print_json(&doc)?;
    } else {
        for line in lines {
            output::println_stdout(&line)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One stored field for people (a line) and for programs (JSON).
fn describe_field(ctx: &Context, id: &SessionId, name: &str, value: &[u8]) -> (String, Value) {
    match name {
        "d" => describe_payload(&ctx.codec(), id, value),
        "m" => match rmp_serde::from_slice::<state::JsonState>(value) {
            Ok(meta) => (meta.0.to_string(), json!({ "decoded": meta.0 })),
            Err(e) => (
                format!("not readable MessagePack ({e}); base64 {}", b64(value)),
                json!({ "error": e.to_string(), "base64": b64(value) }),
            ),
        },
        "c" => {
            let text = String::from_utf8_lossy(value).into_owned();
            let when = text
                .parse::<u64>()
                .map(|ms| format!(" ({})", session_core::Timestamp::from_millis(ms)))
                .unwrap_or_else(|_| " (not an integer: corrupt)".to_owned());
            (format!("{text}{when}"), json!(text))
        }
        _ => {
            let text = String::from_utf8_lossy(value).into_owned();
            (text.clone(), json!(text))
        }
    }
}

fn describe_payload(codec: &Codec, id: &SessionId, payload: &[u8]) -> (String, Value) {
    let header = match payload {
        [magic, format, flags, ..] => {
            // What the flags mean, when the header is one this version reads.
            let what = match Codec::inspect(id, payload) {
                Ok(info) => {
                    let mut what = Vec::new();
                    if info.compressed {
                        what.push("compressed".to_owned());
                    }
                    if let Some(key) = info.key_id() {
                        what.push(format!("encrypted under key {key}"));
                    }
                    if what.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", what.join(", "))
                    }
                }
                Err(_) => String::new(),
            };
            format!(
                "magic 0x{magic:02x} ({}), format {format}, flags 0x{flags:02x}{what}",
                if *magic == MAGIC { "ok" } else { "wrong" }
            )
        }
        _ => "shorter than the 3-byte header".to_owned(),
    };
    let decoded = state::decode(codec, id, payload);
    let verdict = match &decoded {
        Ok(_) => "decodes".to_owned(),
        Err(e) => format!("does not decode: {e}"),
    };
    let preview: Vec<String> = payload
        .iter()
        .take(HEX_PREVIEW)
        .map(|b| format!("{b:02x}"))
        .collect();
    let ellipsis = if payload.len() > HEX_PREVIEW {
        " ..."
    } else {
        ""
    };
    let text = format!(
        "{}; {header}; {verdict}\n  hex     {}{ellipsis}\n  base64  {}",
        human_size(payload.len() as u64),
        preview.join(" "),
        b64(payload)
    );
    let shown = json!({
        "size": payload.len(),
        "header": header,
        "decode_error": decoded.as_ref().err().map(ToString::to_string),
        "hex": payload.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "base64": b64(payload),
    });
    (text, shown)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
