//! Sessions: what the broker keeps for a client id between and during its connections.
//!
//! A session holds the client's subscriptions, the queue of messages waiting to be sent, the
//! outgoing QoS 1/2 messages in flight and the incoming QoS 2 packet ids not yet released.
//! At most one connection owns a session at a time: a new connection with the same client
//! id cancels the owner and waits for the `attach` lock, so the old connection has finished
//! with the session before the new one resumes it (takeover).
//!
//! Memory is bounded per session (message count and bytes) and globally ([`QueueMemory`]).
//! A message that meets a full queue is dropped for this session only and counted.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_protocol_core::mqtt::packet::Qos;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::message::Delivery;
use crate::router::SubscriptionOptions;
use crate::topic::SubscriptionFilter;

/// Minimum time between two "dropped" warnings for one session.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Memory held by all session queues together, and its limit.
#[derive(Debug)]
pub struct QueueMemory {
    used: AtomicUsize,
    limit: usize,
    /// Woken when usage falls back under the limit, so paused publishers read again.
    pub released: Notify,
}

impl QueueMemory {
    pub fn new(limit: usize) -> Self {
        QueueMemory { used: AtomicUsize::new(0), limit, released: Notify::new() }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Returns whether publishers must pause because queues hold more than the limit.
    pub fn is_over_limit(&self) -> bool {
        self.used() > self.limit
    }

    fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Ordering::Relaxed);
        if before > self.limit && before - bytes <= self.limit {
            self.released.notify_waiters();
        }
    }
}

/// Queue limits of one session.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
}

/// How long a session outlives its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionExpiry {
    /// Ends when the connection closes (3.1.1 clean session, v5 expiry 0).
    OnDisconnect,
    /// Kept this many seconds after the connection closes.
    After(Duration),
    /// Kept until a clean start ends it: MQTT 3.1.1 clean session 0, or MQTT 5.0 expiry 0xFFFFFFFF.
    Never,
}

impl SessionExpiry {
    /// Maps a v5 Session Expiry Interval in seconds.
    pub fn from_interval(secs: u32) -> Self {
        match secs {
            0 => SessionExpiry::OnDisconnect,
            u32::MAX => SessionExpiry::Never,
            secs => SessionExpiry::After(Duration::from_secs(u64::from(secs))),
        }
    }
}

/// Stage of an outgoing QoS 1/2 message in its acknowledgement flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingStage {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    AwaitingAck,
    /// PUBREL sent; waiting for PUBCOMP.
    AwaitingPubcomp,
}

/// An outgoing QoS 1/2 message not yet acknowledged.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub delivery: Delivery,
    pub stage: OutgoingStage,
}

/// Result of offering a message to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    Queued,
    /// Not queued: QoS 0 for an offline session (as Mosquitto does by default).
    Skipped,
    /// Not queued: the session's queue is full; counted as a drop.
    Dropped,
}

/// The mutable part of a session, behind its lock.
#[derive(Debug)]
pub struct SessionState {
    pub queue: VecDeque<Delivery>,
    queued_bytes: usize,
    pub inflight: BTreeMap<u16, Outgoing>,
    last_packet_id: u16,
    /// Incoming QoS 2 packet ids received but not yet released by PUBREL.
    pub incoming_qos2: HashSet<u16>,
    /// Subscriptions by their full filter text (including any `$share/GROUP/` prefix).
    pub subscriptions: HashMap<String, (SubscriptionFilter, SubscriptionOptions)>,
    /// Username of the client attached last (None: anonymous), for ACL checks of its
    /// subscriptions when the ACL file is reloaded.
    pub username: Option<String>,
    pub expiry: SessionExpiry,
    pub limits: QueueLimits,
    /// Cancels the connection that owns the session; `None` while offline.
    owner: Option<CancellationToken>,
    /// Increased on every attach, so delayed actions (will, expiry) can tell if the client came back.
    pub generation: u64,
    /// Set once the session has ended; an ended session takes no more messages.
    pub ended: bool,
    /// Next sequence number for a queue entry written to the store.
    pub next_seq: u64,
    /// When the last connection closed (Unix ms), for session expiry across restarts.
    pub disconnected_at_ms: u64,
    dropped_since_log: u64,
    last_drop_log: Option<Instant>,
}

/// A session, shared by the router, the session table and the owning connection.
#[derive(Debug)]
pub struct Session {
    /// Unique for the life of the process; never reused, unlike the client id.
    pub id: u64,
    pub client_id: Arc<str>,
    state: Mutex<SessionState>,
    /// Woken when a message is queued or the session must be looked at again.
    pub wake: Notify,
    /// Held by the owning connection for as long as it uses the session.
    pub attach: Arc<tokio::sync::Mutex<()>>,
    online: AtomicBool,
    /// Messages dropped because the queue was full, over the session's life.
    pub dropped: AtomicU64,
    memory: Arc<QueueMemory>,
}

impl Session {
    pub fn new(id: u64, client_id: Arc<str>, limits: QueueLimits, memory: Arc<QueueMemory>) -> Self {
        Session {
            id,
            client_id,
            state: Mutex::new(SessionState {
                queue: VecDeque::new(),
                queued_bytes: 0,
                inflight: BTreeMap::new(),
                last_packet_id: 0,
                incoming_qos2: HashSet::new(),
                subscriptions: HashMap::new(),
                username: None,
                expiry: SessionExpiry::OnDisconnect,
                limits,
                owner: None,
                generation: 0,
                ended: false,
                next_seq: 1,
                disconnected_at_ms: 0,
                dropped_since_log: 0,
                last_drop_log: None,
            }),
            wake: Notify::new(),
            attach: Arc::new(tokio::sync::Mutex::new(())),
            online: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            memory,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock()
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    /// Cancels the connection that owns this session, if any (takeover).
    pub fn kick_owner(&self) {
        if let Some(owner) = self.lock().owner.take() {
            owner.cancel();
        }
    }

    /// Marks the session owned by a new connection; returns the new generation.
    pub fn set_owner(&self, token: CancellationToken, limits: QueueLimits) -> u64 {
        let mut state = self.lock();
        state.owner = Some(token);
        state.limits = limits;
        state.generation += 1;
        self.online.store(true, Ordering::Relaxed);
        state.generation
    }

    /// Marks the session offline if `generation` still owns it; returns whether it did.
    pub fn release_owner(&self, generation: u64) -> bool {
        let mut state = self.lock();
        if state.generation != generation {
            return false;
        }
        state.owner = None;
        self.online.store(false, Ordering::Relaxed);
        true
    }

    /// Offers a message to this session's queue.
    pub fn enqueue(&self, delivery: Delivery) -> EnqueueOutcome {
        let mut state = self.lock();
        if state.ended {
            return EnqueueOutcome::Skipped;
        }
        if delivery.qos == Qos::AtMostOnce && !self.is_online() {
            return EnqueueOutcome::Skipped;
        }
        let cost = delivery.message.cost();
        let full = state.queue.len() >= state.limits.max_messages
            || state.queued_bytes + cost > state.limits.max_bytes;
        if full {
            self.record_drop(&mut state);
            return EnqueueOutcome::Dropped;
        }
        state.queued_bytes += cost;
        state.queue.push_back(delivery);
        drop(state);
        self.memory.add(cost);
        self.wake.notify_one();
        EnqueueOutcome::Queued
    }

    fn record_drop(&self, state: &mut SessionState) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        state.dropped_since_log += 1;
        let now = Instant::now();
        let due = state.last_drop_log.is_none_or(|last| now.duration_since(last) >= DROP_LOG_INTERVAL);
        if due {
            warn!(
                client_id = %self.client_id,
                dropped = state.dropped_since_log,
                dropped_total = total,
                queued = state.queue.len(),
                queued_bytes = state.queued_bytes,
                "queue full, messages dropped for this client"
            );
            state.dropped_since_log = 0;
            state.last_drop_log = Some(now);
        }
    }

    /// Puts a message taken with [`SessionState::pop`] back at the head of the queue.
    pub fn requeue_front(&self, state: &mut SessionState, delivery: Delivery) {
        let cost = delivery.message.cost();
        state.queued_bytes += cost;
        state.queue.push_front(delivery);
        self.memory.add(cost);
    }

    /// Appends a message restored from the store to the queue, ignoring the limits.
    pub fn requeue_back(&self, state: &mut SessionState, delivery: Delivery) {
        let cost = delivery.message.cost();
        state.queued_bytes += cost;
        state.queue.push_back(delivery);
        self.memory.add(cost);
    }

    /// Takes the next queued message.
    pub fn pop(&self, state: &mut SessionState) -> Option<Delivery> {
        let delivery = state.queue.pop_front()?;
        let cost = delivery.message.cost();
        state.queued_bytes -= cost;
        self.memory.sub(cost);
        Some(delivery)
    }

    /// Empties the queue and in-flight messages (clean start, end of session).
    pub fn clear_messages(&self, state: &mut SessionState) {
        let bytes = state.queued_bytes;
        state.queue.clear();
        state.queued_bytes = 0;
        state.inflight.clear();
        state.incoming_qos2.clear();
        self.memory.sub(bytes);
    }
}

/// Returns the packet id of a stored queue entry, derived from its sequence number.
///
/// A QoS 2 message must keep its packet id across a crash, or the client would take the
/// PUBLISH sent again for a new message and deliver it twice. Deriving the id from the
/// stored sequence number gives the same id after a restart without a write per send.
pub fn packet_id_for_seq(seq: u64) -> u16 {
    ((seq - 1) % u64::from(u16::MAX) + 1) as u16
}

impl SessionState {
    /// Returns whether the session outlives its connection, and so is written to the store.
    pub fn is_persistent(&self) -> bool {
        self.expiry != SessionExpiry::OnDisconnect
    }

    /// Allocates the sequence number of a new stored queue entry.
    pub fn allocate_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Allocates a packet id not used by any message in flight, for messages that are not
    /// stored (stored ones use [`packet_id_for_seq`]).
    pub fn next_packet_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            if self.last_packet_id == 0 {
                self.last_packet_id = 1;
            }
            if !self.inflight.contains_key(&self.last_packet_id) {
                return Some(self.last_packet_id);
            }
        }
        None
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }
}
