//! [`Switch`]: a store in front of another whose faults a test turns on and off, as the store
//! trait sees them: refused connections, lost replies, refused credentials, a server out of
//! memory, slow writes and reads. For the rules of stores that react to a primary's faults
//! (the run-time fallback, a health endpoint); the faults of a real server are tested with
//! real servers.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;

use crate::{
    Cursor, Error, Page, Record, Result, SessionId, SessionStore, Ttl, Write, WriteOutcome,
};

/// What a [`Switch`] does to the calls it passes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum Fault {
    /// Nothing: every call goes through.
    None,
    /// Nothing answers: every call fails as a refused connection does (`Unavailable`),
    /// and nothing reaches the store behind.
    Down,
    /// Writes are applied, then their reply is lost and cannot be resolved
    /// (`OutcomeUnknown`); other calls go through.
    LoseReplies,
    /// The server refuses the credentials (`Auth`): a configuration error, not an outage.
    RefuseCredentials,
    /// Reads work; writes are refused as Redis refuses them at `maxmemory` with
    /// `noeviction` (`OutOfMemory`), and nothing is written.
    OutOfMemory,
}

impl Fault {
    fn from_u8(n: u8) -> Self {
        [
            Self::None,
            Self::Down,
            Self::LoseReplies,
            Self::RefuseCredentials,
            Self::OutOfMemory,
        ]
        .get(usize::from(n))
        .copied()
        .unwrap_or(Self::None)
    }
}

/// A store in front of `inner` that fails as [`set`](Self::set) says, and can delay writes
/// and the next read.
#[derive(Debug)]
pub struct Switch {
    inner: Arc<dyn SessionStore>,
    backend: &'static str,
    fault: AtomicU8,
    write_delay_ms: AtomicU64,
    next_load_delay_ms: AtomicU64,
}

impl Switch {
    /// A switch in front of `inner`, reporting `backend` as its name, with no fault.
    pub fn new(inner: Arc<dyn SessionStore>, backend: &'static str) -> Arc<Self> {
        Arc::new(Self {
            inner,
            backend,
            fault: AtomicU8::new(Fault::None as u8),
            write_delay_ms: AtomicU64::new(0),
            next_load_delay_ms: AtomicU64::new(0),
        })
    }

    /// The store behind the switch (another instance reaching the server directly).
    pub fn inner(&self) -> &Arc<dyn SessionStore> {
        &self.inner
    }

    /// Turns `fault` on (`Fault::None`: off).
    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// Every write waits this long after passing the switch, then goes on (whatever the
    /// switch says by then: a write under way when the server goes down still lands).
    pub fn delay_writes(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.write_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The next read is answered this long after it was read from the store behind.
    pub fn delay_next_load(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.next_load_delay_ms.store(ms, Ordering::SeqCst);
    }

    fn fault(&self) -> Fault {
        Fault::from_u8(self.fault.load(Ordering::SeqCst))
    }

    fn gate(&self) -> Result<()> {
        match self.fault() {
            Fault::Down => Err(Error::Unavailable {
                backend: self.backend,
                reason: "connection refused".into(),
                source: None,
            }),
            Fault::RefuseCredentials => Err(Error::Auth {
                backend: self.backend,
                reason: "WRONGPASS invalid username-password pair".into(),
            }),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl SessionStore for Switch {
    fn backend(&self) -> &'static str {
        self.backend
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        self.gate()?;
        let record = self.inner.load(id).await;
        let delay = self.next_load_delay_ms.swap(0, Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        record
    }

    async fn write(&self, id: &SessionId, write: Write) -> Result<WriteOutcome> {
        self.gate()?;
        if self.fault() == Fault::OutOfMemory {
            return Err(Error::OutOfMemory {
                backend: self.backend,
                reason: "OOM command not allowed when used memory > 'maxmemory'.".into(),
            });
        }
        let delay = self.write_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let outcome = self.inner.write(id, write).await?;
        if self.fault() == Fault::LoseReplies {
            return Err(Error::OutcomeUnknown {
                id: id.clone(),
                backend: self.backend,
                reason: "the reply was lost".into(),
            });
        }
        Ok(outcome)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.gate()?;
        self.inner.delete(id).await
    }

    async fn touch(&self, id: &SessionId, ttl: Ttl) -> Result<bool> {
        self.gate()?;
        self.inner.touch(id, ttl).await
    }

    async fn list_page(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        self.gate()?;
        self.inner.list_page(cursor, limit).await
    }

    async fn count(&self) -> Result<u64> {
        self.gate()?;
        self.inner.count().await
    }

    async fn ping(&self) -> Result<()> {
        self.gate()
    }
}
