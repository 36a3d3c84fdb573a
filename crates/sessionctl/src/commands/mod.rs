//! One module per subcommand, and the listing they share.

pub(crate) mod delete;
pub(crate) mod doctor;
pub(crate) mod export;
pub(crate) mod import;
pub(crate) mod list;
pub(crate) mod purge;
pub(crate) mod rekey;
pub(crate) mod show;
pub(crate) mod stats;
pub(crate) mod ttl;

use session_core::{Cursor, SessionInfo, SessionStore};
use session_redis::RedisStore;

use crate::{Context, error::CliResult, glob::IdGlob};

/// Sessions per listing page.
const PAGE: usize = 500;

/// Walks every session of the store, page by page, keeping those whose id matches the glob.
pub(crate) struct Listing<'a> {
    ctx: &'a Context,
    store: &'a RedisStore,
    glob: Option<&'a IdGlob>,
    cursor: Option<Cursor>,
    done: bool,
}

impl<'a> Listing<'a> {
    pub(crate) fn new(ctx: &'a Context, store: &'a RedisStore, glob: Option<&'a IdGlob>) -> Self {
        Self {
            ctx,
            store,
            glob,
            cursor: None,
            done: false,
        }
    }

    /// This listing, starting at `cursor` (a position a listing handed out) instead of the
    /// beginning.
    pub(crate) fn starting_at(mut self, cursor: Option<Cursor>) -> Self {
        self.cursor = cursor;
        self
    }

    /// Where the next batch starts (`None`: at the beginning, or at the end once done).
    pub(crate) fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// The next batch of matching sessions (possibly empty while more follow); `None` at the
    /// end.
    pub(crate) async fn next_batch(&mut self) -> CliResult<Option<Vec<SessionInfo>>> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .list_page(self.cursor.as_ref(), PAGE)
            .await
            .map_err(|e| self.ctx.fail(e))?;
        self.cursor = page.next;
        self.done = self.cursor.is_none();
        let sessions = page
            .sessions
            .into_iter()
            .filter(|s| self.glob.is_none_or(|g| g.matches(s.id.as_str())))
            .collect();
        Ok(Some(sessions))
    }
}

/// Parses an optional `--match` glob.
pub(crate) fn parse_glob(pattern: Option<&str>) -> CliResult<Option<IdGlob>> {
    pattern.map(IdGlob::parse).transpose()
}
