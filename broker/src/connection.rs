//! One task per client: CONNECT and authentication, then the read/write loop under keep
//! alive until the connection ends, then the will and the session's fate.
//!
//! The codec and per-connection protocol state come from `mqtt-protocol-core`. This module
//! feeds it the bytes read and carries out the events it returns: send a packet, reset the
//! keep-alive timer, close. It then acts on each received packet.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_protocol_core::mqtt::common::Cursor;
use mqtt_protocol_core::mqtt::connection::{ConnectionOptions, Event, TimerKind};
use mqtt_protocol_core::mqtt::packet::{
    AssignedClientIdentifier, GenericPacketTrait, Packet, Qos, ServerKeepAlive, TopicAliasMaximum,
};
use mqtt_protocol_core::mqtt::result_code::{ConnectReasonCode, DisconnectReasonCode, MqttError};
use mqtt_protocol_core::mqtt::role::Server;
use mqtt_protocol_core::mqtt::{Connection, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::broker::{Attached, Broker};
use crate::handshake::{read_first_packet, ConnectRequest, HandshakeError, ProtocolVersion};
use crate::outbound::Outbound;
use crate::packets::{self, ConnectOutcome};
use crate::session::{Session, SessionExpiry};
use crate::stats::ClientRecord;
use crate::topic::validate_topic_name;
use crate::will::{publish_will, Will};
use crate::wire::{self, PacketChecker, Violation, ViolationKind};

mod inbound;

/// Topic aliases a v5 client may use towards the broker (as Mosquitto's default).
const TOPIC_ALIAS_MAXIMUM: u16 = 10;

/// How long the broker waits, after DISCONNECT, for the client to close the connection.
const CLIENT_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// While queues are over the global memory limit, a publisher waits this long at most
/// between two reads.
const PUBLISHER_PAUSE: Duration = Duration::from_secs(1);

/// Listener settings that each of its connections needs.
#[derive(Debug)]
pub struct ListenerInfo {
    pub name: String,
    pub allow_anonymous: bool,
    /// Refuse a client whose certificate Common Name differs from its MQTT username.
    pub certificate_must_match_username: bool,
}

/// Identity of the client as known before CONNECT.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// Common Name of the verified client certificate, on TLS listeners.
    pub certificate_cn: Option<String>,
}

/// Cause of the end of a connection, for the log and for the will.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CloseReason {
    /// DISCONNECT received; `with_will` for v5 reason 0x04.
    ClientDisconnect { with_will: bool },
    SocketClosed,
    /// The transport failed, or sent what MQTT cannot carry (a WebSocket text frame).
    ReadFailed(String),
    KeepAliveTimeout,
    TakenOver,
    ServerShutdown,
    ProtocolError(String),
}

impl CloseReason {
    fn describe(&self) -> String {
        match self {
            CloseReason::ClientDisconnect { .. } => "client sent DISCONNECT".into(),
            CloseReason::SocketClosed => "connection closed by client".into(),
            CloseReason::ReadFailed(error) => format!("read failed: {error}"),
            CloseReason::KeepAliveTimeout => "keep alive timed out".into(),
            CloseReason::TakenOver => "session taken over by a new connection".into(),
            CloseReason::ServerShutdown => "server shutting down".into(),
            CloseReason::ProtocolError(description) => description.clone(),
        }
    }

    fn publishes_will(&self) -> bool {
        !matches!(self, CloseReason::ClientDisconnect { with_will: false } | CloseReason::ServerShutdown)
    }
}

/// Serves one client connection from its first byte to its close.
pub async fn serve<S>(broker: Arc<Broker>, stream: S, peer_info: PeerInfo, listener: Arc<ListenerInfo>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = peer_info.addr;
    let (mut reader, writer) = tokio::io::split(stream);
    let outbound = Outbound::start(writer);
    // The largest value the setting takes (the largest Remaining Length) means no limit: a
    // packet of that Remaining Length is legal, though its header makes it 5 bytes longer.
    let unlimited = broker.config.max_packet_size >= wire::MAX_REMAINING_LENGTH;
    let max_packet_size = if unlimited { usize::MAX } else { broker.config.max_packet_size as usize };
    let first = match read_first_packet(&mut reader, broker.config.connect_timeout, max_packet_size).await {
        Ok(first) => first,
        Err(HandshakeError::Closed) => {
            info!(listener = %listener.name, peer = %peer, "connection closed by the client before CONNECT");
            outbound.close().await;
            return;
        }
        Err(error) => {
            warn!(listener = %listener.name, peer = %peer, "connection refused before CONNECT: {error}");
            broker.stats.record_refusal(&listener.name, peer, &format!("before CONNECT: {error}"));
            outbound.close().await;
            return;
        }
    };
    let mut connect = first.connect;
    let facts = match wire::check_connect(&connect) {
        Ok(facts) => facts,
        Err(violation) => {
            refuse_connect(&broker, &listener, peer, &connect, &violation, &outbound);
            outbound.close().await;
            return;
        }
    };
    if facts.needs_rewrite() {
        connect = wire::sanitize_connect(&connect, &facts);
    }
    let v5 = facts.level == 5;
    let codec_limit = if unlimited { 0 } else { broker.config.max_packet_size };
    let mut options = ConnectionOptions::new().maximum_packet_size_recv(codec_limit);
    if v5 {
        // The codec announces it in CONNACK and sends DISCONNECT 0x93 to a client that
        // exceeds it. MQTT 3.1.1 has no Receive Maximum, so there it stays unlimited.
        options = options.receive_maximum(broker.config.max_inflight);
    }
    let mut client = Client {
        max_packet_size,
        checker: PacketChecker::new(v5, TOPIC_ALIAS_MAXIMUM),
        unparsed: Vec::new(),
        keepalive: None,
        broker,
        codec: Connection::<Server>::with_options(Version::Undetermined, options),
        outbound,
        peer,
        certificate_cn: peer_info.certificate_cn,
        listener,
        version: ProtocolVersion::V3_1_1,
        client_id: Arc::from(""),
        username: None,
        keepalive_deadline: None,
        received: VecDeque::new(),
        close: None,
        session: None,
        generation: 0,
        inflight_limit: 0,
        will: None,
        is_publisher: false,
        pending_acks: VecDeque::new(),
        record: None,
    };
    client.codec.set_auto_ping_response(true);
    // Topic aliases towards v5 clients that announce a Topic Alias Maximum: a repeated topic
    // is sent once, then by its alias (least recently used alias reused when all are taken).
    client.codec.set_auto_map_topic_alias_send(true);
    client.codec.set_auto_pub_response(false);
    client.run(reader, connect, first.rest, first.is_mqtt31).await;
}

/// Refuses a CONNECT that failed [`wire::check_connect`]: an MQTT 5.0 client gets CONNACK
/// with the reason code, an unsupported protocol level gets return code 0x01, and any other
/// MQTT 3.1.1 refusal is a close without reply (MQTT-4.8.0-1).
fn refuse_connect(broker: &Broker, listener: &ListenerInfo, peer: SocketAddr, connect: &[u8], violation: &Violation, outbound: &Outbound) {
    warn!(listener = %listener.name, peer = %peer, "connection refused: {violation}");
    broker.stats.record_refusal(&listener.name, peer, &format!("CONNECT: {violation}"));
    let reply = if violation.kind == ViolationKind::UnsupportedProtocolVersion {
        Some(vec![0x20, 0x02, 0x00, 0x01])
    } else if wire::connect_level(connect) == Some(5) {
        Some(vec![0x20, 0x03, 0x00, violation.connack_reason(), 0x00])
    } else {
        None
    };
    if let Some(reply) = reply {
        broker.stats.bytes_sent.fetch_add(reply.len() as u64, Ordering::Relaxed);
        outbound.send(reply);
    }
}

/// State of one connection.
struct Client {
    max_packet_size: usize,
    /// Checks each packet before the codec decodes it.
    checker: PacketChecker,
    /// Start of a packet whose remaining bytes have not arrived yet.
    unparsed: Vec<u8>,
    /// Keep alive in force, as the client asked or as the broker capped it.
    keepalive: Option<Duration>,
    broker: Arc<Broker>,
    /// Codec and protocol state machine of this connection.
    codec: Connection<Server>,
    outbound: Outbound,
    peer: SocketAddr,
    certificate_cn: Option<String>,
    listener: Arc<ListenerInfo>,
    version: ProtocolVersion,
    client_id: Arc<str>,
    /// Username the client authenticated with; None for an anonymous client.
    username: Option<String>,
    /// When the client is overdue (1.5 x keep alive after its last packet), if keep alive is on.
    keepalive_deadline: Option<tokio::time::Instant>,
    /// Packets decoded and waiting to be acted on.
    received: VecDeque<Packet>,
    /// Set once the connection must end.
    close: Option<CloseReason>,
    session: Option<Arc<Session>>,
    generation: u64,
    /// Outgoing QoS 1/2 messages allowed in flight: min(configured, client's Receive Maximum).
    inflight_limit: usize,
    will: Option<Will>,
    /// Set once the client has sent a PUBLISH; only publishers pause under memory pressure.
    is_publisher: bool,
    /// Acknowledgements waiting for the store, sent in the order the packets arrived.
    pending_acks: VecDeque<PendingAck>,
    /// Entry in the table of connected clients, and its id there.
    record: Option<(u64, Arc<ClientRecord>)>,
}

/// An acknowledgement (PUBACK, PUBREC, SUBACK, UNSUBACK) held back until the store has
/// written what it acknowledges.
struct PendingAck {
    /// Completes when the store has committed; `None` if nothing needed writing.
    wait: Option<tokio::sync::oneshot::Receiver<()>>,
    packet: Result<Packet, MqttError>,
    /// Retained messages to queue once this SUBACK is sent, so they follow it.
    then_retained: Vec<(String, crate::router::SubscriptionOptions)>,
}

impl Client {
    async fn run<R>(mut self, mut reader: R, connect: Vec<u8>, rest: Vec<u8>, is_mqtt31: bool)
    where
        R: AsyncRead + Unpin,
    {
        let Some(request) = self.decode_connect(&connect, is_mqtt31) else {
            self.outbound.close().await;
            return;
        };
        let owner = CancellationToken::new();
        let Some(attached) = self.accept(request, owner.clone()).await else {
            self.outbound.close().await;
            return;
        };
        let guard = attached.guard;
        self.resend_inflight();
        self.feed(&rest);
        self.event_loop(&mut reader, &owner).await;
        if matches!(self.close, Some(CloseReason::ClientDisconnect { .. })) {
            // Let the client close first: a WebSocket client sends its close frame after
            // DISCONNECT, and closing the socket under it makes it fail with EPIPE.
            let _ = tokio::time::timeout(CLIENT_CLOSE_WAIT, read_until_closed(&mut reader)).await;
        }
        self.finish(guard).await;
    }

    /// Feeds CONNECT to the codec and returns its fields, or None after a refusal.
    fn decode_connect(&mut self, connect: &[u8], is_mqtt31: bool) -> Option<ConnectRequest> {
        let mut events = self.codec.recv(&mut Cursor::new(connect));
        refine_connack_reason(&mut events);
        let mut error = None;
        self.apply(events, &mut error);
        let request = match self.received.pop_front() {
            Some(Packet::V3_1_1Connect(packet)) => ConnectRequest::from_v3(&packet, is_mqtt31),
            Some(Packet::V5_0Connect(packet)) => ConnectRequest::from_v5(&packet),
            _ => {
                let reason = error.map_or_else(|| "invalid CONNECT".to_owned(), |e| format!("invalid CONNECT: {e:?}"));
                self.refused_log(None, None, &reason);
                return None;
            }
        };
        self.version = request.version;
        Some(request)
    }

    /// Authenticates, attaches the session and sends CONNACK; returns None after a refusal.
    async fn accept(&mut self, mut request: ConnectRequest, owner: CancellationToken) -> Option<Attached> {
        if let Some(will) = &request.will {
            if let Err(error) = validate_topic_name(&will.message.topic, self.broker.config.max_topic_levels) {
                let reason = format!("invalid will topic {:?}: {error}", will.message.topic);
                // MQTT 3.1.1 has no CONNACK code for this: the connection is closed as malformed.
                if request.version == ProtocolVersion::V5 {
                    self.refuse(&request, ConnectOutcome::TopicNameInvalid, &reason);
                } else {
                    self.refused_log(Some(&request.client_id), request.username.as_deref(), &reason);
                }
                return None;
            }
        }
        let outcome = self.check_credentials(&request).await;
        if outcome != ConnectOutcome::Accepted {
            let reason = match outcome {
                ConnectOutcome::BadCredentials => "bad username or password",
                _ => "no username given and the listener does not allow anonymous clients",
            };
            self.refuse(&request, outcome, reason);
            return None;
        }
        if self.listener.certificate_must_match_username && self.certificate_cn != request.username {
            let reason = format!(
                "certificate Common Name {:?} differs from username {:?} (certificate_must_match_username)",
                self.certificate_cn.as_deref().unwrap_or(""),
                request.username.as_deref().unwrap_or("")
            );
            self.refuse(&request, ConnectOutcome::NotAuthorized, &reason);
            return None;
        }
        let assigned = request.client_id.is_empty();
        if assigned {
            if request.version == ProtocolVersion::V3_1 || (request.version == ProtocolVersion::V3_1_1 && !request.clean_start) {
                self.refuse(&request, ConnectOutcome::ClientIdRejected, "empty client id needs clean session");
                return None;
            }
            request.client_id = format!("auto-{:016x}", rand::random::<u64>());
        }
        let max_keepalive = self.broker.config.max_keepalive;
        // 65535 is the largest keep alive MQTT can carry, so it means no cap. MQTT 3.1.1
        // cannot tell a client a shorter keep alive, so the client's value is kept there, as
        // Mosquitto 2.0.11 does. MQTT 5.0 clients get Server Keep Alive in CONNACK.
        let over_keepalive_cap = request.version == ProtocolVersion::V5
            && max_keepalive < u16::MAX
            && (request.keep_alive > max_keepalive || request.keep_alive == 0);
        let keepalive = if over_keepalive_cap { max_keepalive } else { request.keep_alive };
        self.keepalive = (keepalive > 0).then(|| Duration::from_secs(u64::from(keepalive)));
        let max_id = self.broker.config.max_client_id_len;
        if max_id > 0 && request.client_id.len() > max_id {
            self.refuse(&request, ConnectOutcome::ClientIdRejected, "client id longer than limits.max_client_id_len");
            return None;
        }
        self.client_id = Arc::from(request.client_id.as_str());
        self.username = request.username.clone();
        if let Some(will) = &request.will {
            if !self.broker.may_publish(request.username.as_deref(), &request.client_id, &will.message.topic) {
                let reason = format!("the ACL does not allow publishing the will to {:?}", will.message.topic);
                self.refuse(&request, ConnectOutcome::NotAuthorized, &reason);
                return None;
            }
        }

        let expiry = match request.version {
            ProtocolVersion::V5 => SessionExpiry::from_interval(request.session_expiry),
            _ if request.clean_start => SessionExpiry::OnDisconnect,
            _ => SessionExpiry::Never,
        };
        let broker = Arc::clone(&self.broker);
        let config = &broker.config;
        let limits = broker.queue_limits(expiry);
        let attached = match self
            .broker
            .attach_session(&request.client_id, request.clean_start, expiry, limits, owner)
            .await
        {
            Ok(attached) => attached,
            Err(error) => {
                self.refuse(&request, ConnectOutcome::ServerUnavailable, &error.to_string());
                return None;
            }
        };
        self.inflight_limit = usize::from(config.max_inflight.min(request.receive_maximum)).max(1);
        self.session = Some(Arc::clone(&attached.session));
        self.generation = attached.generation;
        self.will = request.will.take();
        self.restore_incoming_qos2(&attached.session);
        attached.session.lock().username = request.username.clone();
        if attached.session_present {
            // The ACL may have changed while the client was away.
            self.broker.recheck_subscriptions(&attached.session, request.username.as_deref());
        }
        // The session record is rewritten before any SUBACK is sent, which waits for the store.
        let _ = self.broker.persist_session(&attached.session);

        let mut props = Vec::new();
        if request.version == ProtocolVersion::V5 {
            if assigned {
                props.push(AssignedClientIdentifier::new(request.client_id.as_str()).ok()?.into());
            }
            props.push(TopicAliasMaximum::new(TOPIC_ALIAS_MAXIMUM).ok()?.into());
            if over_keepalive_cap {
                props.push(ServerKeepAlive::new(max_keepalive).ok()?.into());
            }
        }
        let connack = packets::connack(request.version, ConnectOutcome::Accepted, attached.session_present, props);
        self.send_packet(connack);
        self.packet_received();

        self.broker.stats.clients_connected.fetch_add(1, Ordering::Relaxed);
        self.broker.stats.clients_total.fetch_add(1, Ordering::Relaxed);
        let record = Arc::new(ClientRecord {
            client_id: request.client_id.clone(),
            username: request.username.clone().unwrap_or_default(),
            peer: self.peer,
            listener: self.listener.name.clone(),
            protocol: request.version.as_str(),
            connected_at: std::time::SystemTime::now(),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
        });
        let record_id = self.broker.stats.register_client(Arc::clone(&record));
        self.record = Some((record_id, record));
        info!(
            listener = %self.listener.name,
            peer = %self.peer,
            client_id = %self.client_id,
            username = request.username.as_deref().unwrap_or(""),
            protocol = request.version.as_str(),
            clean_start = request.clean_start,
            keep_alive = keepalive,
            session_present = attached.session_present,
            "client connected"
        );
        Some(attached)
    }

    async fn check_credentials(&self, request: &ConnectRequest) -> ConnectOutcome {
        match (&request.username, &request.password) {
            (Some(username), Some(password)) => {
                if self.broker.verify_password(username, password).await {
                    ConnectOutcome::Accepted
                } else {
                    ConnectOutcome::BadCredentials
                }
            }
            (Some(_), None) => ConnectOutcome::BadCredentials,
            (None, _) if self.listener.allow_anonymous => ConnectOutcome::Accepted,
            (None, _) => ConnectOutcome::NotAuthorized,
        }
    }

    fn refuse(&mut self, request: &ConnectRequest, outcome: ConnectOutcome, reason: &str) {
        if is_health_check(request) {
            // `lpiotia-mqtt healthcheck` connects without credentials every 30 s in Docker;
            // its expected refusal is not worth a warning or a place among the refusals.
            debug!(peer = %self.peer, client_id = %request.client_id, "health check got its CONNACK: {reason}");
            let connack = packets::connack(request.version, outcome, false, Vec::new());
            self.send_packet(connack);
            return;
        }
        let username = request.username.as_deref().unwrap_or("");
        let described = format!("client id {:?}, username {username:?}: {reason}", request.client_id);
        self.broker.stats.record_refusal(&self.listener.name, self.peer, &described);
        self.refused_log(Some(&request.client_id), request.username.as_deref(), reason);
        let connack = packets::connack(request.version, outcome, false, Vec::new());
        self.send_packet(connack);
    }

    fn refused_log(&self, client_id: Option<&str>, username: Option<&str>, reason: &str) {
        warn!(
            listener = %self.listener.name,
            peer = %self.peer,
            client_id = client_id.unwrap_or(""),
            username = username.unwrap_or(""),
            "connection refused: {reason}"
        );
    }

    /// Gives the codec the incoming QoS 2 packet ids a resumed session had not released, so
    /// a re-sent PUBLISH is not delivered twice.
    fn restore_incoming_qos2(&mut self, session: &Session) {
        let pending = session.lock().incoming_qos2.clone();
        if !pending.is_empty() {
            self.codec.restore_qos2_publish_handled(pending.into_iter().collect());
        }
    }

    /// Re-sends the messages a resumed session had in flight: PUBLISH with DUP, or PUBREL.
    fn resend_inflight(&mut self) {
        let Some(session) = self.session.clone() else { return };
        let inflight: Vec<_> = session.lock().inflight.iter().map(|(id, out)| (*id, out.clone())).collect();
        let now = Instant::now();
        for (packet_id, outgoing) in inflight {
            let _ = self.codec.register_packet_id(packet_id);
            let packet = match outgoing.stage {
                crate::session::OutgoingStage::AwaitingAck => {
                    packets::publish(self.version, &outgoing.delivery, Some(packet_id), true, now)
                }
                crate::session::OutgoingStage::AwaitingPubcomp => packets::pubrel(self.version, packet_id),
            };
            self.send_packet(packet);
        }
    }

    async fn event_loop<R>(&mut self, reader: &mut R, owner: &CancellationToken)
    where
        R: AsyncRead + Unpin,
    {
        // 4 KiB: enough for several small packets per read, cheap for idle connections.
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let session = self.session.clone().expect("attached before the event loop");
        let shutdown = self.broker.shutdown.clone();
        let memory = Arc::clone(&self.broker.memory);
        let drained = Arc::clone(&self.outbound.drained);
        while self.close.is_none() {
            self.fill_outbound(&session);
            if self.close.is_some() {
                break;
            }
            if self.outbound.is_closed() {
                self.close = Some(CloseReason::SocketClosed);
                break;
            }
            let pause_for_memory = self.is_publisher && memory.is_over_limit();
            let can_read = self.outbound.has_room() && !pause_for_memory;
            let keepalive = self.keepalive_deadline;
            let waiting_for_store = self.pending_acks.front().is_some_and(|ack| ack.wait.is_some());
            tokio::select! {
                written = wait_for_store(&mut self.pending_acks), if waiting_for_store => {
                    self.on_store_written(written.is_ok());
                }
                _ = owner.cancelled() => {
                    self.send_disconnect(DisconnectReasonCode::SessionTakenOver);
                    self.close = Some(CloseReason::TakenOver);
                }
                _ = shutdown.cancelled() => {
                    self.send_disconnect(DisconnectReasonCode::ServerShuttingDown);
                    self.close = Some(CloseReason::ServerShutdown);
                }
                read = reader.read_buf(&mut buf), if can_read => match read {
                    Ok(0) => self.close = Some(CloseReason::SocketClosed),
                    Err(error) => self.close = Some(CloseReason::ReadFailed(error.to_string())),
                    Ok(count) => {
                        self.broker.stats.bytes_received.fetch_add(count as u64, Ordering::Relaxed);
                        self.feed(&buf);
                        buf.clear();
                    }
                },
                _ = session.wake.notified() => {}
                _ = drained.notified(), if !self.outbound.has_room() => {}
                _ = tokio::time::timeout(PUBLISHER_PAUSE, memory.released.notified()), if pause_for_memory => {
                    // Read once even if memory is still over the limit: a publisher that also
                    // subscribes must still get its acknowledgements through.
                    self.read_once_paused(reader, &mut buf).await;
                }
                _ = sleep_until_opt(keepalive), if keepalive.is_some() => {
                    self.keepalive_deadline = None;
                    let events = self.codec.notify_timer_fired(TimerKind::PingreqRecv);
                    let mut error = None;
                    self.apply(events, &mut error);
                    self.close = Some(CloseReason::KeepAliveTimeout);
                }
            }
        }
    }

    async fn read_once_paused<R>(&mut self, reader: &mut R, buf: &mut Vec<u8>)
    where
        R: AsyncRead + Unpin,
    {
        let read = tokio::time::timeout(Duration::from_millis(10), reader.read_buf(buf)).await;
        match read {
            Ok(Ok(0)) => self.close = Some(CloseReason::SocketClosed),
            Ok(Err(error)) => self.close = Some(CloseReason::ReadFailed(error.to_string())),
            Ok(Ok(count)) => {
                self.broker.stats.bytes_received.fetch_add(count as u64, Ordering::Relaxed);
                self.feed(buf);
                buf.clear();
            }
            Err(_) => {}
        }
    }

    /// Feeds received bytes to the codec, one whole packet at a time, and acts on each;
    /// a packet that fails its checks ends the connection.
    fn feed(&mut self, bytes: &[u8]) {
        if self.unparsed.is_empty() {
            let used = self.feed_packets(bytes);
            if self.close.is_none() {
                self.unparsed.extend_from_slice(&bytes[used..]);
            }
        } else {
            let mut unparsed = std::mem::take(&mut self.unparsed);
            unparsed.extend_from_slice(bytes);
            let used = self.feed_packets(&unparsed);
            unparsed.drain(..used);
            self.unparsed = unparsed;
        }
    }

    /// Feeds each whole packet at the start of `bytes` to the codec and acts on it; returns
    /// the number of bytes used.
    fn feed_packets(&mut self, bytes: &[u8]) -> usize {
        let mut used = 0;
        while self.close.is_none() {
            let rest = &bytes[used..];
            let length = match wire::frame_length(rest, self.max_packet_size) {
                Ok(Some(length)) => length,
                Ok(None) => break,
                Err(violation) => {
                    self.violation(violation);
                    break;
                }
            };
            let packet = &rest[..length];
            used += length;
            self.packet_received();
            if let Err(violation) = self.checker.check(packet) {
                self.violation(violation);
                break;
            }
            if self.is_unknown_acknowledgement(packet) {
                continue;
            }
            if packet[0] == 0xC0 {
                // PINGRESP goes behind the messages queued so far, as Mosquitto sends it:
                // move them to the writer first (those a full in-flight window holds back
                // stay queued).
                if let Some(session) = self.session.clone() {
                    self.fill_outbound(&session);
                }
            }
            let events = self.codec.recv(&mut Cursor::new(packet));
            let mut error = None;
            self.apply(events, &mut error);
            if let Some(error) = error {
                self.protocol_error(error);
            }
            self.process_received();
        }
        used
    }

    /// Restarts the keep-alive timer: 1.5 times the keep alive from now (MQTT-3.1.2-24).
    fn packet_received(&mut self) {
        if let Some(keepalive) = self.keepalive {
            self.keepalive_deadline = Some(tokio::time::Instant::now() + keepalive.mul_f32(1.5));
        }
    }

    /// Returns whether a PUBACK, PUBREC or PUBCOMP acknowledges no message in flight, so is
    /// ignored. A client that resumes a session may acknowledge a message twice; Mosquitto
    /// ignores the second one too.
    fn is_unknown_acknowledgement(&self, packet: &[u8]) -> bool {
        let Some(packet_id) = wire::acknowledged_packet_id(packet) else { return false };
        let known = self.session.as_ref().is_some_and(|session| session.lock().inflight.contains_key(&packet_id));
        if !known {
            debug!(client_id = %self.client_id, packet_id, "ignoring an acknowledgement for a packet id not in flight");
        }
        !known
    }

    /// Ends the connection for a packet that failed its checks: MQTT 5.0 clients get
    /// DISCONNECT with the reason code first.
    fn violation(&mut self, violation: Violation) {
        warn!(
            listener = %self.listener.name,
            peer = %self.peer,
            client_id = %self.client_id,
            "closing connection: {violation}"
        );
        if self.version == ProtocolVersion::V5 {
            let explained = packets::disconnect_explained(violation.disconnect_reason(), &violation.to_string());
            if self.send_packet(explained).is_some() {
                // Too large for the client's Maximum Packet Size: send the reason code alone.
                self.send_disconnect(violation.disconnect_reason());
            }
        }
        self.close = Some(CloseReason::ProtocolError(violation.to_string()));
    }

    fn protocol_error(&mut self, error: MqttError) {
        warn!(
            listener = %self.listener.name,
            peer = %self.peer,
            client_id = %self.client_id,
            "closing connection: packet rejected by the codec: {error:?}"
        );
        if self.close.is_none() {
            self.close = Some(CloseReason::ProtocolError(format!("packet rejected by the codec: {error:?}")));
        }
    }

    /// Carries out codec events; the first error is stored in `error`.
    fn apply(&mut self, events: Vec<Event>, error: &mut Option<MqttError>) {
        for event in events {
            match event {
                Event::RequestSendPacket { packet, .. } => {
                    let bytes = packet.to_continuous_buffer();
                    self.broker.stats.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    self.outbound.send(bytes);
                }
                Event::NotifyPacketReceived(packet) => self.received.push_back(packet),
                // The keep-alive timer is this module's (see `packet_received`): the codec's
                // would run on the client's value even where Server Keep Alive replaced it.
                Event::RequestTimerReset { .. } | Event::RequestTimerCancel(_) => {}
                Event::NotifyPacketIdReleased(_) => {}
                Event::NotifyError(e) => {
                    error.get_or_insert(e);
                }
                Event::RequestClose => {
                    if self.close.is_none() {
                        self.close = Some(CloseReason::ProtocolError("protocol error: the codec closed the connection".into()));
                    }
                }
            }
        }
    }

    /// Sends a packet through the codec; returns the codec's error, if any.
    fn send_packet(&mut self, packet: Result<Packet, MqttError>) -> Option<MqttError> {
        let packet = match packet {
            Ok(packet) => packet,
            Err(error) => {
                warn!(client_id = %self.client_id, "could not build packet: {error:?}");
                return Some(error);
            }
        };
        let events = self.codec.send(packet);
        let mut error = None;
        self.apply(events, &mut error);
        error
    }

    /// Sends an acknowledgement now, or keeps it back until the store has written what it
    /// covers and every acknowledgement before it has gone out.
    fn acknowledge(&mut self, wait: Option<tokio::sync::oneshot::Receiver<()>>, packet: Result<Packet, MqttError>) {
        self.acknowledge_then_retained(wait, packet, Vec::new());
    }

    /// Like [`Client::acknowledge`] for a SUBACK, queuing the retained messages after it.
    fn acknowledge_then_retained(
        &mut self,
        wait: Option<tokio::sync::oneshot::Receiver<()>>,
        packet: Result<Packet, MqttError>,
        then_retained: Vec<(String, crate::router::SubscriptionOptions)>,
    ) {
        if wait.is_none() && self.pending_acks.is_empty() {
            self.send_packet(packet);
            self.queue_retained(then_retained);
            return;
        }
        self.pending_acks.push_back(PendingAck { wait, packet, then_retained });
    }

    fn queue_retained(&mut self, filters: Vec<(String, crate::router::SubscriptionOptions)>) {
        let Some(session) = self.session.clone() else { return };
        for (filter, options) in filters {
            self.broker.send_retained(&session, &filter, &options);
        }
    }

    /// Sends the acknowledgements whose writes are done, in order.
    fn on_store_written(&mut self, succeeded: bool) {
        if !succeeded {
            warn!(client_id = %self.client_id, "closing connection: the store could not write a message; the client will send it again");
            self.send_disconnect(DisconnectReasonCode::UnspecifiedError);
            self.close = Some(CloseReason::ProtocolError("store write failed".into()));
            return;
        }
        if let Some(front) = self.pending_acks.front_mut() {
            front.wait = None;
        }
        while let Some(front) = self.pending_acks.front_mut() {
            if let Some(wait) = front.wait.as_mut() {
                match wait.try_recv() {
                    Ok(()) => {}
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => return,
                    Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return self.on_store_written(false),
                }
            }
            let ack = self.pending_acks.pop_front().expect("front exists");
            self.send_packet(ack.packet);
            self.queue_retained(ack.then_retained);
        }
    }

    fn send_disconnect(&mut self, reason: DisconnectReasonCode) {
        if self.version == ProtocolVersion::V5 {
            self.send_packet(packets::disconnect(reason));
        }
    }

    /// Moves queued messages to the socket while the writer has room and, for QoS 1/2,
    /// while fewer than the in-flight limit are unacknowledged.
    fn fill_outbound(&mut self, session: &Arc<Session>) {
        let now = Instant::now();
        let acl = self.broker.acl();
        while self.outbound.has_room() {
            let (delivery, packet_id) = {
                let mut state = session.lock();
                let Some(delivery) = session.pop(&mut state) else { return };
                let denied = acl.as_ref().is_some_and(|acl| {
                    !acl.allows(self.username.as_deref(), &self.client_id, &delivery.message.topic, lpiotia_auth::Access::Read)
                });
                if denied {
                    debug!(client_id = %self.client_id, topic = %delivery.message.topic, "message not sent: the ACL does not allow this client to read it");
                }
                if denied || delivery.message.is_expired(now) {
                    drop(state);
                    self.broker.forget_queued(session, delivery.seq);
                    continue;
                }
                if delivery.qos == Qos::AtMostOnce {
                    (delivery, None)
                } else if state.inflight.len() >= self.inflight_limit {
                    session.requeue_front(&mut state, delivery);
                    return;
                } else {
                    let packet_id = match delivery.seq {
                        0 => state.next_packet_id(),
                        seq => Some(crate::session::packet_id_for_seq(seq)).filter(|id| !state.inflight.contains_key(id)),
                    };
                    let Some(packet_id) = packet_id else {
                        // No free packet id: wait for an acknowledgement to release one.
                        session.requeue_front(&mut state, delivery);
                        return;
                    };
                    state.inflight.insert(
                        packet_id,
                        crate::session::Outgoing {
                            delivery: delivery.clone(),
                            stage: crate::session::OutgoingStage::AwaitingAck,
                        },
                    );
                    (delivery, Some(packet_id))
                }
            };
            if let Some(packet_id) = packet_id {
                let _ = self.codec.register_packet_id(packet_id);
            }
            let packet = packets::publish(self.version, &delivery, packet_id, false, now);
            if let Some(error) = self.send_packet(packet) {
                // Typically larger than the client's Maximum Packet Size: skip this message.
                debug!(client_id = %self.client_id, topic = %delivery.message.topic, "message not sent: {error:?}");
                if let Some(packet_id) = packet_id {
                    session.lock().inflight.remove(&packet_id);
                    let _ = self.codec.release_packet_id(packet_id);
                }
                self.broker.forget_queued(session, delivery.seq);
                continue;
            }
            self.broker.stats.messages_sent.fetch_add(1, Ordering::Relaxed);
            if let Some((_, record)) = &self.record {
                record.messages_out.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// After the loop: will, session kept or ended, log line.
    async fn finish(mut self, guard: tokio::sync::OwnedMutexGuard<()>) {
        let reason = self.close.clone().unwrap_or(CloseReason::SocketClosed);
        let session = self.session.clone().expect("attached before finish");
        let pending_qos2 = self.codec.get_qos2_publish_handled();
        let expiry = {
            let mut state = session.lock();
            state.incoming_qos2 = pending_qos2.into_iter().collect();
            state.disconnected_at_ms = crate::persist::Clock::now().unix_ms();
            state.expiry
        };
        session.release_owner(self.generation);
        if expiry != SessionExpiry::OnDisconnect {
            let _ = self.broker.persist_session(&session);
        }
        match expiry {
            SessionExpiry::OnDisconnect => self.broker.end_session(&session),
            SessionExpiry::After(delay) => {
                self.broker.schedule_expiry(Arc::clone(&session), self.generation, delay)
            }
            SessionExpiry::Never => {}
        }
        if let Some(will) = self.will.take() {
            if !self.broker.may_publish(self.username.as_deref(), &self.client_id, &will.message.topic) {
                info!(client_id = %self.client_id, topic = %will.message.topic, "will not published: the ACL no longer allows its topic");
            } else if reason.publishes_will() {
                publish_will(&self.broker, &session, self.generation, will, expiry);
            }
        }
        self.broker.stats.clients_connected.fetch_sub(1, Ordering::Relaxed);
        if let Some((record_id, _)) = self.record.take() {
            self.broker.stats.unregister_client(record_id);
        }
        info!(
            listener = %self.listener.name,
            peer = %self.peer,
            client_id = %self.client_id,
            reason = %reason.describe(),
            "client disconnected"
        );
        // The next owner of the session may go on; this socket only has bytes left to flush.
        drop(guard);
        self.outbound.close().await;
    }
}

/// Waits for the store to write what the oldest held acknowledgement covers.
async fn wait_for_store(pending: &mut VecDeque<PendingAck>) -> Result<(), tokio::sync::oneshot::error::RecvError> {
    match pending.front_mut().and_then(|ack| ack.wait.as_mut()) {
        Some(wait) => wait.await,
        None => Ok(()),
    }
}

/// Gives a refusing v5 CONNACK from the codec the reason code of the error behind it: the
/// codec sends 0x80 (unspecified) where MQTT 5.0 requires 0x81 (malformed packet) or 0x82
/// (protocol error).
fn refine_connack_reason(events: &mut [Event]) {
    let code = events.iter().find_map(|event| match event {
        Event::NotifyError(MqttError::MalformedPacket) => Some(ConnectReasonCode::MalformedPacket),
        Event::NotifyError(MqttError::ProtocolError) => Some(ConnectReasonCode::ProtocolError),
        _ => None,
    });
    let Some(code) = code else { return };
    for event in events.iter_mut() {
        if let Event::RequestSendPacket { packet: packet @ Packet::V5_0Connack(_), .. } = event {
            if let Ok(connack) = mqtt_protocol_core::mqtt::packet::v5_0::Connack::builder().session_present(false).reason_code(code).build() {
                *packet = connack.into();
            }
        }
    }
}

/// Prefix of the client id that `lpiotia-mqtt healthcheck` connects with.
const HEALTH_CHECK_CLIENT_PREFIX: &str = "lpiotia-healthcheck-";

/// Returns whether a CONNECT is a health check: the health check's client id, no credentials.
fn is_health_check(request: &ConnectRequest) -> bool {
    request.client_id.starts_with(HEALTH_CHECK_CLIENT_PREFIX) && request.username.is_none()
}

/// Reads and discards what the client still sends until it closes the connection.
async fn read_until_closed<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut buf = [0u8; 1024];
    while let Ok(count) = reader.read(&mut buf).await {
        if count == 0 {
            return;
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

