//! `sessionctl ttl ID [SECONDS]`: `PTTL`, or the store's touch (`PEXPIRE`).

use std::{process::ExitCode, time::Duration};

use serde_json::json;
use session_core::{SessionStore, Ttl};

use crate::{
    Context,
    cli::TtlArgs,
    commands::show::not_found,
    error::{CliError, CliResult},
    output::{self, human_duration},
    parse_id,
};

pub(crate) async fn run(ctx: &Context, args: TtlArgs) -> CliResult<ExitCode> {
    let id = parse_id(&args.id)?;
    if let Some(seconds) = args.seconds {
        let ttl = Ttl::from_secs(seconds)
            .map_err(|e| CliError::usage(format!("invalid SECONDS {seconds}: {e}")))?;
        let store = ctx.store().await?;
        if !store.touch(&id, ttl).await.map_err(|e| ctx.fail(e))? {
            return Err(not_found(&id));
        }
        if ctx.json {
            output::print_json(&json!({ "id": id, "ttl_ms": ttl.as_millis() }))?;
        } else if !ctx.quiet {
            output::println_stdout(&format!(
                "{id}: expires in {}",
                human_duration(ttl.as_duration())
            ))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let key = format!("{}{}", ctx.options.key_prefix(), id);
    let mut con = ctx.raw_for(&key).await?;
    let pttl: i64 = ctx
        .query(&mut con, redis::cmd("PTTL").arg(&key), "PTTL")
        .await?;
    let ttl = match pttl {
        -2 => return Err(not_found(&id)),
        ms if ms >= 0 => Some(Duration::from_millis(ms.unsigned_abs())),
        _ => None,
    };
    if ctx.json {
        output::print_json(&json!({ "id": id, "ttl_ms": output::ttl_ms(ttl) }))?;
    } else {
        let text = match ttl {
            Some(d) => format!(
                "{id}: expires in {} ({} ms)",
                human_duration(d),
                d.as_millis()
            ),
            None => format!("{id}: no expiry"),
        };
        output::println_stdout(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}
