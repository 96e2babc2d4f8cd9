//! Counters of broker activity, read by logs and `$SYS` topics.

use std::sync::atomic::AtomicU64;

/// Process-wide counters; every field only grows, except `clients_connected`.
#[derive(Debug, Default)]
pub struct Stats {
    pub clients_connected: AtomicU64,
    pub clients_total: AtomicU64,
    pub connections_refused: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    /// Messages not queued for one subscriber because its queue was full.
    pub messages_dropped: AtomicU64,
    pub retained_refused: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
}
