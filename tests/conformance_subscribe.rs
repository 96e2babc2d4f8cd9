//! Conformance of SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK, topic filters and their
//! matching, checked byte by byte against the real broker. Each test names the MQTT 3.1.1
//! (OASIS, 2014) or 5.0 (OASIS, 2019) normative statement it checks.

mod common;
mod conformance_support;

use std::time::{Duration, Instant};

use conformance_support::encode::{self, options, packet};
use conformance_support::{
    assert_broker_healthy, assert_rejects, first, reason, start_broker, Body, Props, Wire, QUIET, REPLY_TIMEOUT,
};

/// Encodes a SUBSCRIBE of one filter given as raw bytes, with options byte `options`.
fn subscribe_raw(level: u8, packet_id: u16, filter: &[u8], options: u8) -> Vec<u8> {
    let mut body = Body::new().u16(packet_id);
    if level == 5 {
        body = body.props(&Props::new());
    }
    body.string(filter).u8(options).packet(first::SUBSCRIBE)
}

/// Encodes an UNSUBSCRIBE of one filter given as raw bytes.
fn unsubscribe_raw(level: u8, packet_id: u16, filter: &[u8]) -> Vec<u8> {
    let mut body = Body::new().u16(packet_id);
    if level == 5 {
        body = body.props(&Props::new());
    }
    body.string(filter).packet(first::UNSUBSCRIBE)
}

fn assert_rejected(level: u8, bytes: &[u8], v5_reason: u8) {
    let broker = start_broker("");
    assert_rejects(&broker, level, &format!("forbidden-subscribe-{level}"), bytes, v5_reason);
}

// MQTT-3.8.4-1, MQTT-3.8.4-2: SUBSCRIBE gets SUBACK with the same packet id and the
// granted QoS.
#[test]
fn suback_bytes_v311() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "suback");
    wire.send(&encode::subscribe(4, 0x0A0B, &Props::new(), &[("s/t", 1)]));
    wire.expect(&[0x90, 0x03, 0x0A, 0x0B, 0x01]);
}

// MQTT-3.8.4-4, MQTT-3.9.3-1: several filters get one SUBACK with one code each, in order.
#[test]
fn suback_codes_in_order_v311() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "suback-order");
    wire.send(&encode::subscribe(4, 11, &Props::new(), &[("o/2", 2), ("o/0", 0), ("o/1", 1)]));
    wire.expect(&[0x90, 0x05, 0x00, 0x0B, 0x02, 0x00, 0x01]);
}

// MQTT 5.0 section 3.9: SUBACK carries an empty property block, then one reason code per
// filter in order.
#[test]
fn suback_bytes_v5() {
    let broker = start_broker("");
    let mut wire = Wire::login(&broker, 5, "suback-5");
    wire.send(&encode::subscribe(5, 11, &Props::new(), &[("o/0", 0), ("o/1", 1), ("o/2", 2)]));
    wire.expect(&[0x90, 0x06, 0x00, 0x0B, 0x00, 0x00, 0x01, 0x02]);
}

// MQTT-3.8.4-3: a SUBSCRIBE for an existing filter replaces it (new QoS, one copy per
// message) and re-sends the retained messages.
#[test]
fn resubscribe_replaces_subscription() {
    let broker = start_broker("");
    let mut publisher = Wire::v311(&broker, "replace-pub");
    publisher.publish("replace/t", 1, true, 1, &Props::new(), b"retained");

    let mut subscriber = Wire::v311(&broker, "replace-sub");
    subscriber.subscribe_ok(1, &[("replace/t", 2)]);
    assert_eq!(subscriber.expect_publish().qos, 1);
    subscriber.subscribe_ok(2, &[("replace/t", 0)]);
    let again = subscriber.expect_publish();
    assert!(again.retain, "MQTT-3.8.4-3: retained message re-sent with RETAIN 1");
    assert_eq!(again.qos, 0, "retained message at the new maximum QoS");

    publisher.publish("replace/t", 2, false, 2, &Props::new(), b"live");
    let received = subscriber.drain_publishes(QUIET);
    assert_eq!(received.len(), 1, "one copy per message after replacing: {received:?}");
    assert_eq!(received[0].qos, 0, "delivered at the replaced QoS 0");
}

// MQTT-3.10.4-4, MQTT-3.10.4-5: UNSUBSCRIBE gets UNSUBACK (B0 02 + packet id), also when no
// subscription matched.
#[test]
fn unsuback_bytes_v311() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "unsuback");
    wire.subscribe_ok(1, &[("u/t", 0)]);
    wire.send(&encode::unsubscribe(4, 0x0C0D, &["u/t"]));
    wire.expect(&[0xB0, 0x02, 0x0C, 0x0D]);
    wire.send(&encode::unsubscribe(4, 0x0C0E, &["never/subscribed"]));
    wire.expect(&[0xB0, 0x02, 0x0C, 0x0E]);
}

// MQTT 5.0 section 3.11.3: UNSUBACK has one reason code per filter: 0x00 Success, 0x11 No
// subscription existed.
#[test]
fn unsuback_reason_codes_v5() {
    let broker = start_broker("");
    let mut wire = Wire::login(&broker, 5, "unsuback-5");
    wire.subscribe_ok(1, &[("u/t", 0)]);
    wire.send(&encode::unsubscribe(5, 7, &["u/t", "u/none"]));
    wire.expect(&[0xB0, 0x05, 0x00, 0x07, 0x00, reason::SUCCESS, reason::NO_SUBSCRIPTION_EXISTED]);
}

// MQTT-3.10.4-2: after UNSUBACK no new message is delivered for that filter.
#[test]
fn unsubscribe_stops_delivery() {
    let broker = start_broker("");
    let mut subscriber = Wire::v311(&broker, "unsub-stop");
    subscriber.subscribe_ok(1, &[("unsub/t", 1)]);
    subscriber.send(&encode::unsubscribe(4, 2, &["unsub/t"]));
    subscriber.expect(&[0xB0, 0x02, 0x00, 0x02]);
    let mut publisher = Wire::v311(&broker, "unsub-pub");
    publisher.publish("unsub/t", 1, false, 1, &Props::new(), b"late");
    subscriber.expect_silence(QUIET);
}

// MQTT-3.10.4-1: UNSUBSCRIBE compares filters character by character: "a/+" does not
// remove "a/b".
#[test]
fn unsubscribe_compares_exactly() {
    let broker = start_broker("");
    let mut subscriber = Wire::v311(&broker, "unsub-exact");
    subscriber.subscribe_ok(1, &[("exact/b", 0)]);
    subscriber.send(&encode::unsubscribe(4, 2, &["exact/+"]));
    subscriber.expect(&[0xB0, 0x02, 0x00, 0x02]);
    let mut publisher = Wire::v311(&broker, "unsub-exact-pub");
    publisher.publish("exact/b", 1, false, 1, &Props::new(), b"still");
    assert_eq!(subscriber.expect_publish().payload, b"still");
}

// MQTT-3.8.1-1, MQTT-2.2.2-2: SUBSCRIBE flags must be 0010; 0x80 closes the connection.
#[test]
fn subscribe_flags_zero_v311() {
    let mut bytes = encode::subscribe(4, 1, &Props::new(), &[("a", 0)]);
    bytes[0] = 0x80;
    assert_rejected(4, &bytes, reason::MALFORMED_PACKET);
}

// MQTT-3.8.1-1, MQTT-2.2.2-2: SUBSCRIBE flags 1010 (0x8A) close the connection.
#[test]
fn subscribe_flags_dup_set_v311() {
    let mut bytes = encode::subscribe(4, 1, &Props::new(), &[("a", 0)]);
    bytes[0] = 0x8A;
    assert_rejected(4, &bytes, reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 2.1.3: invalid SUBSCRIBE flags (0x83) are a Malformed Packet.
#[test]
fn subscribe_flags_wrong_v5() {
    let mut bytes = encode::subscribe(5, 1, &Props::new(), &[("a", 0)]);
    bytes[0] = 0x83;
    assert_rejected(5, &bytes, reason::MALFORMED_PACKET);
}

// MQTT-3.10.1-1: UNSUBSCRIBE flags must be 0010; 0xA0 closes the connection.
#[test]
fn unsubscribe_flags_wrong_v311() {
    let mut bytes = encode::unsubscribe(4, 1, &["a"]);
    bytes[0] = 0xA0;
    assert_rejected(4, &bytes, reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 2.1.3: invalid UNSUBSCRIBE flags (0xA0) are a Malformed Packet.
#[test]
fn unsubscribe_flags_wrong_v5() {
    let mut bytes = encode::unsubscribe(5, 1, &["a"]);
    bytes[0] = 0xA0;
    assert_rejected(5, &bytes, reason::MALFORMED_PACKET);
}

// MQTT-3.8.3-3: a SUBSCRIBE with no topic filter is a protocol violation.
#[test]
fn subscribe_without_filter_v311() {
    assert_rejected(4, &packet(first::SUBSCRIBE, &[0x00, 0x01]), reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 3.8.3: a SUBSCRIBE with no payload is a Protocol Error, DISCONNECT 0x82.
#[test]
fn subscribe_without_filter_v5() {
    assert_rejected(5, &packet(first::SUBSCRIBE, &[0x00, 0x01, 0x00]), reason::PROTOCOL_ERROR);
}

// MQTT-3.10.3-2: an UNSUBSCRIBE with no topic filter is a protocol violation.
#[test]
fn unsubscribe_without_filter_v311() {
    assert_rejected(4, &packet(first::UNSUBSCRIBE, &[0x00, 0x01]), reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 3.10.3: an UNSUBSCRIBE with no payload is a Protocol Error.
#[test]
fn unsubscribe_without_filter_v5() {
    assert_rejected(5, &packet(first::UNSUBSCRIBE, &[0x00, 0x01, 0x00]), reason::PROTOCOL_ERROR);
}

// MQTT-3-8.3-4 (3.1.1): a requested QoS of 3 is malformed and closes the connection.
#[test]
fn subscribe_qos3_v311() {
    assert_rejected(4, &subscribe_raw(4, 1, b"a", 3), reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 3.8.3.1: Maximum QoS 3 is a Protocol Error.
#[test]
fn subscribe_qos3_v5() {
    assert_rejected(5, &subscribe_raw(5, 1, b"a", 3), reason::PROTOCOL_ERROR);
}

// MQTT-3-8.3-4 (3.1.1): a reserved bit of the requested-QoS byte set (0x04) closes.
#[test]
fn subscribe_reserved_option_bits_v311() {
    assert_rejected(4, &subscribe_raw(4, 1, b"a", 0x04), reason::MALFORMED_PACKET);
}

// MQTT-3.8.3-5 (5.0): reserved bits 6 and 7 of the Subscription Options set are malformed.
#[test]
fn subscribe_reserved_option_bits_v5() {
    assert_rejected(5, &subscribe_raw(5, 1, b"a", 0xC0), reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 3.8.3.1: Retain Handling 3 is a Protocol Error.
#[test]
fn subscribe_retain_handling_3_v5() {
    assert_rejected(5, &subscribe_raw(5, 1, b"a", options(0, false, false, 3)), reason::PROTOCOL_ERROR);
}

// MQTT-2.3.1-1: SUBSCRIBE needs a non-zero packet id.
#[test]
fn subscribe_packet_id_zero_v311() {
    assert_rejected(4, &subscribe_raw(4, 0, b"a", 0), reason::PROTOCOL_ERROR);
}

// MQTT-2.2.1-3 (5.0): packet id 0 on SUBSCRIBE is a Protocol Error, as on PUBLISH
// (Mosquitto 2.0.11 sends 0x82 for PUBLISH but 0x81 here).
#[test]
fn subscribe_packet_id_zero_v5() {
    assert_rejected(5, &subscribe_raw(5, 0, b"a", 0), reason::PROTOCOL_ERROR);
}

// MQTT-2.3.1-1: UNSUBSCRIBE needs a non-zero packet id.
#[test]
fn unsubscribe_packet_id_zero_v311() {
    assert_rejected(4, &unsubscribe_raw(4, 0, b"a"), reason::PROTOCOL_ERROR);
}

// MQTT-2.2.1-3 (5.0): packet id 0 on UNSUBSCRIBE is a Protocol Error.
#[test]
fn unsubscribe_packet_id_zero_v5() {
    assert_rejected(5, &unsubscribe_raw(5, 0, b"a"), reason::PROTOCOL_ERROR);
}

// Invalid topic filters close the connection, as Mosquitto 2.0.11 does. For 5.0 the
// DISCONNECT carries 0x81 (also Mosquitto's), because the filter is not correctly formed
// (0x8F is for a well-formed filter the server rejects).

// MQTT-4.7.1-2: '#' must be the last level: "a/#/b".
#[test]
fn filter_hash_not_last_v311() {
    assert_rejected(4, &subscribe_raw(4, 1, b"a/#/b", 0), reason::MALFORMED_PACKET);
}

// MQTT-4.7.1-2 (5.0 MQTT-4.7.1-1): "a/#/b" gets DISCONNECT 0x81.
#[test]
fn filter_hash_not_last_v5() {
    assert_rejected(5, &subscribe_raw(5, 1, b"a/#/b", 0), reason::MALFORMED_PACKET);
}

// MQTT-4.7.1-2: '#' must stand alone in its level: "a/b#".
#[test]
fn filter_hash_inside_level_v311() {
    assert_rejected(4, &subscribe_raw(4, 1, b"a/b#", 0), reason::MALFORMED_PACKET);
}

// MQTT-4.7.1-3: '+' must occupy a whole level: "a+".
#[test]
fn filter_plus_inside_level_v311() {
    assert_rejected(4, &subscribe_raw(4, 1, b"a+", 0), reason::MALFORMED_PACKET);
}

// MQTT-4.7.1-3 (5.0 MQTT-4.7.1-2): "+a/b" gets DISCONNECT 0x81.
#[test]
fn filter_plus_inside_level_v5() {
    assert_rejected(5, &subscribe_raw(5, 1, b"+a/b", 0), reason::MALFORMED_PACKET);
}

// MQTT-4.7.3-1: a zero-length topic filter is invalid.
#[test]
fn filter_empty_v311() {
    assert_rejected(4, &subscribe_raw(4, 1, b"", 0), reason::MALFORMED_PACKET);
}

// MQTT-4.7.3-1 for 5.0: a zero-length topic filter gets DISCONNECT 0x81.
#[test]
fn filter_empty_v5() {
    assert_rejected(5, &subscribe_raw(5, 1, b"", 0), reason::MALFORMED_PACKET);
}

// MQTT-1.5.3-2: U+0000 in a topic filter closes the connection.
#[test]
fn filter_null_character_v311() {
    assert_rejected(4, &subscribe_raw(4, 1, b"a/\0", 0), reason::MALFORMED_PACKET);
}

// MQTT-1.5.4-2: U+0000 in a 5.0 topic filter is a Malformed Packet.
#[test]
fn filter_null_character_v5() {
    assert_rejected(5, &subscribe_raw(5, 1, b"a/\0", 0), reason::MALFORMED_PACKET);
}

// MQTT-1.5.3-1: ill-formed UTF-8 in a topic filter closes the connection.
#[test]
fn filter_invalid_utf8_v311() {
    assert_rejected(4, &subscribe_raw(4, 1, b"a/\xE2\x82", 0), reason::MALFORMED_PACKET);
}

// MQTT-1.5.4-1: ill-formed UTF-8 in a 5.0 topic filter is a Malformed Packet.
#[test]
fn filter_invalid_utf8_v5() {
    assert_rejected(5, &subscribe_raw(5, 1, b"\xF8\x88\x80\x80\x80", 0), reason::MALFORMED_PACKET);
}

// MQTT-1.5.3-1: ill-formed UTF-8 in an UNSUBSCRIBE filter closes the connection.
#[test]
fn unsubscribe_filter_invalid_utf8_v311() {
    assert_rejected(4, &unsubscribe_raw(4, 1, b"a/\xC3"), reason::MALFORMED_PACKET);
}

// MQTT-1.5.4-2: U+0000 in an UNSUBSCRIBE filter of 5.0 is a Malformed Packet.
#[test]
fn unsubscribe_filter_null_character_v5() {
    assert_rejected(5, &unsubscribe_raw(5, 1, b"a\0"), reason::MALFORMED_PACKET);
}

// MQTT-4.7.1-2, MQTT-4.7.1-3: every well-formed filter is granted.
#[test]
fn valid_filters_granted() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "valid-filters");
    // "$SYS/#" comes last: its retained $SYS messages follow its SUBACK.
    let filters = ["#", "+", "+/+", "/+", "a/+/c", "a//b", "/", "a/b/#", "+/#", "sport/tennis/+", "a b/ü/€", "$SYS/#"];
    for (index, filter) in filters.iter().enumerate() {
        let codes = wire.subscribe(index as u16 + 1, &[(filter, 1)]);
        assert_eq!(codes, vec![1], "filter {filter:?} was not granted");
    }
}

// Section 4.7.1 (3.1.1): which topics each filter matches, from the specification's
// examples: '#' includes the parent level, '+' matches one (possibly empty) level.
#[test]
fn filter_matching_examples() {
    let broker = start_broker("");
    let cases: [(&str, &[&str]); 7] = [
        ("sport/tennis/player1/#", &["sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon"]),
        (
            "sport/#",
            &[
                "sport",
                "sport/",
                "sport/tennis/player1",
                "sport/tennis/player2",
                "sport/tennis/player1/ranking",
                "sport/tennis/player1/score/wimbledon",
            ],
        ),
        ("sport/tennis/+", &["sport/tennis/player1", "sport/tennis/player2"]),
        ("sport/+", &["sport/"]),
        ("+/+", &["/finance", "sport/"]),
        ("/+", &["/finance"]),
        ("+", &["sport"]),
    ];
    let topics = [
        "sport",
        "sport/",
        "sport/tennis/player1",
        "sport/tennis/player2",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
        "/finance",
    ];
    let mut subscribers: Vec<Wire> = cases
        .iter()
        .enumerate()
        .map(|(index, (filter, _))| {
            let mut wire = Wire::v311(&broker, &format!("match-{index}"));
            wire.subscribe_ok(1, &[(filter, 0)]);
            wire
        })
        .collect();
    let mut publisher = Wire::v311(&broker, "match-pub");
    for (index, topic) in topics.iter().enumerate() {
        publisher.publish(topic, 1, false, index as u16 + 1, &Props::new(), b"m");
    }
    for ((filter, expected), wire) in cases.iter().zip(subscribers.iter_mut()) {
        let mut received: Vec<String> = wire.drain_publishes(QUIET).into_iter().map(|message| message.topic).collect();
        received.sort();
        let mut expected: Vec<String> = expected.iter().map(|topic| topic.to_string()).collect();
        expected.sort();
        assert_eq!(received, expected, "topics delivered for filter {filter:?}");
    }
}

// MQTT-4.7.2-1: a filter starting with a wildcard does not match topics starting with '$';
// "$SYS/#" does.
#[test]
fn wildcards_skip_dollar_topics() {
    let broker = start_broker("sys_interval_secs = 1\n");
    let mut everything = Wire::v311(&broker, "dollar-hash");
    everything.subscribe_ok(1, &[("#", 0), ("+/broker/#", 0)]);
    let mut sys = Wire::v311(&broker, "dollar-sys");
    sys.subscribe_ok(1, &[("$SYS/#", 0)]);

    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut sys_received = Vec::new();
    while sys_received.is_empty() && Instant::now() < deadline {
        sys_received = sys.drain_publishes(Duration::from_millis(500));
    }
    assert!(!sys_received.is_empty(), "no $SYS message within {REPLY_TIMEOUT:?}");
    assert!(sys_received.iter().all(|message| message.topic.starts_with("$SYS/")));

    let leaked = everything.drain_publishes(Duration::from_millis(1500));
    assert!(leaked.is_empty(), "wildcard filters received '$' topics: {:?}", leaked.iter().map(|m| &m.topic).collect::<Vec<_>>());
}

/// Returns a topic filter of `levels` levels ("f/f/...").
fn filter_of_levels(levels: usize) -> String {
    vec!["f"; levels].join("/")
}

// limits.max_topic_levels (default 128): a 128-level filter is granted.
#[test]
fn filter_at_max_levels_granted() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "filter-128");
    let filter = filter_of_levels(128);
    wire.subscribe_ok(1, &[(filter.as_str(), 1)]);
}

// limits.max_topic_levels: a well-formed 129-level filter is refused with SUBACK 0x80
// (3.1.1 Failure) and the connection stays open.
#[test]
fn filter_over_max_levels_v311() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "filter-129");
    let filter = filter_of_levels(129);
    wire.send(&encode::subscribe(4, 3, &Props::new(), &[(filter.as_str(), 0), ("ok/t", 1)]));
    wire.expect(&[0x90, 0x04, 0x00, 0x03, 0x80, 0x01]);
    wire.ping();
}

// limits.max_topic_levels for 5.0: SUBACK reason 0x8F (Topic Filter invalid: well formed,
// but not accepted).
#[test]
fn filter_over_max_levels_v5() {
    let broker = start_broker("");
    let mut wire = Wire::login(&broker, 5, "filter-129-5");
    let filter = filter_of_levels(129);
    wire.send(&encode::subscribe(5, 3, &Props::new(), &[(filter.as_str(), 0)]));
    let frame = wire.expect_frame("SUBACK");
    let (packet_id, _, codes) = frame.sub_reply(5).unwrap();
    assert_eq!(packet_id, 3);
    assert_eq!(codes, vec![reason::TOPIC_FILTER_INVALID], "SUBACK {frame:?}");
    wire.ping();
}

// A 30,000-level filter ("+/+/..." of 59,999 bytes) is refused at once, not walked level
// by level into a deep structure, and the broker stays healthy.
#[test]
fn filter_with_30000_levels() {
    let broker = start_broker("");
    let rss_before = broker.rss_kb();
    let mut wire = Wire::v311(&broker, "filter-30000");
    let filter = vec!["+"; 30_000].join("/");
    let started = Instant::now();
    wire.send(&encode::subscribe(4, 5, &Props::new(), &[(filter.as_str(), 0)]));
    wire.expect(&[0x90, 0x03, 0x00, 0x05, 0x80]);
    assert!(started.elapsed() < Duration::from_secs(1), "SUBACK took {:?}", started.elapsed());
    wire.ping();
    let grown_kb = broker.rss_kb().saturating_sub(rss_before);
    assert!(grown_kb < 32 * 1024, "broker memory grew by {grown_kb} KiB");
    assert_broker_healthy(&broker);
}

// MQTT-3.3.5-1: with overlapping subscriptions the message is delivered at the highest
// granted QoS of the matching subscriptions, in one copy or one per subscription.
#[test]
fn overlapping_subscriptions_highest_qos() {
    let broker = start_broker("");
    let mut subscriber = Wire::v311(&broker, "overlap-sub");
    subscriber.subscribe_ok(1, &[("overlap/#", 0), ("overlap/t", 2)]);
    let mut publisher = Wire::v311(&broker, "overlap-pub");
    publisher.publish("overlap/t", 2, false, 1, &Props::new(), b"x");
    let received = subscriber.drain_publishes(QUIET);
    assert!(!received.is_empty(), "no copy delivered");
    let highest = received.iter().map(|message| message.qos).max().unwrap();
    assert_eq!(highest, 2, "copies: {received:?}");
}

// MQTT-3.8.4-4: a SUBSCRIBE with a valid and an over-long filter is handled entry by
// entry; the valid one is granted and delivers.
#[test]
fn subscribe_entries_independent() {
    let broker = start_broker("");
    let mut subscriber = Wire::v311(&broker, "entries-sub");
    let deep = filter_of_levels(200);
    subscriber.send(&encode::subscribe(4, 9, &Props::new(), &[(deep.as_str(), 1), ("entries/t", 1)]));
    subscriber.expect(&[0x90, 0x04, 0x00, 0x09, 0x80, 0x01]);
    let mut publisher = Wire::v311(&broker, "entries-pub");
    publisher.publish("entries/t", 1, false, 1, &Props::new(), b"ok");
    assert_eq!(subscriber.expect_publish().payload, b"ok");
    assert_broker_healthy(&broker);
}
