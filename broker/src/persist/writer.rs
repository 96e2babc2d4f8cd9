//! The store's writer thread: applies batches in group commits.

use std::path::PathBuf;
use std::time::Instant;

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::mpsc;
use tracing::{debug, error, info};

use super::restore::{INCOMING, QUEUE, RETAINED, SESSIONS};
use super::{Batch, Op, PersistMode};

/// Batches taken into one commit at most in durable mode, so one commit stays short.
const MAX_BATCHES_PER_COMMIT: usize = 4096;
/// Commits between two compactions; compaction runs only when the writer is idle.
const COMMITS_PER_COMPACTION: u64 = 20_000;

pub(super) fn run(mut database: Database, path: PathBuf, mut rx: mpsc::UnboundedReceiver<Batch>, mode: PersistMode) {
    let mut commits: u64 = 0;
    let mut last_commit = Instant::now();
    while let Some(first) = rx.blocking_recv() {
        if let PersistMode::Relaxed(interval) = mode {
            let elapsed = last_commit.elapsed();
            if elapsed < interval {
                std::thread::sleep(interval - elapsed);
            }
        }
        // Relaxed mode commits once per interval, so it must take everything that waited,
        // or a publisher faster than one commit's worth per interval would grow the backlog
        // without end. Durable mode commits back to back and can bound each commit.
        let max_batches = match mode {
            PersistMode::Durable => MAX_BATCHES_PER_COMMIT,
            PersistMode::Relaxed(_) => usize::MAX,
        };
        let mut batches = vec![first];
        while batches.len() < max_batches {
            match rx.try_recv() {
                Ok(batch) => batches.push(batch),
                Err(_) => break,
            }
        }
        match commit(&database, &mut batches) {
            Ok(()) => {
                for batch in batches {
                    if let Some(done) = batch.done {
                        let _ = done.send(());
                    }
                }
            }
            // Dropping the senders tells every waiting connection that its write failed.
            Err(reason) => error!(store = %path.display(), "store write failed, acknowledgements withheld: {reason}"),
        }
        commits += 1;
        last_commit = Instant::now();
        if commits % COMMITS_PER_COMPACTION == 0 && rx.is_empty() {
            compact(&mut database, &path);
        }
    }
    compact(&mut database, &path);
    info!(store = %path.display(), "store closed");
}

fn commit(database: &Database, batches: &mut [Batch]) -> Result<(), String> {
    let mut transaction = database.begin_write().map_err(|e| e.to_string())?;
    transaction.set_durability(Durability::Immediate).map_err(|e| e.to_string())?;
    for batch in batches.iter_mut() {
        for op in batch.ops.drain(..) {
            apply(&transaction, op).map_err(|e| e.to_string())?;
        }
    }
    transaction.commit().map_err(|e| e.to_string())
}

fn apply(transaction: &WriteTransaction, op: Op) -> Result<(), redb::Error> {
    match op {
        Op::PutRetained { topic, record } => {
            transaction.open_table(RETAINED)?.insert(topic.as_ref(), record.as_slice())?;
        }
        Op::DeleteRetained { topic } => {
            transaction.open_table(RETAINED)?.remove(topic.as_ref())?;
        }
        Op::PutSession { client_id, record } => {
            transaction.open_table(SESSIONS)?.insert(client_id.as_ref(), record.as_slice())?;
        }
        Op::DeleteSession { client_id } => {
            let id = client_id.as_ref();
            transaction.open_table(SESSIONS)?.remove(id)?;
            transaction.open_table(INCOMING)?.remove(id)?;
            transaction.open_table(QUEUE)?.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
        }
        Op::PutQueued { client_id, seq, record } => {
            transaction.open_table(QUEUE)?.insert((client_id.as_ref(), seq), record.as_slice())?;
        }
        Op::DeleteQueued { client_id, seq } => {
            transaction.open_table(QUEUE)?.remove((client_id.as_ref(), seq))?;
        }
        Op::PutIncomingQos2 { client_id, record } => {
            let mut table = transaction.open_table(INCOMING)?;
            if record.len() <= 1 {
                table.remove(client_id.as_ref())?;
            } else {
                table.insert(client_id.as_ref(), record.as_slice())?;
            }
        }
    }
    Ok(())
}

/// Gives free pages at the end of the file back to the file system.
fn compact(database: &mut Database, path: &PathBuf) {
    let started = Instant::now();
    match database.compact(redb::CompactionMode::Balanced) {
        Ok(true) => debug!(store = %path.display(), took = ?started.elapsed(), "store compacted"),
        Ok(false) => {}
        Err(error) => error!(store = %path.display(), "store compaction failed: {error}"),
    }
}
