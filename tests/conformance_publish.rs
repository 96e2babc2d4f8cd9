//! Conformance of PUBLISH and its QoS 1 and 2 flows, retained messages and topic names,
//! checked byte by byte against the real broker. Each test names the MQTT 3.1.1 (OASIS,
//! 2014) or 5.0 (OASIS, 2019) normative statement it checks.

mod common;
mod conformance_support;

use std::thread;
use std::time::Duration;

use conformance_support::encode::{self, ack};
use conformance_support::{assert_broker_healthy, assert_rejects, first, reason, start_broker, Props, Wire, QUIET};

/// Encodes a PUBLISH with no properties.
fn publish(level: u8, topic: &[u8], qos: u8, retain: bool, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    encode::publish(level, topic, qos, retain, packet_id, &Props::new(), payload)
}

/// Sends a forbidden PUBLISH and checks the rejection, the log and that no subscriber
/// received it.
fn assert_publish_rejected(level: u8, bytes: &[u8], v5_reason: u8) {
    let broker = start_broker("");
    let mut watcher = Wire::v311(&broker, "watcher");
    watcher.subscribe_ok(1, &[("#", 0)]);
    let client_id = format!("forbidden-publish-{level}");
    assert_rejects(&broker, level, &client_id, bytes, v5_reason);
    let leaked = watcher.drain_publishes(QUIET);
    assert!(leaked.is_empty(), "a forbidden PUBLISH was routed: {leaked:?}");
}

// MQTT-3.3.4-1: QoS 0 gets no acknowledgement; the next reply is the PINGRESP.
#[test]
fn qos0_gets_no_reply() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "qos0");
    wire.send(&publish(4, b"qos0/t", 0, false, 0, b"x"));
    wire.ping();
}

// MQTT-3.3.4-1, MQTT-2.3.1-6: QoS 1 gets PUBACK 40 02 with the same packet id.
#[test]
fn qos1_puback_bytes() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "qos1");
    wire.send(&publish(4, b"qos1/t", 1, false, 0x1234, b"x"));
    wire.expect(&[0x40, 0x02, 0x12, 0x34]);
}

// MQTT-3.3.4-1, MQTT-3.6.1-1: QoS 2 gets PUBREC; PUBREL (flags 0010) gets PUBCOMP.
#[test]
fn qos2_flow_bytes() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "qos2");
    wire.send(&publish(4, b"qos2/t", 2, false, 0x0102, b"x"));
    wire.expect(&[0x50, 0x02, 0x01, 0x02]);
    wire.send(&ack(first::PUBREL, 0x0102));
    wire.expect(&[0x70, 0x02, 0x01, 0x02]);
}

// MQTT-4.3.3-2: a QoS 2 PUBLISH re-sent (DUP 1) before PUBREL is acknowledged again but
// delivered once.
#[test]
fn qos2_duplicate_delivered_once() {
    let broker = start_broker("");
    let mut subscriber = Wire::v311(&broker, "qos2-dup-sub");
    subscriber.subscribe_ok(1, &[("qos2/dup", 2)]);

    let mut publisher = Wire::v311(&broker, "qos2-dup-pub");
    let bytes = publish(4, b"qos2/dup", 2, false, 9, b"once");
    publisher.send(&bytes);
    publisher.expect(&[0x50, 0x02, 0x00, 0x09]);
    let mut again = bytes.clone();
    again[0] |= 0x08;
    publisher.send(&again);
    publisher.expect(&[0x50, 0x02, 0x00, 0x09]);
    publisher.send(&ack(first::PUBREL, 9));
    publisher.expect(&[0x70, 0x02, 0x00, 0x09]);

    let received = subscriber.drain_publishes(Duration::from_millis(800));
    assert_eq!(received.len(), 1, "QoS 2 delivered {} times: {received:?}", received.len());
    assert_eq!(received[0].payload, b"once");
}

// MQTT-4.3.3-2 (3.1.1 section 4.3.3): PUBREL for an unknown packet id still gets PUBCOMP.
#[test]
fn pubrel_unknown_id_gets_pubcomp() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "pubrel-unknown");
    wire.send(&ack(first::PUBREL, 0x2A));
    wire.expect(&[0x70, 0x02, 0x00, 0x2A]);
}

// MQTT-3.8.4-6 (3.1.1): the delivered QoS is the minimum of the published QoS and the
// granted QoS.
#[test]
fn delivered_qos_is_minimum() {
    let broker = start_broker("");
    let mut subscriber = Wire::v311(&broker, "qos-min-sub");
    subscriber.subscribe_ok(1, &[("qos/min", 1)]);
    let mut publisher = Wire::v311(&broker, "qos-min-pub");
    publisher.publish("qos/min", 2, false, 1, &Props::new(), b"two");
    publisher.publish("qos/min", 0, false, 0, &Props::new(), b"zero");

    let first_message = subscriber.expect_publish();
    assert_eq!((first_message.payload.as_slice(), first_message.qos), (&b"two"[..], 1));
    let second_message = subscriber.expect_publish();
    assert_eq!((second_message.payload.as_slice(), second_message.qos), (&b"zero"[..], 0));
}

// MQTT-4.6.0-6: the server treats each topic as an ordered topic: QoS 1 messages from one
// publisher arrive in the order sent.
#[test]
fn qos1_order_preserved() {
    let broker = start_broker("");
    let mut subscriber = Wire::v311(&broker, "order-sub");
    subscriber.subscribe_ok(1, &[("order/t", 1)]);
    let mut publisher = Wire::v311(&broker, "order-pub");
    for index in 0..20u16 {
        publisher.send(&publish(4, b"order/t", 1, false, index + 1, index.to_string().as_bytes()));
    }
    for index in 0..20u16 {
        publisher.expect(&[0x40, 0x02, 0x00, (index + 1) as u8]);
    }
    let payloads: Vec<String> = (0..20).map(|_| subscriber.expect_publish().payload).map(|p| String::from_utf8(p).unwrap()).collect();
    let expected: Vec<String> = (0..20).map(|index| index.to_string()).collect();
    assert_eq!(payloads, expected);
}

// MQTT-3.3.1-5, MQTT-3.3.1-6, MQTT-3.3.1-8: a retained message is stored and sent to a new
// subscription with RETAIN 1.
#[test]
fn retained_sent_to_new_subscription() {
    let broker = start_broker("");
    let mut publisher = Wire::v311(&broker, "retain-pub");
    publisher.publish("retain/t", 1, true, 1, &Props::new(), b"kept");

    let mut subscriber = Wire::v311(&broker, "retain-sub");
    subscriber.subscribe_ok(1, &[("retain/t", 0)]);
    let mut expected = vec![0x31, 0x0E];
    expected.extend(b"\x00\x08retain/tkept");
    subscriber.expect(&expected);
}

// MQTT-3.3.1-9: a message forwarded to an established subscription has RETAIN 0 (3.1.1),
// even when it was published with RETAIN 1.
#[test]
fn retain_cleared_on_live_forward_v311() {
    let broker = start_broker("");
    let mut subscriber = Wire::v311(&broker, "retain-live-sub");
    subscriber.subscribe_ok(1, &[("retain/live", 0)]);
    let mut publisher = Wire::v311(&broker, "retain-live-pub");
    publisher.publish("retain/live", 0, true, 0, &Props::new(), b"v");
    let mut expected = vec![0x30, 0x0E];
    expected.extend(b"\x00\x0bretain/livev");
    subscriber.expect(&expected);
}

// MQTT-3.3.1-10, MQTT-3.3.1-11: a retained PUBLISH with an empty payload removes the
// retained message and is not stored itself.
#[test]
fn retained_cleared_by_empty_payload() {
    let broker = start_broker("");
    let mut publisher = Wire::v311(&broker, "retain-clear-pub");
    publisher.publish("retain/clear", 1, true, 1, &Props::new(), b"old");
    publisher.publish("retain/clear", 1, true, 2, &Props::new(), b"");

    let mut subscriber = Wire::v311(&broker, "retain-clear-sub");
    subscriber.subscribe_ok(1, &[("retain/clear", 0)]);
    subscriber.expect_silence(QUIET);
}

// MQTT-3.3.1-12: a PUBLISH with RETAIN 0 neither stores nor removes the retained message.
#[test]
fn retain0_keeps_retained() {
    let broker = start_broker("");
    let mut publisher = Wire::v311(&broker, "retain-keep-pub");
    publisher.publish("retain/keep", 1, true, 1, &Props::new(), b"first");
    publisher.publish("retain/keep", 1, false, 2, &Props::new(), b"second");

    let mut subscriber = Wire::v311(&broker, "retain-keep-sub");
    subscriber.subscribe_ok(1, &[("retain/keep", 0)]);
    let message = subscriber.expect_publish();
    assert_eq!(message.payload, b"first");
    assert!(message.retain);
    subscriber.expect_silence(QUIET);
}

// MQTT-3.3.2-2, MQTT-4.7.1-1: '+' in a PUBLISH topic closes the connection.
#[test]
fn topic_plus_wildcard_v311() {
    assert_publish_rejected(4, &publish(4, b"a/+/c", 0, false, 0, b"x"), reason::PROTOCOL_ERROR);
}

// MQTT-3.3.2-2: '#' in a PUBLISH topic closes the connection.
#[test]
fn topic_hash_wildcard_v311() {
    assert_publish_rejected(4, &publish(4, b"a/#", 1, false, 1, b"x"), reason::PROTOCOL_ERROR);
}

// MQTT-3.3.2-2 for 5.0: a wildcard in the topic gets DISCONNECT 0x82 (Protocol Error), as
// Mosquitto 2.0.11; 0x90 is for a well-formed topic the server does not accept.
#[test]
fn topic_plus_wildcard_v5() {
    assert_publish_rejected(5, &publish(5, b"+", 0, false, 0, b"x"), reason::PROTOCOL_ERROR);
}

// MQTT-3.3.2-2 for 5.0, '#' at QoS 1: DISCONNECT 0x82 and no PUBACK.
#[test]
fn topic_hash_wildcard_v5() {
    assert_publish_rejected(5, &publish(5, b"a/b#", 1, false, 1, b"x"), reason::PROTOCOL_ERROR);
}

// MQTT-4.7.3-1: a zero-length topic name closes the connection.
#[test]
fn topic_empty_v311() {
    assert_publish_rejected(4, &publish(4, b"", 0, false, 0, b"x"), reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 3.3.2.1: a zero-length topic without a Topic Alias is a Protocol Error.
#[test]
fn topic_empty_without_alias_v5() {
    assert_publish_rejected(5, &publish(5, b"", 1, false, 1, b"x"), reason::PROTOCOL_ERROR);
}

// MQTT-1.5.3-2, MQTT-4.7.3-2: U+0000 in the topic closes the connection.
#[test]
fn topic_null_character_v311() {
    assert_publish_rejected(4, &publish(4, b"a\0b", 0, false, 0, b"x"), reason::MALFORMED_PACKET);
}

// MQTT-1.5.4-2: U+0000 in the topic of a 5.0 PUBLISH is a Malformed Packet.
#[test]
fn topic_null_character_v5() {
    assert_publish_rejected(5, &publish(5, b"a\0b", 0, false, 0, b"x"), reason::MALFORMED_PACKET);
}

// MQTT-1.5.3-1: ill-formed UTF-8 in the topic closes the connection.
#[test]
fn topic_invalid_utf8_v311() {
    assert_publish_rejected(4, &publish(4, b"a/\xC3\x28", 0, false, 0, b"x"), reason::MALFORMED_PACKET);
}

// MQTT-1.5.3-1: an encoded surrogate (ED A0 80) in the topic closes the connection.
#[test]
fn topic_surrogate_v311() {
    assert_publish_rejected(4, &publish(4, b"a/\xED\xA0\x80", 0, false, 0, b"x"), reason::MALFORMED_PACKET);
}

// MQTT-1.5.4-1: ill-formed UTF-8 in a 5.0 topic is a Malformed Packet.
#[test]
fn topic_invalid_utf8_v5() {
    assert_publish_rejected(5, &publish(5, b"a/\xFF", 1, false, 1, b"x"), reason::MALFORMED_PACKET);
}

// MQTT-3.3.1-4: QoS 3 (both QoS bits set) closes the connection.
#[test]
fn qos3_v311() {
    let mut bytes = publish(4, b"qos/3", 0, false, 0, b"x");
    bytes[0] = 0x36;
    assert_publish_rejected(4, &bytes, reason::MALFORMED_PACKET);
}

// MQTT-3.3.1-4 for 5.0: QoS 3 is a Malformed Packet, DISCONNECT 0x81.
#[test]
fn qos3_v5() {
    let mut bytes = publish(5, b"qos/3", 1, false, 1, b"x");
    bytes[0] = 0x36;
    assert_publish_rejected(5, &bytes, reason::MALFORMED_PACKET);
}

// MQTT-2.3.1-1: a QoS 1 PUBLISH needs a non-zero packet id.
#[test]
fn packet_id_zero_qos1_v311() {
    assert_publish_rejected(4, &publish(4, b"pid/zero", 1, false, 0, b"x"), reason::PROTOCOL_ERROR);
}

// MQTT-2.2.1-3 (5.0): packet id 0 on a QoS 2 PUBLISH is a Protocol Error, DISCONNECT 0x82
// (Mosquitto treats it as a protocol error).
#[test]
fn packet_id_zero_qos2_v5() {
    assert_publish_rejected(5, &publish(5, b"pid/zero", 2, false, 0, b"x"), reason::PROTOCOL_ERROR);
}

/// Returns a topic name of `levels` levels ("l/l/...").
fn topic_of_levels(levels: usize) -> String {
    vec!["l"; levels].join("/")
}

// limits.max_topic_levels (default 128): a 128-level topic is routed.
#[test]
fn topic_at_max_levels_routed() {
    let broker = start_broker("");
    let topic = topic_of_levels(128);
    let mut subscriber = Wire::v311(&broker, "levels-sub");
    subscriber.subscribe_ok(1, &[("l/#", 0)]);
    let mut publisher = Wire::v311(&broker, "levels-pub");
    publisher.publish(&topic, 1, false, 1, &Props::new(), b"deep");
    assert_eq!(subscriber.expect_publish().topic, topic);
}

// limits.max_topic_levels: a 129-level topic name is refused like an invalid one.
#[test]
fn topic_over_max_levels_v311() {
    assert_publish_rejected(4, &publish(4, topic_of_levels(129).as_bytes(), 0, false, 0, b"x"), reason::TOPIC_NAME_INVALID);
}

// limits.max_topic_levels for 5.0: DISCONNECT 0x90, the topic being well formed but not
// accepted.
#[test]
fn topic_over_max_levels_v5() {
    assert_publish_rejected(5, &publish(5, topic_of_levels(129).as_bytes(), 1, false, 1, b"x"), reason::TOPIC_NAME_INVALID);
}

// A 30,000-level topic name is refused quickly and leaves the broker healthy.
#[test]
fn topic_with_30000_levels() {
    assert_publish_rejected(4, &publish(4, topic_of_levels(30_000).as_bytes(), 0, false, 0, b"x"), reason::TOPIC_NAME_INVALID);
}

// MQTT-4.7.3-3 and MQTT-1.5.3 (3.1.1): a topic of 65,535 bytes, the longest a string can
// be, is valid and routed.
#[test]
fn topic_of_65535_bytes_routed() {
    let broker = start_broker("");
    let topic = format!("long/{}", "x".repeat(65_535 - 5));
    let mut subscriber = Wire::v311(&broker, "long-sub");
    subscriber.subscribe_ok(1, &[("long/+", 0)]);
    let mut publisher = Wire::v311(&broker, "long-pub");
    publisher.publish(&topic, 1, false, 1, &Props::new(), b"x");
    assert_eq!(subscriber.expect_publish().topic.len(), 65_535);
}

// Section 4.7.3 (3.1.1): topics are case-sensitive and may contain spaces; a topic that
// differs only in case does not match.
#[test]
fn topic_matching_case_sensitive() {
    let broker = start_broker("");
    let mut subscriber = Wire::v311(&broker, "case-sub");
    subscriber.subscribe_ok(1, &[("Case/Topic name", 0)]);
    let mut publisher = Wire::v311(&broker, "case-pub");
    publisher.publish("case/topic name", 1, false, 1, &Props::new(), b"lower");
    publisher.publish("Case/Topic name", 1, false, 2, &Props::new(), b"exact");
    let received = subscriber.drain_publishes(QUIET);
    let payloads: Vec<&[u8]> = received.iter().map(|message| message.payload.as_slice()).collect();
    assert_eq!(payloads, vec![&b"exact"[..]]);
}

// MQTT-3.3.2-3: the delivered topic name is the published one, not the matching filter.
#[test]
fn delivered_topic_is_published_name() {
    let broker = start_broker("");
    let mut subscriber = Wire::v311(&broker, "name-sub");
    subscriber.subscribe_ok(1, &[("name/+/x", 0)]);
    let mut publisher = Wire::v311(&broker, "name-pub");
    publisher.publish("name/abc/x", 0, false, 0, &Props::new(), b"p");
    let mut expected = vec![0x30, 0x0D];
    expected.extend(b"\x00\x0aname/abc/xp");
    subscriber.expect(&expected);
}

// A 5.0 subscriber receives a 3.1.1 publisher's message with an empty property block, and
// a 3.1.1 subscriber receives a 5.0 message without properties.
#[test]
fn publish_across_protocol_versions() {
    let broker = start_broker("");
    let mut v311 = Wire::v311(&broker, "cross-311");
    v311.subscribe_ok(1, &[("cross/5", 0)]);
    let mut v5 = Wire::login(&broker, 5, "cross-5");
    v5.subscribe_ok(1, &[("cross/311", 0)]);

    v311.publish("cross/311", 0, false, 0, &Props::new(), b"a");
    let mut expected_v5 = vec![0x30, 0x0D];
    expected_v5.extend(b"\x00\x09cross/311\x00a");
    v5.expect(&expected_v5);

    let props = Props::new().str(conformance_support::prop::CONTENT_TYPE, "text/plain").user("k", "v");
    v5.publish("cross/5", 0, false, 0, &props, b"b");
    let mut expected_v311 = vec![0x30, 0x0A];
    expected_v311.extend(b"\x00\x07cross/5b");
    v311.expect(&expected_v311);
    thread::sleep(Duration::from_millis(100));
    assert_broker_healthy(&broker);
}

// As in Mosquitto, PINGRESP goes out behind the PUBLISH packets already queued for the
// client, never ahead of them. The subscriber stops reading while 9 MiB of
// messages wait for it, then sends PINGREQ: every PUBLISH must arrive before PINGRESP.
#[test]
fn pingresp_after_queued_publishes() {
    const COUNT: usize = 600;
    let broker = start_broker("");
    let mut subscriber = Wire::v311(&broker, "order-sub");
    subscriber.subscribe_ok(1, &[("order/#", 0)]);
    let mut publisher = Wire::v311(&broker, "order-pub");
    let payload = vec![b'x'; 16 * 1024];
    for index in 0..COUNT {
        publisher.publish(&format!("order/{index}"), 0, false, 0, &Props::new(), &payload);
    }
    // The PINGRESP shows that the broker has read, so routed, every message.
    publisher.ping();
    subscriber.send(&[first::PINGREQ, 0x00]);
    let mut publishes = 0;
    loop {
        let frame = subscriber.expect_frame("PUBLISH or PINGRESP");
        match frame.kind() {
            3 => publishes += 1,
            13 => break,
            _ => panic!("expected PUBLISH or PINGRESP, received {frame:?}"),
        }
    }
    assert_eq!(publishes, COUNT, "PINGRESP arrived after {publishes} of {COUNT} queued messages");
    assert_broker_healthy(&broker);
}
