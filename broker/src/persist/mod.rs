//! Durable state: retained messages, persistent sessions and their queued QoS 1/2 messages,
//! kept in one redb file in the data directory.
//!
//! Every change goes to a writer thread as a batch of operations. In durable mode the
//! writer commits with fsync and signals each batch once it is on disk; the connection
//! sends PUBACK, PUBREC or SUBACK only then, so what the broker acknowledged survives a
//! crash. The writer takes every batch waiting when it starts a commit (group commit), so
//! one fsync covers many publishers. In relaxed mode the writer commits at most once per
//! interval and nobody waits, which spares SD cards at the cost of the last interval.
//!
//! The in-memory state stays the one the broker reads; the store is only written while
//! running and read once at start.

mod record;
mod restore;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

pub use record::{
    encode_message, encode_packet_ids, encode_queue_entry, encode_session, Clock, QueueEntry, RecordError, SessionRecord,
};
pub use restore::{check, repair, CheckReport, RepairReport, RestoredSession, RestoredState};

/// File name of the store inside the data directory.
pub const STORE_FILE: &str = "store.redb";

/// When writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistMode {
    /// Each acknowledgement waits for the fsync of the batch that contains it.
    Durable,
    /// Written in the background at most once per interval; acknowledgements do not wait.
    Relaxed(Duration),
}

/// Error of opening or reading the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path} cannot be opened: {reason}; run `lpiotia-mqtt store check` for details and `lpiotia-mqtt store repair` to move it aside and keep what is readable")]
    Open { path: PathBuf, reason: String },
    #[error("store {path} holds a corrupt record in table {table} (key {key}): {reason}; run `lpiotia-mqtt store repair` to move it aside and keep what is readable")]
    Corrupt { path: PathBuf, table: &'static str, key: String, reason: String },
    #[error("store {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// One change to the stored state.
#[derive(Debug)]
pub enum Op {
    PutRetained { topic: Arc<str>, record: Vec<u8> },
    DeleteRetained { topic: Arc<str> },
    PutSession { client_id: Arc<str>, record: Vec<u8> },
    /// Deletes the session with its queue and incoming packet ids.
    DeleteSession { client_id: Arc<str> },
    PutQueued { client_id: Arc<str>, seq: u64, record: Vec<u8> },
    DeleteQueued { client_id: Arc<str>, seq: u64 },
    PutIncomingQos2 { client_id: Arc<str>, record: Vec<u8> },
}

struct Batch {
    ops: Vec<Op>,
    done: Option<oneshot::Sender<()>>,
}

/// Handle of the store, shared by the broker and every connection.
#[derive(Debug)]
pub struct Store {
    tx: Mutex<Option<mpsc::UnboundedSender<Batch>>>,
    mode: PersistMode,
    path: PathBuf,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Batch({} ops)", self.ops.len())
    }
}

impl Store {
    /// Opens (or creates) the store in `data_dir`, reads its content and starts the writer.
    pub fn open(data_dir: &Path, mode: PersistMode) -> Result<(Arc<Store>, RestoredState), StoreError> {
        let path = data_dir.join(STORE_FILE);
        let (database, restored, purge) = restore::open_and_read(&path)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_path = path.clone();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::run(database, writer_path, rx, mode))
            .map_err(|error| StoreError::Io { path: path.clone(), reason: format!("cannot start the writer thread: {error}") })?;
        let store = Arc::new(Store { tx: Mutex::new(Some(tx)), mode, path, writer: Mutex::new(Some(writer)) });
        if !purge.is_empty() {
            store.submit_background(purge);
        }
        Ok((store, restored))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> PersistMode {
        self.mode
    }

    /// Queues `ops`; in durable mode returns a receiver that completes once they are on disk
    /// (and fails if the write failed).
    pub fn submit(&self, ops: Vec<Op>) -> Option<oneshot::Receiver<()>> {
        if ops.is_empty() {
            return None;
        }
        let (done, receiver) = match self.mode {
            PersistMode::Durable => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            PersistMode::Relaxed(_) => (None, None),
        };
        if let Some(tx) = self.tx.lock().as_ref() {
            let _ = tx.send(Batch { ops, done });
        }
        receiver
    }

    /// Queues `ops` without waiting for them, in either mode.
    pub fn submit_background(&self, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        if let Some(tx) = self.tx.lock().as_ref() {
            let _ = tx.send(Batch { ops, done: None });
        }
    }

    /// Writes everything queued and stops the writer (graceful shutdown).
    pub fn close(&self) {
        self.tx.lock().take();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}
