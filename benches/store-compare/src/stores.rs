//! The two embedded stores behind one small interface: durable batch writes,
//! durable batch deletes and a full scan in key order.
//!
//! Every write and delete call is durable when it returns. redb commits each
//! call as one write transaction with `Durability::Immediate` (`fdatasync`).
//! fjall writes each call as one `WriteBatch` and persists its journal with
//! `PersistMode::SyncAll` (`fsync`).

use std::path::{Path, PathBuf};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A key and its value, both already encoded.
pub type Record = (Vec<u8>, Vec<u8>);

/// Result of a full scan in key order.
pub struct ScanSummary {
    pub records: u64,
    pub bytes: u64,
}

/// A store under test, opened on its own directory.
pub trait QueueStore: Sized {
    const NAME: &'static str;

    /// Opens the store in `dir`, creating it when the directory is empty.
    fn open(dir: &Path) -> Result<Self, BoxError>;

    /// Writes all `records` in one commit and syncs it to disk.
    fn insert_durable(&mut self, records: &[Record]) -> Result<(), BoxError>;

    /// Deletes all `keys` in one commit and syncs it to disk.
    fn delete_durable(&mut self, keys: &[Vec<u8>]) -> Result<(), BoxError>;

    /// Reads every record in key order, and fails if the keys are not ascending.
    fn scan_all(&self) -> Result<ScanSummary, BoxError>;

    /// Runs the store's manual compaction and returns when it has finished.
    fn compact(&mut self) -> Result<(), BoxError>;
}

/// Checks that `key` sorts strictly after `previous`, then stores it as the new previous key.
fn check_ascending(previous: &mut Vec<u8>, key: &[u8], store: &str) -> Result<(), BoxError> {
    if !previous.is_empty() && key <= previous.as_slice() {
        return Err(format!("{store}: scan returned keys out of order").into());
    }
    previous.clear();
    previous.extend_from_slice(key);
    Ok(())
}

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("queue");

pub struct RedbStore {
    db: redb::Database,
}

impl QueueStore for RedbStore {
    const NAME: &'static str = "redb";

    fn open(dir: &Path) -> Result<Self, BoxError> {
        let path: PathBuf = dir.join("queue.redb");
        let db = redb::Database::create(path)?;
        Ok(Self { db })
    }

    fn insert_durable(&mut self, records: &[Record]) -> Result<(), BoxError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        {
            let mut table = txn.open_table(REDB_TABLE)?;
            for (key, value) in records {
                table.insert(key.as_slice(), value.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn delete_durable(&mut self, keys: &[Vec<u8>]) -> Result<(), BoxError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        {
            let mut table = txn.open_table(REDB_TABLE)?;
            for key in keys {
                table.remove(key.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn scan_all(&self) -> Result<ScanSummary, BoxError> {
        use redb::{ReadableDatabase, ReadableTable};

        let txn = self.db.begin_read()?;
        let table = match txn.open_table(REDB_TABLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                return Ok(ScanSummary {
                    records: 0,
                    bytes: 0,
                });
            }
            Err(err) => return Err(err.into()),
        };

        let mut summary = ScanSummary {
            records: 0,
            bytes: 0,
        };
        let mut previous = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            check_ascending(&mut previous, key.value(), Self::NAME)?;
            summary.records += 1;
            summary.bytes += (key.value().len() + value.value().len()) as u64;
        }
        Ok(summary)
    }

    fn compact(&mut self) -> Result<(), BoxError> {
        // compact() returns false once no further compaction is possible, so this loop ends.
        // The bound of 1,000 passes only guards against a store that never reports that.
        for _ in 0..1_000 {
            if !self.db.compact(redb::CompactionMode::Balanced)? {
                break;
            }
        }
        Ok(())
    }
}

pub struct FjallStore {
    // Field order is drop order: the keyspace handle goes before the database.
    queue: fjall::Keyspace,
    db: fjall::Database,
}

impl QueueStore for FjallStore {
    const NAME: &'static str = "fjall";

    fn open(dir: &Path) -> Result<Self, BoxError> {
        let db = fjall::Database::builder(dir).open()?;
        let queue = db.keyspace("queue", fjall::KeyspaceCreateOptions::default)?;
        Ok(Self { queue, db })
    }

    fn insert_durable(&mut self, records: &[Record]) -> Result<(), BoxError> {
        if let [(key, value)] = records {
            // A single record uses `Keyspace::insert` and `Database::persist`, as fjall's README shows.
            self.queue.insert(key.as_slice(), value.as_slice())?;
            self.db.persist(fjall::PersistMode::SyncAll)?;
            return Ok(());
        }

        let mut batch = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncAll));
        for (key, value) in records {
            batch.insert(&self.queue, key.as_slice(), value.as_slice());
        }
        batch.commit()?;
        Ok(())
    }

    fn delete_durable(&mut self, keys: &[Vec<u8>]) -> Result<(), BoxError> {
        let mut batch = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncAll));
        for key in keys {
            batch.remove(&self.queue, key.as_slice());
        }
        batch.commit()?;
        Ok(())
    }

    fn scan_all(&self) -> Result<ScanSummary, BoxError> {
        let mut summary = ScanSummary {
            records: 0,
            bytes: 0,
        };
        let mut previous = Vec::new();
        for guard in self.queue.iter() {
            let (key, value) = guard.into_inner()?;
            check_ascending(&mut previous, &key, Self::NAME)?;
            summary.records += 1;
            summary.bytes += (key.len() + value.len()) as u64;
        }
        Ok(summary)
    }

    fn compact(&mut self) -> Result<(), BoxError> {
        // NOTE: fjall 3.1 flushes and compacts in background threads and documents no manual
        // compaction. `rotate_memtable_and_wait` and `major_compact` are public but
        // `#[doc(hidden)]`: they are called here only to show what a forced compaction reaches.
        self.queue.rotate_memtable_and_wait()?;
        self.queue.major_compact()?;
        Ok(())
    }
}
