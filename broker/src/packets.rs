//! Building the packets the broker sends, for the protocol version of each connection.

use std::time::Instant;

use mqtt_protocol_core::mqtt::packet::{
    v3_1_1, v5_0, MessageExpiryInterval, Packet, Property, Qos, SubscriptionIdentifier,
};
use mqtt_protocol_core::mqtt::result_code::{
    ConnectReasonCode, ConnectReturnCode, DisconnectReasonCode, MqttError, PubackReasonCode,
    PubrecReasonCode, SubackReasonCode, SubackReturnCode, UnsubackReasonCode,
};

use crate::handshake::ProtocolVersion;
use crate::message::Delivery;

/// Builds the PUBLISH that carries `delivery` to a client.
pub fn publish(
    version: ProtocolVersion,
    delivery: &Delivery,
    packet_id: Option<u16>,
    dup: bool,
    now: Instant,
) -> Result<Packet, MqttError> {
    let message = &delivery.message;
    if version != ProtocolVersion::V5 {
        let mut builder = v3_1_1::Publish::builder()
            .topic_name(message.topic.as_ref())?
            .qos(delivery.qos)
            .retain(delivery.retain)
            .dup(dup)
            .payload(message.payload.clone());
        if let Some(id) = packet_id {
            builder = builder.packet_id(id);
        }
        return Ok(builder.build()?.into());
    }
    let mut props: Vec<Property> = message.properties.clone();
    if let Some(remaining) = message.remaining_expiry_secs(now) {
        props.push(MessageExpiryInterval::new(remaining)?.into());
    }
    for id in &delivery.subscription_ids {
        props.push(SubscriptionIdentifier::new(*id)?.into());
    }
    let mut builder = v5_0::Publish::builder()
        .topic_name(message.topic.as_ref())?
        .qos(delivery.qos)
        .retain(delivery.retain)
        .dup(dup)
        .payload(message.payload.clone());
    if !props.is_empty() {
        builder = builder.props(props);
    }
    if let Some(id) = packet_id {
        builder = builder.packet_id(id);
    }
    Ok(builder.build()?.into())
}

/// Outcome of CONNECT, in the terms both protocol versions can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    Accepted,
    /// Username or password wrong, or user unknown.
    BadCredentials,
    /// No credentials where the listener requires them.
    NotAuthorized,
    ClientIdRejected,
    ServerUnavailable,
    /// v5 only: the will topic is not a valid topic name.
    TopicNameInvalid,
}

impl ConnectOutcome {
    pub fn v3_code(self) -> ConnectReturnCode {
        match self {
            ConnectOutcome::Accepted => ConnectReturnCode::Accepted,
            ConnectOutcome::BadCredentials | ConnectOutcome::NotAuthorized => ConnectReturnCode::NotAuthorized,
            ConnectOutcome::ClientIdRejected => ConnectReturnCode::IdentifierRejected,
            ConnectOutcome::ServerUnavailable => ConnectReturnCode::ServerUnavailable,
            ConnectOutcome::TopicNameInvalid => ConnectReturnCode::NotAuthorized,
        }
    }

    pub fn v5_code(self) -> ConnectReasonCode {
        match self {
            ConnectOutcome::Accepted => ConnectReasonCode::Success,
            ConnectOutcome::BadCredentials => ConnectReasonCode::BadUserNameOrPassword,
            ConnectOutcome::NotAuthorized => ConnectReasonCode::NotAuthorized,
            ConnectOutcome::ClientIdRejected => ConnectReasonCode::ClientIdentifierNotValid,
            ConnectOutcome::ServerUnavailable => ConnectReasonCode::ServerUnavailable,
            ConnectOutcome::TopicNameInvalid => ConnectReasonCode::TopicNameInvalid,
        }
    }
}

/// Builds CONNACK; `v5_props` are sent to v5 clients only.
pub fn connack(
    version: ProtocolVersion,
    outcome: ConnectOutcome,
    session_present: bool,
    v5_props: Vec<Property>,
) -> Result<Packet, MqttError> {
    match version {
        // MQTT 3.1 has no Session Present flag: that byte is reserved and must be 0.
        ProtocolVersion::V3_1 => Ok(v3_1_1::Connack::builder()
            .session_present(false)
            .return_code(outcome.v3_code())
            .build()?
            .into()),
        ProtocolVersion::V3_1_1 => Ok(v3_1_1::Connack::builder()
            .session_present(session_present)
            .return_code(outcome.v3_code())
            .build()?
            .into()),
        ProtocolVersion::V5 => {
            let mut builder = v5_0::Connack::builder()
                .session_present(session_present)
                .reason_code(outcome.v5_code());
            if !v5_props.is_empty() {
                builder = builder.props(v5_props);
            }
            Ok(builder.build()?.into())
        }
    }
}

/// Result of one SUBSCRIBE entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeOutcome {
    Granted(Qos),
    TopicFilterInvalid,
    /// The ACL does not allow this client to read the filter: 0x80 (3.1.1), 0x87 (5.0).
    NotAuthorized,
}

pub fn suback(version: ProtocolVersion, packet_id: u16, outcomes: &[SubscribeOutcome]) -> Result<Packet, MqttError> {
    if version != ProtocolVersion::V5 {
        let codes = outcomes
            .iter()
            .map(|outcome| match outcome {
                SubscribeOutcome::Granted(Qos::AtMostOnce) => SubackReturnCode::SuccessMaximumQos0,
                SubscribeOutcome::Granted(Qos::AtLeastOnce) => SubackReturnCode::SuccessMaximumQos1,
                SubscribeOutcome::Granted(Qos::ExactlyOnce) => SubackReturnCode::SuccessMaximumQos2,
                _ => SubackReturnCode::Failure,
            })
            .collect();
        return Ok(v3_1_1::Suback::builder().packet_id(packet_id).return_codes(codes).build()?.into());
    }
    let codes = outcomes
        .iter()
        .map(|outcome| match outcome {
            SubscribeOutcome::Granted(Qos::AtMostOnce) => SubackReasonCode::GrantedQos0,
            SubscribeOutcome::Granted(Qos::AtLeastOnce) => SubackReasonCode::GrantedQos1,
            SubscribeOutcome::Granted(Qos::ExactlyOnce) => SubackReasonCode::GrantedQos2,
            SubscribeOutcome::TopicFilterInvalid => SubackReasonCode::TopicFilterInvalid,
            SubscribeOutcome::NotAuthorized => SubackReasonCode::NotAuthorized,
        })
        .collect();
    Ok(v5_0::Suback::builder().packet_id(packet_id).reason_codes(codes).build()?.into())
}

/// Builds UNSUBACK. For v5, `existed` gives per filter whether the subscription was there.
pub fn unsuback(version: ProtocolVersion, packet_id: u16, existed: &[Option<bool>]) -> Result<Packet, MqttError> {
    if version != ProtocolVersion::V5 {
        return Ok(v3_1_1::Unsuback::builder().packet_id(packet_id).build()?.into());
    }
    let codes = existed
        .iter()
        .map(|entry| match entry {
            Some(true) => UnsubackReasonCode::Success,
            Some(false) => UnsubackReasonCode::NoSubscriptionExisted,
            None => UnsubackReasonCode::TopicFilterInvalid,
        })
        .collect();
    Ok(v5_0::Unsuback::builder().packet_id(packet_id).reason_codes(codes).build()?.into())
}

/// Builds the PUBACK of an incoming QoS 1 PUBLISH. For v5 it carries 0x10 when no subscriber matched.
pub fn puback(version: ProtocolVersion, packet_id: u16, matched: bool) -> Result<Packet, MqttError> {
    if version != ProtocolVersion::V5 {
        return Ok(v3_1_1::Puback::builder().packet_id(packet_id).build()?.into());
    }
    let mut builder = v5_0::Puback::builder().packet_id(packet_id);
    if !matched {
        builder = builder.reason_code(PubackReasonCode::NoMatchingSubscribers);
    }
    Ok(builder.build()?.into())
}

/// Builds the PUBACK of a PUBLISH the client may not make: 0x87 for v5, a plain PUBACK for
/// older versions, which have no code for it.
pub fn puback_not_authorized(version: ProtocolVersion, packet_id: u16) -> Result<Packet, MqttError> {
    if version != ProtocolVersion::V5 {
        return puback(version, packet_id, true);
    }
    Ok(v5_0::Puback::builder().packet_id(packet_id).reason_code(PubackReasonCode::NotAuthorized).build()?.into())
}

/// PUBREC for a QoS 2 PUBLISH the client may not make.
pub fn pubrec_not_authorized(version: ProtocolVersion, packet_id: u16) -> Result<Packet, MqttError> {
    if version != ProtocolVersion::V5 {
        return pubrec(version, packet_id, true);
    }
    Ok(v5_0::Pubrec::builder().packet_id(packet_id).reason_code(PubrecReasonCode::NotAuthorized).build()?.into())
}

/// PUBREC for an incoming QoS 2 PUBLISH.
pub fn pubrec(version: ProtocolVersion, packet_id: u16, matched: bool) -> Result<Packet, MqttError> {
    if version != ProtocolVersion::V5 {
        return Ok(v3_1_1::Pubrec::builder().packet_id(packet_id).build()?.into());
    }
    let mut builder = v5_0::Pubrec::builder().packet_id(packet_id);
    if !matched {
        builder = builder.reason_code(PubrecReasonCode::NoMatchingSubscribers);
    }
    Ok(builder.build()?.into())
}

pub fn pubrel(version: ProtocolVersion, packet_id: u16) -> Result<Packet, MqttError> {
    if version != ProtocolVersion::V5 {
        return Ok(v3_1_1::Pubrel::builder().packet_id(packet_id).build()?.into());
    }
    Ok(v5_0::Pubrel::builder().packet_id(packet_id).build()?.into())
}

pub fn pubcomp(version: ProtocolVersion, packet_id: u16) -> Result<Packet, MqttError> {
    if version != ProtocolVersion::V5 {
        return Ok(v3_1_1::Pubcomp::builder().packet_id(packet_id).build()?.into());
    }
    Ok(v5_0::Pubcomp::builder().packet_id(packet_id).build()?.into())
}

/// DISCONNECT from the server; only MQTT 5.0 has one.
pub fn disconnect(reason: DisconnectReasonCode) -> Result<Packet, MqttError> {
    Ok(v5_0::Disconnect::builder().reason_code(reason).build()?.into())
}

/// Longest Reason String the broker sends, in bytes; longer explanations are cut.
const MAX_REASON_STRING: usize = 256;

/// Builds a DISCONNECT from the server with a Reason String that explains it, for MQTT 5.0
/// clients. MQTT 5.0 allows that Reason String even with Request Problem Information 0.
pub fn disconnect_explained(reason: DisconnectReasonCode, explanation: &str) -> Result<Packet, MqttError> {
    let mut end = explanation.len().min(MAX_REASON_STRING);
    while !explanation.is_char_boundary(end) {
        end -= 1;
    }
    let reason_string = mqtt_protocol_core::mqtt::packet::ReasonString::new(&explanation[..end])?;
    Ok(v5_0::Disconnect::builder().reason_code(reason).props(vec![reason_string.into()]).build()?.into())
}
