//! Counters of broker activity, the table of connected clients and recent refusals, read by
//! the logs and the `$SYS` topics.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

/// Refusals kept for `$SYS/broker/refusals/recent`.
const RECENT_REFUSALS: usize = 20;

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
    /// Connected clients by connection id.
    clients: Mutex<HashMap<u64, Arc<ClientRecord>>>,
    next_connection_id: AtomicU64,
    refusals: Mutex<VecDeque<Refusal>>,
}

/// One connected client, as shown by `$SYS/broker/clients/list`.
#[derive(Debug)]
pub struct ClientRecord {
    pub client_id: String,
    pub username: String,
    pub peer: SocketAddr,
    pub listener: String,
    pub protocol: &'static str,
    pub connected_at: SystemTime,
    /// PUBLISH packets received from this client.
    pub messages_in: AtomicU64,
    /// PUBLISH packets sent to this client.
    pub messages_out: AtomicU64,
}

/// A refused connection attempt.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub at: SystemTime,
    pub listener: String,
    pub peer: SocketAddr,
    pub reason: String,
}

impl Stats {
    /// Adds a connected client; returns the id to remove it with.
    pub fn register_client(&self, record: Arc<ClientRecord>) -> u64 {
        let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
        self.clients.lock().insert(id, record);
        id
    }

    pub fn unregister_client(&self, id: u64) {
        self.clients.lock().remove(&id);
    }

    /// Returns the connected clients, oldest connection first.
    pub fn clients(&self) -> Vec<Arc<ClientRecord>> {
        let mut clients: Vec<Arc<ClientRecord>> = self.clients.lock().values().cloned().collect();
        clients.sort_by_key(|client| client.connected_at);
        clients
    }

    /// Counts a refused connection and keeps it among the recent ones.
    pub fn record_refusal(&self, listener: &str, peer: SocketAddr, reason: &str) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
        let mut refusals = self.refusals.lock();
        if refusals.len() == RECENT_REFUSALS {
            refusals.pop_front();
        }
        refusals.push_back(Refusal { at: SystemTime::now(), listener: listener.to_owned(), peer, reason: reason.to_owned() });
    }

    /// Returns the recent refusals, oldest first.
    pub fn recent_refusals(&self) -> Vec<Refusal> {
        self.refusals.lock().iter().cloned().collect()
    }
}
