//! The broker's own form of an application message, independent of the protocol version
//! it arrived in, and the per-subscriber copy that waits in a session queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_protocol_core::mqtt::packet::{Property, Qos};
use mqtt_protocol_core::mqtt::ArcPayload;

/// Fixed per-message overhead added to payload and topic sizes when accounting queue memory.
const MESSAGE_OVERHEAD_BYTES: usize = 96;

/// An application message as received from a publisher (or made from a will).
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic name, validated, without topic alias.
    pub topic: Arc<str>,
    pub payload: ArcPayload,
    /// QoS the publisher used; a subscriber gets min(this, its subscription QoS).
    pub qos: Qos,
    /// RETAIN flag as published.
    pub retain: bool,
    /// MQTT 5.0 properties forwarded unchanged to v5 subscribers: payload format, content
    /// type, response topic, correlation data and user properties. Topic alias, subscription
    /// identifiers and message expiry are never stored here.
    pub properties: Vec<Property>,
    /// When the message stops being delivered (v5 Message Expiry Interval).
    pub expires_at: Option<Instant>,
    /// Session id of the publisher, for the v5 No Local option; 0 for broker-made messages.
    pub origin: u64,
}

impl Message {
    /// Returns the memory this message is counted for in queues and the retained store.
    pub fn cost(&self) -> usize {
        self.payload.len() + self.topic.len() + MESSAGE_OVERHEAD_BYTES
    }

    /// Returns whether the message expiry interval has passed.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|deadline| deadline <= now)
    }

    /// Returns the remaining expiry interval in whole seconds (at least 1), if one was set.
    pub fn remaining_expiry_secs(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|deadline| {
            let remaining = deadline.saturating_duration_since(now);
            u32::try_from(remaining.as_secs().max(1)).unwrap_or(u32::MAX)
        })
    }

    /// Splits v5 PUBLISH properties into the forwarded set and the expiry deadline.
    pub fn forwarded_properties(props: &[Property], now: Instant) -> (Vec<Property>, Option<Instant>) {
        let mut kept = Vec::new();
        let mut expires_at = None;
        for prop in props {
            match prop {
                Property::MessageExpiryInterval(interval) => {
                    expires_at = Some(now + Duration::from_secs(u64::from(interval.val())));
                }
                Property::TopicAlias(_) | Property::SubscriptionIdentifier(_) => {}
                other => kept.push(other.clone()),
            }
        }
        (kept, expires_at)
    }
}

/// One subscriber's copy of a message, waiting in its session queue or in flight.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// QoS this subscriber receives: min(publish QoS, subscription QoS).
    pub qos: Qos,
    /// RETAIN flag to send: set for retained messages sent on SUBSCRIBE, and for live
    /// messages only where the v5 Retain As Published option is set.
    pub retain: bool,
    /// v5 Subscription Identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
    /// Sequence number of this entry in the store; 0 when it is not stored (QoS 0, clean
    /// sessions, persistence off).
    pub seq: u64,
}

/// Returns the lower of two QoS levels.
pub fn min_qos(a: Qos, b: Qos) -> Qos {
    if (a as u8) <= (b as u8) {
        a
    } else {
        b
    }
}

/// Converts a QoS number from the wire; values above 2 are rejected by the codec first.
pub fn qos_from_u8(value: u8) -> Qos {
    match value {
        0 => Qos::AtMostOnce,
        1 => Qos::AtLeastOnce,
        _ => Qos::ExactlyOnce,
    }
}
