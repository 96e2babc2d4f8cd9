//! Records shaped like a broker's queued QoS 1 messages, and the four measured scenarios.
//!
//! A key is a 16-byte client id followed by a big-endian u64 sequence number, so one
//! subscriber's queue is a contiguous key range in delivery order. A value is 148 bytes:
//! a 16-byte header, the topic with its 2-byte length and a 64-byte payload.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::stores::{BoxError, QueueStore, Record};

/// Number of offline subscribers whose queues the records are spread over.
const CLIENT_COUNT: u64 = 64;
const PAYLOAD_LEN: usize = 64;

/// Upper bound on commits in a time-bounded loop, in case the clock or the store misbehaves.
const MAX_COMMITS_PER_LOOP: u64 = 10_000_000;

/// Builds records in a fixed order: record `n` belongs to client `n % 64` with sequence `n / 64`.
pub struct RecordGenerator {
    next_index: u64,
    rng_state: u64,
}

impl RecordGenerator {
    pub fn new() -> Self {
        Self {
            next_index: 0,
            rng_state: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Returns the next `count` records.
    pub fn next_batch(&mut self, count: usize) -> Vec<Record> {
        (0..count).map(|_| self.next_record()).collect()
    }

    fn next_record(&mut self) -> Record {
        let index = self.next_index;
        self.next_index += 1;

        let client = index % CLIENT_COUNT;
        let sequence = index / CLIENT_COUNT;
        let client_id = format!("sensor-{client:09}");
        debug_assert_eq!(client_id.len(), 16);

        let mut key = Vec::with_capacity(24);
        key.extend_from_slice(client_id.as_bytes());
        key.extend_from_slice(&sequence.to_be_bytes());

        let topic = format!(
            "site-01/building-{:02}/floor-{:02}/room-{:03}/{client_id}/temperature",
            client % 8,
            client % 5,
            client
        );

        // Header: QoS, flags, packet id, message expiry interval (s), receive time (ms).
        let mut value = Vec::with_capacity(16 + 2 + topic.len() + PAYLOAD_LEN);
        value.push(1);
        value.push(0);
        value.extend_from_slice(&((index % 65_535) as u16 + 1).to_be_bytes());
        value.extend_from_slice(&3_600u32.to_be_bytes());
        value.extend_from_slice(&(1_700_000_000_000 + index).to_be_bytes());
        value.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        value.extend_from_slice(topic.as_bytes());

        // Pseudo-random payload bytes, so that fjall's default LZ4 compression gains nothing.
        // Real JSON payloads compress, so this is fjall's worst case for file size.
        for _ in 0..PAYLOAD_LEN / 8 {
            value.extend_from_slice(&self.next_random().to_le_bytes());
        }

        (key, value)
    }

    /// xorshift64: fast, deterministic filler, not for anything that needs randomness.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng_state = x;
        x
    }
}

/// Space that the files under `dir` take: allocated blocks, and the sum of file lengths.
#[derive(Clone, Copy)]
pub struct DiskUsage {
    pub allocated_bytes: u64,
    pub apparent_bytes: u64,
}

/// Sums the disk usage of every file under `dir`, like `du` and `du --apparent-size`.
pub fn disk_usage(dir: &Path) -> Result<DiskUsage, BoxError> {
    use std::os::unix::fs::MetadataExt;

    let mut usage = DiskUsage {
        allocated_bytes: 0,
        apparent_bytes: 0,
    };
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        if metadata.is_dir() {
            let inner = disk_usage(&entry.path())?;
            usage.allocated_bytes += inner.allocated_bytes;
            usage.apparent_bytes += inner.apparent_bytes;
        } else {
            // st_blocks counts 512-byte units whatever the file system's block size.
            usage.allocated_bytes += metadata.blocks() * 512;
            usage.apparent_bytes += metadata.len();
        }
    }
    Ok(usage)
}

/// Measures durable commits of one record each, for `duration`. Returns commits per second.
pub fn single_record_commits<S: QueueStore>(
    dir: &Path,
    duration: Duration,
) -> Result<f64, BoxError> {
    commit_loop::<S>(dir, duration, 1)
}

/// Measures durable commits of `batch_size` records each, for `duration`. Returns records per second.
pub fn group_commits<S: QueueStore>(
    dir: &Path,
    duration: Duration,
    batch_size: usize,
) -> Result<f64, BoxError> {
    let commits_per_second = commit_loop::<S>(dir, duration, batch_size)?;
    Ok(commits_per_second * batch_size as f64)
}

/// Commits batches of `batch_size` fresh records until `duration` has passed.
/// Returns commits per second. Record generation is outside the timed part.
fn commit_loop<S: QueueStore>(
    dir: &Path,
    duration: Duration,
    batch_size: usize,
) -> Result<f64, BoxError> {
    let mut store = S::open(dir)?;
    let mut generator = RecordGenerator::new();

    let mut commits = 0u64;
    let mut busy = Duration::ZERO;
    let started = Instant::now();
    while started.elapsed() < duration && commits < MAX_COMMITS_PER_LOOP {
        let batch = generator.next_batch(batch_size);
        let commit_started = Instant::now();
        store.insert_durable(&batch)?;
        busy += commit_started.elapsed();
        commits += 1;
    }

    Ok(commits as f64 / busy.as_secs_f64())
}

/// Result of the queue churn scenario.
pub struct ChurnResult {
    /// Disk usage with the store open, after each round has deleted all its records.
    pub after_round: Vec<DiskUsage>,
    /// Disk usage after the last round, once the store is closed.
    pub after_close: DiskUsage,
    /// Disk usage after reopening, running the store's manual compaction and closing again.
    pub after_manual_compaction: DiskUsage,
    /// Inserted records per second, over all rounds.
    pub insert_rate: f64,
    /// Deleted records per second, over all rounds.
    pub delete_rate: f64,
}

/// Fills the queues with `records` in durable commits of `batch_size`, then drains them
/// client by client in key order, also in durable commits of `batch_size`, `rounds` times.
/// Sequence numbers keep growing across rounds, as a broker's would.
pub fn queue_churn<S: QueueStore>(
    dir: &Path,
    records: usize,
    batch_size: usize,
    rounds: usize,
) -> Result<ChurnResult, BoxError> {
    let mut store = S::open(dir)?;
    let mut generator = RecordGenerator::new();
    let mut after_round = Vec::with_capacity(rounds);
    let mut insert_time = Duration::ZERO;
    let mut delete_time = Duration::ZERO;

    for round in 1..=rounds {
        let mut keys = Vec::with_capacity(records);
        let mut remaining = records;
        while remaining > 0 {
            let batch = generator.next_batch(remaining.min(batch_size));
            remaining -= batch.len();
            keys.extend(batch.iter().map(|(key, _)| key.clone()));

            let started = Instant::now();
            store.insert_durable(&batch)?;
            insert_time += started.elapsed();
        }

        // A subscriber drains its own queue in order, so delete in key order.
        keys.sort_unstable();
        for chunk in keys.chunks(batch_size) {
            let started = Instant::now();
            store.delete_durable(chunk)?;
            delete_time += started.elapsed();
        }

        let left = store.scan_all()?.records;
        if left != 0 {
            return Err(format!("{}: {left} records left after round {round}", S::NAME).into());
        }
        after_round.push(disk_usage(dir)?);
    }

    drop(store);
    let after_close = disk_usage(dir)?;

    let mut store = S::open(dir)?;
    store.compact()?;
    drop(store);
    let after_manual_compaction = disk_usage(dir)?;

    let total_records = (records * rounds) as f64;
    Ok(ChurnResult {
        after_round,
        after_close,
        after_manual_compaction,
        insert_rate: total_records / insert_time.as_secs_f64(),
        delete_rate: total_records / delete_time.as_secs_f64(),
    })
}

/// Time to open a closed store and read every record in key order, in milliseconds.
pub struct RecoveryResult {
    pub open_ms: f64,
    pub scan_ms: f64,
}

/// Writes `records` fresh records into the store in `dir`, in durable commits of `batch_size`.
pub fn fill<S: QueueStore>(dir: &Path, records: usize, batch_size: usize) -> Result<S, BoxError> {
    let mut store = S::open(dir)?;
    let mut generator = RecordGenerator::new();
    let mut remaining = records;
    while remaining > 0 {
        let batch = generator.next_batch(remaining.min(batch_size));
        remaining -= batch.len();
        store.insert_durable(&batch)?;
    }
    Ok(store)
}

/// Times opening the store in `dir` and reading every record in key order, and checks
/// that it contains `expected_records` records.
///
/// The files are still in the OS page cache, so this is a warm-cache open: it measures
/// the store's own recovery work, not cold disk reads.
pub fn reopen_and_scan<S: QueueStore>(
    dir: &Path,
    expected_records: usize,
) -> Result<RecoveryResult, BoxError> {
    let started = Instant::now();
    let store = S::open(dir)?;
    let opened = Instant::now();
    let summary = store.scan_all()?;
    let scanned = Instant::now();
    drop(store);

    if summary.records != expected_records as u64 {
        return Err(format!(
            "{}: recovered {} records, expected {expected_records}",
            S::NAME,
            summary.records
        )
        .into());
    }

    Ok(RecoveryResult {
        open_ms: (opened - started).as_secs_f64() * 1_000.0,
        scan_ms: (scanned - opened).as_secs_f64() * 1_000.0,
    })
}
