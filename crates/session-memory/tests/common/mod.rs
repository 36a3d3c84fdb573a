//! A memory store behind `session_core::testing::switch::Switch`: the primary whose outages
//! the failover tests turn on and off, and the memory store itself, for what another
//! instance (or a restart) does to it directly.

use std::{ops::Deref, sync::Arc, time::Duration};

use session_core::{
    SessionStore,
    testing::switch::{Fault, Switch},
};
use session_memory::MemoryStore;

pub(crate) const UP: Fault = Fault::None;
pub(crate) const DOWN: Fault = Fault::Down;
pub(crate) const LOSE_REPLIES: Fault = Fault::LoseReplies;
#[allow(dead_code)] // not every test file refuses credentials
pub(crate) const REFUSES: Fault = Fault::RefuseCredentials;

pub(crate) struct Primary {
    /// What the store under test talks to.
    pub(crate) switch: Arc<Switch>,
    /// The store behind the switch.
    pub(crate) inner: MemoryStore,
}

impl Primary {
    pub(crate) fn new() -> Self {
        let inner = MemoryStore::new();
        Self {
            switch: Switch::new(Arc::new(inner.clone()), "switch"),
            inner,
        }
    }

    /// The switch as a store.
    pub(crate) fn store(&self) -> Arc<dyn SessionStore> {
        self.switch.clone()
    }

    pub(crate) fn delay_writes_ms(&self, ms: u64) {
        self.switch.delay_writes(Duration::from_millis(ms));
    }
}

impl Deref for Primary {
    type Target = Switch;
    fn deref(&self) -> &Switch {
        &self.switch
    }
}
