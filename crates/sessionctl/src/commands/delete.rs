//! `sessionctl delete ID...`.

use std::process::ExitCode;

use serde_json::json;
use session_core::SessionStore;

use crate::{Context, cli::DeleteArgs, error::CliResult, output, parse_id};

pub(crate) async fn run(ctx: &Context, args: DeleteArgs) -> CliResult<ExitCode> {
    // Every id is checked before anything is deleted: a typo deletes nothing.
    let ids = args
        .ids
        .iter()
        .map(|s| parse_id(s))
        .collect::<CliResult<Vec<_>>>()?;
    let store = ctx.store().await?;
    let (mut deleted, mut missing) = (Vec::new(), Vec::new());
    for id in ids {
        if store.delete(&id).await.map_err(|e| ctx.fail(e))? {
            deleted.push(id);
        } else {
            missing.push(id);
        }
    }
    if ctx.json {
        output::print_json(&json!({ "deleted": deleted, "not_found": missing }))?;
    } else {
        if !ctx.quiet {
            for id in &deleted {
                output::println_stdout(&format!("deleted {id}"))?;
            }
        }
        for id in &missing {
            eprintln!("sessionctl: session {id} not found (it may have expired)");
        }
    }
    Ok(if missing.is_empty() || args.ignore_missing {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::error::EXIT_FAILURE)
    })
}
