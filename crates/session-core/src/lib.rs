//! Durable per-session state for Rust services: the core.
//!
//! This crate holds what every backend and adapter shares, and no backend of its own:
//!
//! - [`SessionId`], the validated id every key is built from;
//! - [`SessionStore`], the object-safe trait backends implement, on encoded [`Record`]s, with
//!   conditional saves ([`Condition`]), TTLs ([`Ttl`]) and paged listings ([`Page`]);
//! - [`Codec`], the versioned MessagePack envelope (LZ4 compression and AES-256-GCM
//!   encryption at rest as options, [`EncryptionKeys`]);
//! - [`SessionManager<T>`], the typed API: `get_or_create`, `get`, `update`, `save` (version
//!   checked), `modify` (a retrying compare-and-set that loses no update), `delete`, `list` ...;
//! - [`Error`], which tells "not there" from "store down" from "bad data";
//! - with the feature `testing`, the conformance suite every store must pass.
//!
//! Backends live beside it: `session-memory` (in-process) and `session-redis`.
//!
//! ```
//! use std::sync::Arc;
//! use serde::{Deserialize, Serialize};
//! use session_core::{SessionId, SessionManager, SessionStore, Summarize, Summary};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Agent { state: String, current_attempt: u32 }
//!
//! impl Summarize for Agent {
//!     fn summary(&self) -> Summary {
//!         Summary::new().with("state", &self.state).with("current_attempt", self.current_attempt)
//!     }
//! }
//!
//! async fn chat(store: Arc<dyn SessionStore>) -> session_core::Result<()> {
//!     let agents = SessionManager::<Agent>::builder(store).summarize(Agent::summary).build();
//!     let id = SessionId::new("user-123")?;
//!     agents.get_or_create(&id, || Agent { state: "new_problem".into(), current_attempt: 0 }).await?;
//!     agents.modify(&id, |agent| agent.current_attempt += 1).await?;
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cas;
mod codec;
mod error;
pub mod failover;
mod fallback;
mod id;
mod local_copies;
mod manager;
pub mod observe;
mod record;
mod session;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod token;
mod ttl;

pub use codec::{
    Codec, Compression, DEFAULT_COMPRESSION_MIN_BYTES, DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE,
    EncryptionKeys, EnvelopeInfo, FLAG_COMPRESSED, FLAG_ENCRYPTED, FORMAT_V1, HEADER_LEN,
    InvalidEncryptionKeys, KEY_LEN, MAGIC, MAX_KEY_ID_LEN, is_valid_key_id,
};
pub use error::{BoxError, Error, Result};
pub use failover::{
    ConflictResolver, FailoverBuilder, FailoverMode, FailoverStatus, FailoverStore, LatestWins,
    Resolution, WriteBackConflict,
};
pub use fallback::{FallbackPolicy, UnknownFallbackPolicy};
pub use id::{
    InvalidId, InvalidIdReason, MAX_ID_LEN, NoRandomness, RANDOM_ID_BITS, SessionId, is_id_byte,
    quote_for_humans,
};
pub use local_copies::DEFAULT_LOCAL_COPY_BYTES;
pub use manager::{DEFAULT_MAX_ATTEMPTS, ManagerBuilder, SessionManager};
pub use record::{
    Cursor, Meta, Page, Record, SessionInfo, Summarize, Summary, SummaryValue, Timestamp,
};
pub use session::Session;
pub use store::{Basis, Condition, Health, SessionStore, Write, WriteOutcome};
pub use token::{RECENT_TOKENS, RecentTokens, TOKEN_HEX_LEN, WriteToken};
pub use ttl::{InvalidTtl, Ttl};

// Re-exported so that backends implement the trait with the same macro version.
pub use async_trait::async_trait;
