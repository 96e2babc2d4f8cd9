//! Handlers for the packets a client sends after CONNECT.

use std::sync::Arc;
use std::time::Instant;

use mqtt_protocol_core::mqtt::packet::{Packet, Property, Qos, SubEntry};
use mqtt_protocol_core::mqtt::result_code::DisconnectReasonCode;
use tracing::{debug, info, warn};

use super::{Client, CloseReason};
use crate::message::Message;
use crate::packets::{self, SubscribeOutcome};
use crate::router::SubscriptionOptions;
use crate::session::{OutgoingStage, SessionExpiry};
use crate::topic::{validate_topic_name, SubscriptionFilter};

/// One SUBSCRIBE entry in version-neutral form.
struct SubscribeEntry {
    filter: String,
    qos: Qos,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
}

impl SubscribeEntry {
    fn from_codec(entry: &SubEntry) -> Self {
        let opts = entry.sub_opts();
        SubscribeEntry {
            filter: entry.topic_filter().to_owned(),
            qos: opts.qos(),
            no_local: opts.nl(),
            retain_as_published: opts.rap(),
            retain_handling: opts.rh() as u8,
        }
    }
}

impl Client {
    /// Ends the connection for a packet the protocol forbids: v5 gets DISCONNECT with
    /// `reason` first, older versions a close.
    fn protocol_violation(&mut self, reason: DisconnectReasonCode, description: &str) {
        warn!(peer = %self.peer, client_id = %self.client_id, "closing connection: {description}");
        self.send_disconnect(reason);
        self.close = Some(CloseReason::ProtocolError(format!("protocol error: {description}")));
    }

    /// Acts on every decoded packet, in arrival order.
    pub(super) fn process_received(&mut self) {
        while let Some(packet) = self.received.pop_front() {
            if self.close.is_some() {
                self.received.clear();
                return;
            }
            self.handle_packet(packet);
        }
    }

    fn handle_packet(&mut self, packet: Packet) {
        match packet {
            Packet::V3_1_1Publish(p) => {
                let message = self.message_from(p.topic_name(), p.payload().clone(), p.qos(), p.retain(), &[]);
                self.on_publish(message, p.packet_id());
            }
            Packet::V5_0Publish(p) => {
                let message = self.message_from(p.topic_name(), p.payload().clone(), p.qos(), p.retain(), p.props());
                self.on_publish(message, p.packet_id());
            }
            Packet::V3_1_1Pubrel(p) => self.on_pubrel(p.packet_id()),
            Packet::V5_0Pubrel(p) => self.on_pubrel(p.packet_id()),
            Packet::V3_1_1Puback(p) => self.on_acknowledged(p.packet_id()),
            Packet::V5_0Puback(p) => self.on_acknowledged(p.packet_id()),
            Packet::V3_1_1Pubcomp(p) => self.on_acknowledged(p.packet_id()),
            Packet::V5_0Pubcomp(p) => self.on_acknowledged(p.packet_id()),
            Packet::V3_1_1Pubrec(p) => self.on_pubrec(p.packet_id(), true),
            Packet::V5_0Pubrec(p) => {
                let accepted = p.reason_code().is_none_or(|code| (code as u8) < 0x80);
                self.on_pubrec(p.packet_id(), accepted);
            }
            Packet::V3_1_1Subscribe(p) => {
                let entries = p.entries().iter().map(SubscribeEntry::from_codec).collect();
                self.on_subscribe(p.packet_id(), entries, None);
            }
            Packet::V5_0Subscribe(p) => {
                let identifier = p.props().iter().find_map(|prop| match prop {
                    Property::SubscriptionIdentifier(id) => Some(id.val()),
                    _ => None,
                });
                let entries = p.entries().iter().map(SubscribeEntry::from_codec).collect();
                self.on_subscribe(p.packet_id(), entries, identifier);
            }
            Packet::V3_1_1Unsubscribe(p) => {
                let filters = p.entries().iter().map(|f| f.as_str().to_owned()).collect();
                self.on_unsubscribe(p.packet_id(), filters);
            }
            Packet::V5_0Unsubscribe(p) => {
                let filters = p.entries().iter().map(|f| f.as_str().to_owned()).collect();
                self.on_unsubscribe(p.packet_id(), filters);
            }
            Packet::V3_1_1Disconnect(_) => {
                self.close = Some(CloseReason::ClientDisconnect { with_will: false });
            }
            Packet::V5_0Disconnect(p) => self.on_v5_disconnect(&p),
            Packet::V3_1_1Pingreq(_) | Packet::V5_0Pingreq(_) => {}
            other => {
                debug!(client_id = %self.client_id, "ignoring unexpected packet {other:?}");
            }
        }
    }

    fn message_from(
        &self,
        topic: &str,
        payload: mqtt_protocol_core::mqtt::ArcPayload,
        qos: Qos,
        retain: bool,
        props: &[Property],
    ) -> Result<Message, (DisconnectReasonCode, String)> {
        validate_topic_name(topic, self.broker.config.max_topic_levels)
            .map_err(|e| (DisconnectReasonCode::TopicNameInvalid, format!("PUBLISH topic {:?}: {e}", topic.escape_debug().to_string())))?;
        let (properties, expires_at) = Message::forwarded_properties(props, Instant::now());
        Ok(Message {
            topic: Arc::from(topic),
            payload,
            qos,
            retain,
            properties,
            expires_at,
            origin: self.session.as_ref().map_or(0, |s| s.id),
        })
    }

    fn on_publish(&mut self, message: Result<Message, (DisconnectReasonCode, String)>, packet_id: Option<u16>) {
        self.is_publisher = true;
        if let Some((_, record)) = &self.record {
            record.messages_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let message = match message {
            Ok(message) => message,
            Err((code, reason)) => return self.protocol_violation(code, &format!("invalid {reason}")),
        };
        if message.topic.starts_with(crate::sys::SYS_PREFIX) {
            // Only the broker publishes $SYS topics; like Mosquitto, acknowledge and drop.
            debug!(client_id = %self.client_id, topic = %message.topic, "PUBLISH to a $SYS topic dropped");
            return self.acknowledge_not_authorized(message.qos, packet_id);
        }
        if !self.broker.may_publish(self.username.as_deref(), &self.client_id, &message.topic) {
            // MQTT 3.1.1 has no way to refuse: the message is acknowledged and dropped, as
            // Mosquitto does. MQTT 5.0 clients get reason 0x87 (Not authorized).
            debug!(client_id = %self.client_id, topic = %message.topic, "PUBLISH dropped: the ACL does not allow this client to write it");
            return self.acknowledge_not_authorized(message.qos, packet_id);
        }
        let qos = message.qos;
        let mut ops = Vec::new();
        if let (Qos::ExactlyOnce, Some(packet_id), Some(session)) = (qos, packet_id, &self.session) {
            session.lock().incoming_qos2.insert(packet_id);
            ops.extend(self.broker.incoming_qos2_op(session));
        }
        let outcome = self.broker.publish_with(message, ops);
        let matched = outcome.queued > 0;
        let Some(packet_id) = packet_id else { return };
        match qos {
            Qos::AtLeastOnce => {
                let puback = packets::puback(self.version, packet_id, matched);
                self.acknowledge(outcome.durable, puback);
            }
            Qos::ExactlyOnce => {
                let pubrec = packets::pubrec(self.version, packet_id, matched);
                self.acknowledge(outcome.durable, pubrec);
            }
            Qos::AtMostOnce => {}
        }
    }

    /// Acknowledges a PUBLISH that was dropped: reason 0x87 (Not authorized) for MQTT 5.0,
    /// a plain PUBACK or PUBREC for 3.1.1, nothing at QoS 0.
    fn acknowledge_not_authorized(&mut self, qos: Qos, packet_id: Option<u16>) {
        match (qos, packet_id) {
            (Qos::AtLeastOnce, Some(id)) => self.acknowledge(None, packets::puback_not_authorized(self.version, id)),
            (Qos::ExactlyOnce, Some(id)) => self.acknowledge(None, packets::pubrec_not_authorized(self.version, id)),
            _ => {}
        }
    }

    fn on_pubrel(&mut self, packet_id: u16) {
        if let Some(session) = self.session.clone() {
            session.lock().incoming_qos2.remove(&packet_id);
            if let (Some(store), Some(op)) = (&self.broker.store, self.broker.incoming_qos2_op(&session)) {
                store.submit_background(vec![op]);
            }
        }
        let pubcomp = packets::pubcomp(self.version, packet_id);
        self.acknowledge(None, pubcomp);
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2): the message has left our hands.
    fn on_acknowledged(&mut self, packet_id: u16) {
        let Some(session) = self.session.clone() else { return };
        let removed = session.lock().inflight.remove(&packet_id);
        if let Some(outgoing) = removed {
            self.broker.forget_queued(&session, outgoing.delivery.seq);
        }
    }

    fn on_pubrec(&mut self, packet_id: u16, accepted: bool) {
        let Some(session) = self.session.clone() else { return };
        if !accepted {
            let removed = session.lock().inflight.remove(&packet_id);
            if let Some(outgoing) = removed {
                self.broker.forget_queued(&session, outgoing.delivery.seq);
            }
            return;
        }
        let delivery = session.lock().inflight.get_mut(&packet_id).map(|outgoing| {
            outgoing.stage = OutgoingStage::AwaitingPubcomp;
            outgoing.delivery.clone()
        });
        // PUBREL goes out only once the store has recorded that the client has the message: after a crash
        // the broker must send PUBREL again, not the PUBLISH.
        let durable = delivery.and_then(|delivery| {
            self.broker.update_queued(&session, &delivery, Some(OutgoingStage::AwaitingPubcomp), packet_id)
        });
        let pubrel = packets::pubrel(self.version, packet_id);
        self.acknowledge(durable, pubrel);
    }

    fn on_subscribe(&mut self, packet_id: u16, entries: Vec<SubscribeEntry>, identifier: Option<u32>) {
        let Some(session) = self.session.clone() else { return };
        let max_levels = self.broker.config.max_topic_levels;
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut retained_to_send = Vec::new();
        for entry in entries {
            let filter = match SubscriptionFilter::parse(&entry.filter, max_levels) {
                Ok(filter) => filter,
                Err(error) if error.is_malformed() => {
                    // A filter that breaks the syntax rules (MQTT-4.7.1-2, 4.7.1-3, 4.7.3-1,
                    // 1.5.3-2) closes the connection, as Mosquitto does. A well-formed filter
                    // over a limit gets a failure code in SUBACK instead.
                    let description = format!("malformed topic filter {:?}: {error}", entry.filter.escape_debug().to_string());
                    return self.protocol_violation(DisconnectReasonCode::MalformedPacket, &description);
                }
                Err(error) => {
                    warn!(client_id = %self.client_id, filter = %entry.filter.escape_debug(), "subscription rejected: invalid topic filter: {error}");
                    outcomes.push(SubscribeOutcome::TopicFilterInvalid);
                    continue;
                }
            };
            if !self.broker.may_subscribe(self.username.as_deref(), &self.client_id, &filter.filter) {
                info!(
                    peer = %self.peer,
                    client_id = %self.client_id,
                    username = self.username.as_deref().unwrap_or(""),
                    filter = %entry.filter.escape_debug(),
                    "subscription refused: the ACL does not allow this client to read it"
                );
                outcomes.push(SubscribeOutcome::NotAuthorized);
                continue;
            }
            let options = SubscriptionOptions {
                qos: entry.qos,
                no_local: entry.no_local,
                retain_as_published: entry.retain_as_published,
                retain_handling: entry.retain_handling,
                identifier,
            };
            let existed = self.broker.router.write().subscribe(&session, &filter, options);
            session.lock().subscriptions.insert(filter.to_string(), (filter.clone(), options));
            debug!(client_id = %self.client_id, filter = %filter, qos = entry.qos as u8, "subscribed");
            outcomes.push(SubscribeOutcome::Granted(entry.qos));
            let send_retained = filter.share_group.is_none()
                && match options.retain_handling {
                    0 => true,
                    1 => !existed,
                    _ => false,
                };
            if send_retained {
                retained_to_send.push((filter.filter, options));
            }
        }
        let durable = self.broker.persist_session(&session);
        let suback = packets::suback(self.version, packet_id, &outcomes);
        // Retained messages go into the queue after SUBACK, so they reach the client after it.
        self.acknowledge_then_retained(durable, suback, retained_to_send);
    }

    fn on_unsubscribe(&mut self, packet_id: u16, filters: Vec<String>) {
        let Some(session) = self.session.clone() else { return };
        let max_levels = self.broker.config.max_topic_levels;
        let mut existed = Vec::with_capacity(filters.len());
        for raw in filters {
            let filter = match SubscriptionFilter::parse(&raw, max_levels) {
                Ok(filter) => filter,
                Err(error) if error.is_malformed() => {
                    let description = format!("malformed topic filter {:?}: {error}", raw.escape_debug().to_string());
                    return self.protocol_violation(DisconnectReasonCode::MalformedPacket, &description);
                }
                Err(_) => {
                    existed.push(None);
                    continue;
                }
            };
            let removed = self.broker.router.write().unsubscribe(session.id, &filter);
            session.lock().subscriptions.remove(&filter.to_string());
            existed.push(Some(removed));
        }
        let durable = self.broker.persist_session(&session);
        let unsuback = packets::unsuback(self.version, packet_id, &existed);
        self.acknowledge(durable, unsuback);
    }

    fn on_v5_disconnect(&mut self, packet: &mqtt_protocol_core::mqtt::packet::v5_0::Disconnect) {
        let with_will = packet.reason_code().is_some_and(|code| code as u8 == 0x04);
        let new_expiry = packet.props.as_ref().and_then(|props| {
            props.iter().find_map(|prop| match prop {
                Property::SessionExpiryInterval(v) => Some(v.val()),
                _ => None,
            })
        });
        if let (Some(interval), Some(session)) = (new_expiry, &self.session) {
            let mut state = session.lock();
            if state.expiry == SessionExpiry::OnDisconnect && interval != 0 {
                // MQTT-3.14.2-2: a session that was to end at disconnect cannot be extended here.
                drop(state);
                return self.protocol_violation(
                    DisconnectReasonCode::ProtocolError,
                    "DISCONNECT sets a session expiry after CONNECT set 0",
                );
            }
            state.expiry = SessionExpiry::from_interval(interval);
        }
        self.close = Some(CloseReason::ClientDisconnect { with_will });
    }
}
