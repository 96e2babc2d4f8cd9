//! The writing side of a connection: a task that owns the socket's write half.
//!
//! The connection task never waits on a slow socket. It hands encoded packets to this task
//! and looks at [`Outbound::pending`] before taking more messages from the session queue;
//! so a client that does not read keeps its messages in its own queue, where the queue
//! limits apply, and holds up nobody else.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

/// Bytes waiting for the socket above which the connection stops taking queued messages.
pub const PENDING_HIGH_WATER: usize = 256 * 1024;

/// How long closing waits for the last packets (CONNACK refusal, DISCONNECT) to be written.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Handle of the writer task, held by the connection task.
#[derive(Debug)]
pub struct Outbound {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    pending: Arc<AtomicUsize>,
    /// Woken by the writer when pending bytes fall under [`PENDING_HIGH_WATER`].
    pub drained: Arc<Notify>,
    writer: tokio::task::JoinHandle<u64>,
}

impl Outbound {
    /// Starts the writer task on `sink`.
    pub fn start<W>(sink: W) -> Self
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let drained = Arc::new(Notify::new());
        let writer = tokio::spawn(write_loop(sink, rx, Arc::clone(&pending), Arc::clone(&drained)));
        Outbound { tx: Some(tx), pending, drained, writer }
    }

    /// Queues encoded bytes for the socket; returns false once the socket has failed.
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        let Some(tx) = &self.tx else { return false };
        let len = bytes.len();
        self.pending.fetch_add(len, Ordering::Relaxed);
        if tx.send(bytes).is_err() {
            self.pending.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Bytes handed over but not yet written to the socket.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn has_room(&self) -> bool {
        self.pending() < PENDING_HIGH_WATER
    }

    /// Returns whether the writer has stopped (the socket failed or was closed).
    pub fn is_closed(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.is_closed())
    }

    /// Writes what is pending, then closes the socket; returns the bytes written in all.
    pub async fn close(mut self) -> u64 {
        self.tx.take();
        match tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut self.writer).await {
            Ok(Ok(written)) => written,
            _ => {
                self.writer.abort();
                0
            }
        }
    }
}

async fn write_loop<W>(
    mut sink: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    pending: Arc<AtomicUsize>,
    drained: Arc<Notify>,
) -> u64
where
    W: AsyncWrite + Unpin,
{
    let mut written: u64 = 0;
    // Grown on demand: an idle connection should not hold a 64 KiB buffer.
    let mut batch: Vec<u8> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        // Coalesce what is already waiting into one write, up to 64 KiB.
        while batch.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if sink.write_all(&batch).await.is_err() || sink.flush().await.is_err() {
            rx.close();
            pending.store(0, Ordering::Relaxed);
            drained.notify_one();
            return written;
        }
        written += batch.len() as u64;
        let before = pending.fetch_sub(batch.len(), Ordering::Relaxed);
        if before >= PENDING_HIGH_WATER && before - batch.len() < PENDING_HIGH_WATER {
            drained.notify_one();
        }
    }
    let _ = sink.shutdown().await;
    written
}
