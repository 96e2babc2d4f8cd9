//! Reading the store at start, and the `store check` / `store repair` operations.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::record::{self, Clock, QueueEntry, SessionRecord};
use super::{Op, StoreError};
use crate::message::Message;
use crate::session::SessionExpiry;

pub(super) const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
pub(super) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
pub(super) const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
pub(super) const INCOMING: TableDefinition<&str, &[u8]> = TableDefinition::new("incoming_qos2");

/// A persistent session read back from the store.
#[derive(Debug)]
pub struct RestoredSession {
    pub client_id: String,
    pub record: SessionRecord,
    /// Queue entries in the order they were queued, with their sequence numbers.
    pub queue: Vec<(u64, QueueEntry)>,
    pub incoming_qos2: Vec<u16>,
}

/// Everything the store held, minus what expired while the broker was down.
#[derive(Debug, Default)]
pub struct RestoredState {
    pub retained: Vec<Message>,
    pub sessions: Vec<RestoredSession>,
}

fn open_error(path: &Path, error: impl std::fmt::Display) -> StoreError {
    StoreError::Open { path: path.to_owned(), reason: error.to_string() }
}

/// Opens or creates the store file (mode 0600), reads it, and returns the operations that
/// delete what has expired.
pub(super) fn open_and_read(path: &Path) -> Result<(Database, RestoredState, Vec<Op>), StoreError> {
    let mut database = Database::create(path).map_err(|error| open_error(path, error))?;
    // redb gives free pages back to the file system only when compacted, and compaction
    // needs the database to itself: the start is the moment for it.
    database.compact(redb::CompactionMode::Balanced).map_err(|error| open_error(path, error))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| StoreError::Io { path: path.to_owned(), reason: format!("cannot set mode 0600: {error}") })?;
    ensure_tables(&database).map_err(|error| open_error(path, error))?;
    let (state, purge) = read_all(&database, path, false)?.into_state();
    Ok((database, state, purge))
}

fn ensure_tables(database: &Database) -> Result<(), redb::Error> {
    let transaction = database.begin_write()?;
    transaction.open_table(RETAINED)?;
    transaction.open_table(SESSIONS)?;
    transaction.open_table(QUEUE)?;
    transaction.open_table(INCOMING)?;
    transaction.commit()?;
    Ok(())
}

/// Content found by a full read.
struct ReadResult {
    state: RestoredState,
    purge: Vec<Op>,
    /// Records that could not be decoded (only collected when salvaging).
    skipped: usize,
}

impl ReadResult {
    fn into_state(self) -> (RestoredState, Vec<Op>) {
        (self.state, self.purge)
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Reads every table. With `salvage`, undecodable records are counted and skipped instead
/// of failing the read.
fn read_all(database: &Database, path: &Path, salvage: bool) -> Result<ReadResult, StoreError> {
    let clock = Clock::now();
    let now = std::time::Instant::now();
    let now_ms = now_unix_ms();
    let fail = |table: &'static str, key: String, reason: String| StoreError::Corrupt { path: path.to_owned(), table, key, reason };
    let redb_error = |error: &dyn std::fmt::Display| open_error(path, error);
    let transaction = database.begin_read().map_err(|e| redb_error(&e))?;
    let mut result = ReadResult { state: RestoredState::default(), purge: Vec::new(), skipped: 0 };

    let retained = transaction.open_table(RETAINED).map_err(|e| redb_error(&e))?;
    for entry in retained.iter().map_err(|e| redb_error(&e))? {
        let (key, value) = entry.map_err(|e| redb_error(&e))?;
        match record::decode_message(value.value(), &clock) {
            Ok(message) if message.is_expired(now) => {
                result.purge.push(Op::DeleteRetained { topic: Arc::from(key.value()) });
            }
            Ok(message) => result.state.retained.push(message),
            Err(_) if salvage => result.skipped += 1,
            Err(error) => return Err(fail("retained", key.value().to_owned(), error.to_string())),
        }
    }

    let incoming_table = transaction.open_table(INCOMING).map_err(|e| redb_error(&e))?;
    let queue_table = transaction.open_table(QUEUE).map_err(|e| redb_error(&e))?;
    let sessions = transaction.open_table(SESSIONS).map_err(|e| redb_error(&e))?;
    for entry in sessions.iter().map_err(|e| redb_error(&e))? {
        let (key, value) = entry.map_err(|e| redb_error(&e))?;
        let client_id = key.value().to_owned();
        let record = match record::decode_session(value.value()) {
            Ok(record) => record,
            Err(_) if salvage => {
                result.skipped += 1;
                continue;
            }
            Err(error) => return Err(fail("sessions", client_id, error.to_string())),
        };
        if session_expired(&record, now_ms) {
            result.purge.push(Op::DeleteSession { client_id: Arc::from(client_id.as_str()) });
            continue;
        }
        let mut queue = Vec::new();
        let range = queue_table.range((client_id.as_str(), 0)..=(client_id.as_str(), u64::MAX)).map_err(|e| redb_error(&e))?;
        for item in range {
            let (key, value) = item.map_err(|e| redb_error(&e))?;
            let (_, seq) = key.value();
            match record::decode_queue_entry(value.value(), &clock) {
                Ok(entry) if entry.delivery.message.is_expired(now) => {
                    result.purge.push(Op::DeleteQueued { client_id: Arc::from(client_id.as_str()), seq });
                }
                Ok(entry) => queue.push((seq, entry)),
                Err(_) if salvage => result.skipped += 1,
                Err(error) => return Err(fail("queue", format!("{client_id}/{seq}"), error.to_string())),
            }
        }
        let incoming_qos2 = match incoming_table.get(client_id.as_str()).map_err(|e| redb_error(&e))? {
            None => Vec::new(),
            Some(value) => match record::decode_packet_ids(value.value()) {
                Ok(ids) => ids,
                Err(_) if salvage => {
                    result.skipped += 1;
                    Vec::new()
                }
                Err(error) => return Err(fail("incoming_qos2", client_id, error.to_string())),
            },
        };
        result.state.sessions.push(RestoredSession { client_id, record, queue, incoming_qos2 });
    }
    Ok(result)
}

fn session_expired(record: &SessionRecord, now_ms: u64) -> bool {
    match record.expiry {
        SessionExpiry::OnDisconnect => true,
        SessionExpiry::Never => false,
        SessionExpiry::After(delay) => {
            record.disconnected_at_ms != 0 && record.disconnected_at_ms + delay.as_millis() as u64 <= now_ms
        }
    }
}

/// Summary of a store read by `store check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub retained: usize,
    pub sessions: usize,
    pub queued: usize,
}

/// Opens the store without creating it, verifies its checksums and decodes every record.
pub fn check(path: &Path) -> Result<CheckReport, StoreError> {
    if !path.exists() {
        return Err(StoreError::Io { path: path.to_owned(), reason: "no such file".into() });
    }
    let mut database = Database::open(path).map_err(|error| open_error(path, error))?;
    match database.check_integrity() {
        Ok(true) => {}
        Ok(false) => return Err(open_error(path, "integrity check failed and the file was repaired in place; check again")),
        Err(error) => return Err(open_error(path, error)),
    }
    let result = read_all(&database, path, false)?;
    Ok(CheckReport {
        retained: result.state.retained.len(),
        sessions: result.state.sessions.len(),
        queued: result.state.sessions.iter().map(|s| s.queue.len()).sum(),
    })
}

/// Outcome of `store repair`.
#[derive(Debug, Clone)]
pub struct RepairReport {
    /// New path of the damaged file, which is never deleted.
    pub moved_to: PathBuf,
    pub retained: usize,
    pub sessions: usize,
    pub queued: usize,
    /// Records that could not be read and were left behind.
    pub skipped: usize,
    /// Set when the damaged file could not be opened at all; the new store is empty.
    pub unreadable: Option<String>,
}

/// Moves a damaged store aside and writes a new one with every record that still reads.
pub fn repair(path: &Path) -> Result<RepairReport, StoreError> {
    let io = |reason: String| StoreError::Io { path: path.to_owned(), reason };
    let moved_to = path.with_extension(format!("redb.damaged-{}", now_unix_ms() / 1000));
    std::fs::rename(path, &moved_to).map_err(|e| io(format!("cannot move it to {}: {e}", moved_to.display())))?;
    // Work on a copy, so that the file set aside stays exactly as it was found.
    let scratch = path.with_extension("redb.salvage");
    std::fs::copy(&moved_to, &scratch).map_err(|e| io(format!("cannot copy {}: {e}", moved_to.display())))?;
    let salvaged = Database::open(&scratch)
        .map_err(|error| error.to_string())
        .and_then(|database| read_all(&database, &scratch, true).map_err(|error| error.to_string()));
    let _ = std::fs::remove_file(&scratch);

    let (database, _, _) = open_and_read(path)?;
    let mut report = RepairReport { moved_to, retained: 0, sessions: 0, queued: 0, skipped: 0, unreadable: None };
    let result = match salvaged {
        Ok(result) => result,
        Err(reason) => {
            report.unreadable = Some(reason);
            return Ok(report);
        }
    };
    let clock = Clock::now();
    let transaction = database.begin_write().map_err(|e| io(e.to_string()))?;
    {
        let mut retained = transaction.open_table(RETAINED).map_err(|e| io(e.to_string()))?;
        for message in &result.state.retained {
            let bytes = record::encode_message(message, &clock);
            retained.insert(message.topic.as_ref(), bytes.as_slice()).map_err(|e| io(e.to_string()))?;
            report.retained += 1;
        }
        let mut sessions = transaction.open_table(SESSIONS).map_err(|e| io(e.to_string()))?;
        let mut queue = transaction.open_table(QUEUE).map_err(|e| io(e.to_string()))?;
        let mut incoming = transaction.open_table(INCOMING).map_err(|e| io(e.to_string()))?;
        for session in &result.state.sessions {
            let id = session.client_id.as_str();
            sessions.insert(id, record::encode_session(&session.record).as_slice()).map_err(|e| io(e.to_string()))?;
            for (seq, entry) in &session.queue {
                let bytes = record::encode_queue_entry(entry, &clock);
                queue.insert((id, *seq), bytes.as_slice()).map_err(|e| io(e.to_string()))?;
                report.queued += 1;
            }
            if !session.incoming_qos2.is_empty() {
                let bytes = record::encode_packet_ids(&session.incoming_qos2);
                incoming.insert(id, bytes.as_slice()).map_err(|e| io(e.to_string()))?;
            }
            report.sessions += 1;
        }
    }
    transaction.commit().map_err(|e| io(e.to_string()))?;
    report.skipped = result.skipped;
    Ok(report)
}
