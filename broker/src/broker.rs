//! The broker's shared state: session table, topic tree, retained store and password file,
//! and the operations that cross connections (publish, attach and end a session).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lpiotia_auth::{AclFile, AuthError, PasswordFile};
use mqtt_protocol_core::mqtt::packet::Qos;
use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use tokio::sync::oneshot;

use crate::message::{min_qos, Delivery, Message};
use crate::persist::{Clock, Op, QueueEntry, RestoredState, SessionRecord, Store};
use crate::retain::{RetainOutcome, RetainStore};
use crate::router::{Router, SubscriptionOptions};
use crate::session::{EnqueueOutcome, QueueLimits, QueueMemory, Session, SessionExpiry};
use crate::stats::Stats;
use crate::topic::SubscriptionFilter;

/// How long a new connection waits for the previous owner of its session to let go.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Engine settings, filled from the configuration by the caller.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// A client must send CONNECT within this time after the connection opens.
    pub connect_timeout: Duration,
    /// Outgoing QoS 1/2 messages not yet acknowledged, per session.
    pub max_inflight: u16,
    /// Queue limit of a persistent session, in messages.
    pub max_queued_messages: usize,
    /// Queue limit of a clean (non-persistent) session, in messages.
    pub max_queued_messages_clean: usize,
    /// Queue limit of a clean session, in bytes.
    pub max_queued_bytes: usize,
    /// Queue limit of a persistent session, in bytes.
    pub max_queued_bytes_persistent: usize,
    /// Above this many bytes held in all queues, publishers are not read.
    pub global_queue_memory: usize,
    /// Largest packet accepted from a client; announced to v5 clients in CONNACK.
    pub max_packet_size: u32,
    /// Largest keep alive granted; a v5 client asking for more gets Server Keep Alive.
    pub max_keepalive: u16,
    /// Largest number of levels in a topic name or filter; 0 means no limit.
    pub max_topic_levels: usize,
    /// Maximum client id length in bytes, or 0 for no limit.
    pub max_client_id_len: usize,
    /// Memory the retained store may use.
    pub max_retained_memory: usize,
    /// The password file shared by all listeners, re-read by [`Broker::reload_passwords`].
    pub password_file: PathBuf,
    /// Topic ACL file (Mosquitto's `acl_file` format), re-read by [`Broker::reload_acl`];
    /// `None` lets every authenticated client publish and subscribe to any topic.
    pub acl_file: Option<PathBuf>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            connect_timeout: Duration::from_secs(10),
            max_inflight: 20,
            max_queued_messages: 100_000,
            max_queued_messages_clean: 10_000,
            max_queued_bytes: 16 << 20,
            max_queued_bytes_persistent: 16 << 20,
            global_queue_memory: 256 << 20,
            max_packet_size: 256 << 20,
            max_keepalive: u16::MAX,
            max_topic_levels: 128,
            max_client_id_len: 0,
            max_retained_memory: 512 << 20,
            password_file: PathBuf::from("data/passwd"),
            acl_file: None,
        }
    }
}

/// Result of attaching a connection to a session.
#[derive(Debug)]
pub struct Attached {
    pub session: Arc<Session>,
    /// Whether an existing session was resumed (CONNACK Session Present).
    pub session_present: bool,
    pub generation: u64,
    /// Held while the connection owns the session.
    pub guard: tokio::sync::OwnedMutexGuard<()>,
}

/// Shared state of one broker instance.
#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    pub router: RwLock<Router>,
    pub retained: RwLock<RetainStore>,
    passwords: RwLock<Arc<PasswordFile>>,
    /// Topic ACL in force; `None` allows every topic.
    pub(crate) acl: RwLock<Option<Arc<AclFile>>>,
    pub memory: Arc<QueueMemory>,
    next_session_id: AtomicU64,
    /// Cancelled when the broker stops; every listener and connection watches it.
    pub shutdown: CancellationToken,
    pub stats: Stats,
    /// Durable store; `None` when persistence is off.
    pub store: Option<Arc<Store>>,
    /// Bounds the password checks running at once.
    password_checks: tokio::sync::Semaphore,
    /// Keyed digests of credentials that passed a check since the last reload, by username.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    /// Random key of those digests, so they are useless outside this process.
    credential_key: [u8; 32],
    /// Increased on every password file reload.
    passwords_generation: AtomicU64,
}

/// Result of routing one PUBLISH.
#[derive(Debug)]
pub struct PublishOutcome {
    /// Sessions the message was queued for.
    pub queued: usize,
    /// Completes once the message is on disk (durable mode, when anything was stored).
    pub durable: Option<oneshot::Receiver<()>>,
}

impl Broker {
    /// Creates a broker that keeps everything in memory only.
    pub fn new(config: BrokerConfig, passwords: PasswordFile) -> Arc<Self> {
        Arc::new(Broker::build(config, passwords, None))
    }

    /// Creates a broker backed by `store`, with the state read from it at start.
    pub fn with_store(config: BrokerConfig, passwords: PasswordFile, store: Arc<Store>, restored: RestoredState) -> Arc<Self> {
        let broker = Arc::new(Broker::build(config, passwords, Some(store)));
        broker.restore(restored);
        broker
    }

    fn build(config: BrokerConfig, passwords: PasswordFile, store: Option<Arc<Store>>) -> Broker {
        Broker {
            memory: Arc::new(QueueMemory::new(config.global_queue_memory)),
            retained: RwLock::new(RetainStore::new(config.max_retained_memory)),
            config,
            sessions: Mutex::new(HashMap::new()),
            router: RwLock::new(Router::default()),
            passwords: RwLock::new(Arc::new(passwords)),
            acl: RwLock::new(None),
            next_session_id: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            stats: Stats::default(),
            store,
            password_checks: tokio::sync::Semaphore::new(password_check_slots()),
            verified: Mutex::new(HashMap::new()),
            credential_key: rand::random(),
            passwords_generation: AtomicU64::new(0),
        }
    }

    /// Rebuilds retained messages and offline sessions from the store.
    fn restore(self: &Arc<Self>, restored: RestoredState) {
        let retained_count = restored.retained.len();
        {
            let mut retained = self.retained.write();
            for message in restored.retained {
                retained.store(Arc::new(message));
            }
        }
        let session_count = restored.sessions.len();
        let mut queued = 0;
        let now_ms = Clock::now().unix_ms();
        for stored in restored.sessions {
            let limits = self.queue_limits(stored.record.expiry);
            let (session, _) = self.find_or_create_session(&stored.client_id, limits);
            let mut router = self.router.write();
            let mut state = session.lock();
            state.expiry = stored.record.expiry;
            state.disconnected_at_ms = if stored.record.disconnected_at_ms == 0 { now_ms } else { stored.record.disconnected_at_ms };
            state.incoming_qos2 = stored.incoming_qos2.into_iter().collect();
            for (filter, options) in stored.record.subscriptions {
                router.subscribe(&session, &filter, options);
                state.subscriptions.insert(filter.to_string(), (filter, options));
            }
            for (seq, entry) in stored.queue {
                let mut delivery = entry.delivery;
                delivery.seq = seq;
                state.next_seq = state.next_seq.max(seq + 1);
                queued += 1;
                match entry.stage {
                    Some(stage) if entry.packet_id != 0 && !state.inflight.contains_key(&entry.packet_id) => {
                        state.inflight.insert(entry.packet_id, crate::session::Outgoing { delivery, stage });
                    }
                    _ => session.requeue_back(&mut state, delivery),
                }
            }
            if let SessionExpiry::After(delay) = state.expiry {
                let elapsed = Duration::from_millis(now_ms.saturating_sub(state.disconnected_at_ms));
                let generation = state.generation;
                drop(state);
                drop(router);
                self.schedule_expiry(Arc::clone(&session), generation, delay.saturating_sub(elapsed));
            }
        }
        info!(retained = retained_count, sessions = session_count, queued, "state restored from the store");
    }

    /// Returns the queue limits of a session with this expiry.
    // NOTE: a persistent session's queue is kept in memory as well as in the store, so its
    // limits bound memory too; only `global_queue_memory` keeps many of them in check.
    pub fn queue_limits(&self, expiry: SessionExpiry) -> QueueLimits {
        if expiry == SessionExpiry::OnDisconnect {
            QueueLimits { max_messages: self.config.max_queued_messages_clean, max_bytes: self.config.max_queued_bytes }
        } else {
            QueueLimits { max_messages: self.config.max_queued_messages, max_bytes: self.config.max_queued_bytes_persistent }
        }
    }

    /// Re-reads the password file. On error, and for a file whose lines are all malformed,
    /// the users loaded before stay in force.
    pub fn reload_passwords(&self) -> Result<usize, ReloadError> {
        let report = PasswordFile::load(&self.config.password_file)?;
        for warning in &report.warnings {
            warn!(file = %self.config.password_file.display(), "password file: {warning}, line ignored");
        }
        if report.file.is_empty() && !report.warnings.is_empty() {
            return Err(ReloadError::NoValidUser { malformed: report.warnings.len() });
        }
        let users = report.file.len();
        *self.passwords.write() = Arc::new(report.file);
        self.passwords_generation.fetch_add(1, Ordering::AcqRel);
        self.verified.lock().clear();
        info!(file = %self.config.password_file.display(), users, "password file reloaded");
        Ok(users)
    }

    /// Checks a username and password against the password file.
    pub async fn verify_password(&self, username: &str, password: &[u8]) -> bool {
        // A client that reconnects with the credentials it used before is checked against a
        // keyed SHA-256 of them kept in memory, not argon2id again: sensors reconnecting
        // after a restart would otherwise be admitted at a few dozen per second.
        let digest = self.credential_digest(username, password);
        if self.verified.lock().get(username).is_some_and(|known| constant_time_eq(known, &digest)) {
            return true;
        }
        // Each argon2id check allocates about 19 MiB: without a bound, a burst of logins
        // (or of wrong passwords) would grow memory by that much per connection.
        let Ok(_permit) = self.password_checks.acquire().await else { return false };
        let passwords = Arc::clone(&self.passwords.read());
        let generation = self.passwords_generation.load(Ordering::Acquire);
        let owned_username = username.to_owned();
        let owned_password = password.to_vec();
        // Password hashing (argon2id, PBKDF2) takes milliseconds: keep it off the I/O threads.
        let valid = tokio::task::spawn_blocking(move || passwords.verify(&owned_username, &owned_password))
            .await
            .unwrap_or(false);
        // A reload during the check may have changed this user: cache only if it did not.
        if valid && self.passwords_generation.load(Ordering::Acquire) == generation {
            self.verified.lock().insert(username.to_owned(), digest);
        }
        valid
    }

    fn credential_digest(&self, username: &str, password: &[u8]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.credential_key);
        hasher.update((username.len() as u64).to_be_bytes());
        hasher.update(username.as_bytes());
        hasher.update(password);
        hasher.finalize().into()
    }

    /// Returns the number of sessions, online and offline.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Returns every session in the table at this moment.
    pub fn sessions_snapshot(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().values().cloned().collect()
    }

    /// Routes a message to every matching subscriber and, if RETAIN is set, stores it.
    ///
    /// With a store, the entries for persistent sessions are handed to the store before they
    /// are queued, so a DELETE for an acknowledged entry can never overtake its PUT.
    pub fn publish(&self, message: Message) -> PublishOutcome {
        self.publish_with(message, Vec::new())
    }

    /// Like [`Broker::publish`], with more store operations to commit together with it.
    pub fn publish_with(&self, message: Message, mut ops: Vec<Op>) -> PublishOutcome {
        let message = Arc::new(message);
        let clock = Clock::now();
        if message.origin != 0 {
            self.stats.messages_received.fetch_add(1, Ordering::Relaxed);
        }
        if message.retain {
            match self.retained.write().store(Arc::clone(&message)) {
                RetainOutcome::OverLimit => {
                    self.stats.retained_refused.fetch_add(1, Ordering::Relaxed);
                }
                RetainOutcome::Stored if self.store.is_some() && !message.topic.starts_with(crate::sys::SYS_PREFIX) => ops.push(Op::PutRetained {
                    topic: Arc::clone(&message.topic),
                    record: crate::persist::encode_message(&message, &clock),
                }),
                RetainOutcome::Cleared if self.store.is_some() => {
                    ops.push(Op::DeleteRetained { topic: Arc::clone(&message.topic) });
                }
                _ => {}
            }
        }
        let targets = self.router.read().targets(&message.topic);
        let mut deliveries = Vec::with_capacity(targets.len());
        for target in targets {
            if target.no_local && target.session.id == message.origin {
                continue;
            }
            let mut delivery = Delivery {
                qos: min_qos(message.qos, target.qos),
                retain: message.retain && target.retain_as_published,
                subscription_ids: target.subscription_ids,
                message: Arc::clone(&message),
                seq: 0,
            };
            if self.store.is_some() && delivery.qos != Qos::AtMostOnce {
                let mut state = target.session.lock();
                if state.is_persistent() && !state.ended {
                    delivery.seq = state.allocate_seq();
                    drop(state);
                    let entry = QueueEntry { delivery: delivery.clone(), stage: None, packet_id: 0 };
                    ops.push(Op::PutQueued {
                        client_id: Arc::clone(&target.session.client_id),
                        seq: delivery.seq,
                        record: crate::persist::encode_queue_entry(&entry, &clock),
                    });
                }
            }
            deliveries.push((target.session, delivery));
        }
        let durable = match &self.store {
            Some(store) => store.submit(ops),
            None => None,
        };
        let mut queued = 0;
        let mut orphaned = Vec::new();
        for (session, delivery) in deliveries {
            let seq = delivery.seq;
            match session.enqueue(delivery) {
                EnqueueOutcome::Queued => queued += 1,
                EnqueueOutcome::Dropped => {
                    self.stats.messages_dropped.fetch_add(1, Ordering::Relaxed);
                    if seq != 0 {
                        orphaned.push(Op::DeleteQueued { client_id: Arc::clone(&session.client_id), seq });
                    }
                }
                EnqueueOutcome::Skipped => {}
            }
        }
        if let Some(store) = &self.store {
            store.submit_background(orphaned);
        }
        PublishOutcome { queued, durable }
    }

    /// Writes a stored queue entry again when its QoS 2 flow advances; returns a receiver
    /// in durable mode. Does nothing for entries that are not stored.
    pub fn update_queued(
        &self,
        session: &Session,
        delivery: &Delivery,
        stage: Option<crate::session::OutgoingStage>,
        packet_id: u16,
    ) -> Option<oneshot::Receiver<()>> {
        let (Some(store), true) = (&self.store, delivery.seq != 0) else { return None };
        let entry = QueueEntry { delivery: delivery.clone(), stage, packet_id };
        store.submit(vec![Op::PutQueued {
            client_id: Arc::clone(&session.client_id),
            seq: delivery.seq,
            record: crate::persist::encode_queue_entry(&entry, &Clock::now()),
        }])
    }

    /// Removes a stored queue entry once the client has acknowledged it or it expired.
    pub fn forget_queued(&self, session: &Session, seq: u64) {
        if let (Some(store), true) = (&self.store, seq != 0) {
            store.submit_background(vec![Op::DeleteQueued { client_id: Arc::clone(&session.client_id), seq }]);
        }
    }

    /// Writes a persistent session's record (expiry and subscriptions); deletes it from the
    /// store when the session is not persistent. Returns a receiver in durable mode.
    pub fn persist_session(&self, session: &Session) -> Option<oneshot::Receiver<()>> {
        let store = self.store.as_ref()?;
        let op = {
            let state = session.lock();
            if state.ended || !state.is_persistent() {
                Op::DeleteSession { client_id: Arc::clone(&session.client_id) }
            } else {
                let record = SessionRecord {
                    expiry: state.expiry,
                    disconnected_at_ms: state.disconnected_at_ms,
                    subscriptions: state.subscriptions.values().cloned().collect(),
                };
                Op::PutSession { client_id: Arc::clone(&session.client_id), record: crate::persist::encode_session(&record) }
            }
        };
        store.submit(vec![op])
    }

    /// Returns the store operation that records a session's unreleased incoming QoS 2 ids.
    pub fn incoming_qos2_op(&self, session: &Session) -> Option<Op> {
        self.store.as_ref()?;
        let state = session.lock();
        if !state.is_persistent() {
            return None;
        }
        let ids: Vec<u16> = state.incoming_qos2.iter().copied().collect();
        Some(Op::PutIncomingQos2 { client_id: Arc::clone(&session.client_id), record: crate::persist::encode_packet_ids(&ids) })
    }

    /// Queues the retained messages matching a new subscription for one session.
    pub fn send_retained(&self, session: &Session, filter: &str, options: &SubscriptionOptions) {
        let messages = self.retained.read().matching(filter, Instant::now());
        for message in messages {
            // Retained messages are sent again on the next SUBSCRIBE, so they are not stored
            // in the session's queue.
            let delivery = Delivery {
                qos: min_qos(message.qos, options.qos),
                retain: true,
                subscription_ids: options.identifier.into_iter().collect(),
                message,
                seq: 0,
            };
            session.enqueue(delivery);
        }
    }

    /// Finds or creates the session of `client_id` and makes the calling connection its
    /// owner, taking it over from an older connection if there is one.
    pub async fn attach_session(
        &self,
        client_id: &str,
        clean_start: bool,
        expiry: SessionExpiry,
        limits: QueueLimits,
        owner: CancellationToken,
    ) -> Result<Attached, AttachError> {
        // The previous owner may end the session while we wait for it (clean session). The
        // table then contains a new session or none, so look again.
        for _ in 0..3 {
            let (session, existed) = self.find_or_create_session(client_id, limits);
            session.kick_owner();
            let guard = tokio::time::timeout(TAKEOVER_TIMEOUT, Arc::clone(&session.attach).lock_owned())
                .await
                .map_err(|_| AttachError::TakeoverTimedOut)?;
            if session.lock().ended {
                continue;
            }
            let mut session_present = existed;
            if clean_start && existed {
                self.reset_session(&session);
                if let Some(store) = &self.store {
                    store.submit_background(vec![Op::DeleteSession { client_id: Arc::clone(&session.client_id) }]);
                }
                session_present = false;
            }
            {
                let mut state = session.lock();
                state.expiry = expiry;
                state.disconnected_at_ms = 0;
            }
            let generation = session.set_owner(owner, limits);
            return Ok(Attached { session, session_present, generation, guard });
        }
        Err(AttachError::TakeoverTimedOut)
    }

    fn find_or_create_session(&self, client_id: &str, limits: QueueLimits) -> (Arc<Session>, bool) {
        let mut sessions = self.sessions.lock();
        if let Some(session) = sessions.get(client_id) {
            return (Arc::clone(session), true);
        }
        let id = self.next_session_id.fetch_add(1, Ordering::Relaxed);
        let client_id: Arc<str> = Arc::from(client_id);
        let session = Arc::new(Session::new(id, Arc::clone(&client_id), limits, Arc::clone(&self.memory)));
        sessions.insert(client_id, Arc::clone(&session));
        (session, false)
    }

    /// Drops a session's subscriptions and messages but keeps the session (clean start).
    fn reset_session(&self, session: &Arc<Session>) {
        let filters: Vec<SubscriptionFilter> = {
            let mut state = session.lock();
            session.clear_messages(&mut state);
            state.subscriptions.drain().map(|(_, (filter, _))| filter).collect()
        };
        let mut router = self.router.write();
        for filter in &filters {
            router.unsubscribe(session.id, filter);
        }
    }

    /// Ends a session: removes it from the table and the topic tree and frees its queue.
    pub fn end_session(&self, session: &Arc<Session>) {
        {
            let mut sessions = self.sessions.lock();
            if sessions.get(&session.client_id).is_some_and(|current| Arc::ptr_eq(current, session)) {
                sessions.remove(&session.client_id);
            }
        }
        session.lock().ended = true;
        self.reset_session(session);
        if let Some(store) = &self.store {
            store.submit_background(vec![Op::DeleteSession { client_id: Arc::clone(&session.client_id) }]);
        }
    }

    /// Ends the session after `delay` unless a connection has attached to it since.
    pub fn schedule_expiry(self: &Arc<Self>, session: Arc<Session>, generation: u64, delay: Duration) {
        let broker = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = broker.shutdown.cancelled() => return,
            }
            let still_offline = {
                let state = session.lock();
                state.generation == generation && !session.is_online() && !state.ended
            };
            if still_offline {
                info!(client_id = %session.client_id, "session expired");
                broker.end_session(&session);
            }
        });
    }
}

/// Compares two digests in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Returns how many password checks may run at once: one per CPU, at least two.
fn password_check_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |cpus| cpus.get().max(2))
}

/// Error of [`Broker::reload_passwords`].
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Read(#[from] AuthError),
    #[error("no valid user in the file ({malformed} malformed lines); fix the file and send SIGHUP again")]
    NoValidUser { malformed: usize },
}

/// Error of [`Broker::attach_session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    #[error("the previous connection of this client id did not close within 5 s")]
    TakeoverTimedOut,
}
