//! Conformance of the MQTT 5.0 (OASIS, 2019) additions, checked byte by byte against the
//! real broker. Covered: CONNACK properties, session and message expiry, Receive Maximum,
//! Topic Alias, subscription options and identifiers, forwarded properties, problem and
//! response information, packet size limits, will delay, property rules and the server's
//! DISCONNECT reason codes. Each test names the normative statement or section it checks.

mod common;
mod conformance_support;

use std::collections::{BTreeSet, HashMap};
use std::thread;
use std::time::{Duration, Instant};

use conformance_support::encode::{self, options, packet};
use conformance_support::{
    assert_broker_healthy, assert_connect_rejects, assert_rejects, expect_disconnect, find, find_all, first, prop,
    reason, start_broker, Body, Connack, Connect, Frame, Property, Props, Publish, ReadError, Value, Wire, QUIET,
};

use common::Broker;

/// Connects a 5.0 client with a clean start and no properties.
fn login(broker: &Broker, client_id: &str) -> Wire {
    Wire::login(broker, 5, client_id)
}

/// Encodes a 5.0 PUBLISH with properties.
fn publish(topic: &str, qos: u8, retain: bool, packet_id: u16, props: &Props, payload: &[u8]) -> Vec<u8> {
    encode::publish(5, topic.as_bytes(), qos, retain, packet_id, props, payload)
}

/// Starts a broker and checks that `bytes`, sent by a connected 5.0 client, get
/// DISCONNECT with `reason_code`, a WARN line and no harm.
fn assert_v5_rejected(bytes: &[u8], reason_code: u8) {
    let broker = start_broker("");
    assert_rejects(&broker, 5, "forbidden-v5", bytes, reason_code);
}

/// Starts a broker and checks that `connect` gets CONNACK with `reason_code`, then the close.
fn assert_v5_connect_rejected(connect: &Connect, reason_code: u8) {
    let broker = start_broker("");
    assert_connect_rejects(&broker, connect, reason_code);
}

fn four(value: Option<&Value>) -> Option<u32> {
    match value {
        Some(Value::Four(number)) => Some(*number),
        None => None,
        other => panic!("expected a four-byte integer property, got {other:?}"),
    }
}

fn two(value: Option<&Value>) -> Option<u16> {
    match value {
        Some(Value::Two(number)) => Some(*number),
        None => None,
        other => panic!("expected a two-byte integer property, got {other:?}"),
    }
}

/// Properties that MQTT 5.0 section 3.2.2.3 allows in CONNACK.
const CONNACK_PROPERTIES: [u8; 17] = [
    0x11, 0x21, 0x24, 0x25, 0x27, 0x12, 0x22, 0x1F, 0x26, 0x28, 0x29, 0x2A, 0x13, 0x1A, 0x1C, 0x15, 0x16,
];

// MQTT 5.0 sections 2.2.2.2 and 3.2.2.3: CONNACK carries only CONNACK properties, each
// once (User Property aside), and announces the server's Maximum Packet Size and Topic
// Alias Maximum (Mosquitto announces both).
#[test]
fn connack_properties_announced() {
    let broker = start_broker("[limits]\nmax_packet_size = 4096\n");
    let (_wire, connack) = Wire::v5(&broker, "connack-props", Props::new());
    let mut seen = BTreeSet::new();
    for (id, _) in &connack.props {
        assert!(CONNACK_PROPERTIES.contains(id), "property {id:#04x} is not allowed in CONNACK: {connack:?}");
        assert!(*id == prop::USER_PROPERTY || seen.insert(*id), "property {id:#04x} twice in CONNACK: {connack:?}");
    }
    assert_eq!(four(find(&connack.props, prop::MAXIMUM_PACKET_SIZE)), Some(4096), "Maximum Packet Size in {connack:?}");
    let alias_maximum = two(find(&connack.props, prop::TOPIC_ALIAS_MAXIMUM));
    assert!(alias_maximum.unwrap_or(0) > 0, "Topic Alias Maximum in {connack:?}");
    assert!(!connack.session_present);
}

// MQTT-3.2.2-21: a keep alive above limits.max_keepalive_secs, or 0, gets a Server
// Keep Alive of the maximum (as Mosquitto's max_keepalive). A smaller one is kept.
#[test]
fn server_keep_alive_lowers_request() {
    let broker = start_broker("[limits]\nmax_keepalive_secs = 30\n");
    let (_, over) = Wire::connect_ok(&broker, &Connect::v5("ska-60").keep_alive(60));
    assert_eq!(two(find(&over.props, prop::SERVER_KEEP_ALIVE)), Some(30), "{over:?}");
    let (_, zero) = Wire::connect_ok(&broker, &Connect::v5("ska-0").keep_alive(0));
    assert_eq!(two(find(&zero.props, prop::SERVER_KEEP_ALIVE)), Some(30), "{zero:?}");
    let (_, under) = Wire::connect_ok(&broker, &Connect::v5("ska-20").keep_alive(20));
    let granted = two(find(&under.props, prop::SERVER_KEEP_ALIVE)).unwrap_or(20);
    assert_eq!(granted, 20, "{under:?}");
}

// MQTT-3.1.2-22 with MQTT-3.2.2-21: the Server Keep Alive, not the client's value, is
// enforced; the timeout sends DISCONNECT 0x8D (Keep Alive timeout).
#[test]
fn server_keep_alive_enforced() {
    let broker = start_broker("[limits]\nmax_keepalive_secs = 2\n");
    let (mut wire, connack) = Wire::connect_ok(&broker, &Connect::v5("ska-enforced").keep_alive(600));
    assert_eq!(two(find(&connack.props, prop::SERVER_KEEP_ALIVE)), Some(2));
    let started = Instant::now();
    expect_disconnect(&mut wire, reason::KEEP_ALIVE_TIMEOUT);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(2500), "closed after {elapsed:?}, before 1.5 x 2 s");
    wire.expect_closed();
}

// MQTT-3.1.2-22: keep alive 1 with no packet: DISCONNECT 0x8D after 1.5 s, then the close.
#[test]
fn keep_alive_timeout_sends_0x8d() {
    let broker = start_broker("");
    let (mut wire, _) = Wire::connect_ok(&broker, &Connect::v5("keepalive-5").keep_alive(1));
    let started = Instant::now();
    expect_disconnect(&mut wire, reason::KEEP_ALIVE_TIMEOUT);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1400), "DISCONNECT after {elapsed:?}, before 1.5 x keep alive");
    assert!(elapsed <= Duration::from_millis(3500), "DISCONNECT after {elapsed:?}, long after 1.5 x keep alive");
    wire.expect_closed();
}

// MQTT-3.1.4-3: the connection taken over gets DISCONNECT 0x8E, then the close.
#[test]
fn takeover_sends_0x8e() {
    let broker = start_broker("");
    let mut old = login(&broker, "takeover-v5");
    let mut new = login(&broker, "takeover-v5");
    expect_disconnect(&mut old, reason::SESSION_TAKEN_OVER);
    old.expect_closed();
    new.ping();
}

// MQTT-3.2.2-16: an empty client id gets an Assigned Client Identifier; a given id gets none.
#[test]
fn assigned_client_identifier() {
    let broker = start_broker("");
    let (wire, connack) = Wire::v5(&broker, "", Props::new());
    match find(&connack.props, prop::ASSIGNED_CLIENT_IDENTIFIER) {
        Some(Value::Text(id)) => assert!(!id.is_empty(), "empty Assigned Client Identifier"),
        other => panic!("no Assigned Client Identifier for an empty client id: {other:?} in {connack:?}"),
    }
    drop(wire);
    let (_, named) = Wire::v5(&broker, "named", Props::new());
    assert!(find(&named.props, prop::ASSIGNED_CLIENT_IDENTIFIER).is_none(), "{named:?}");
}

/// CONNECT for a persistent 5.0 session of `client_id` with Session Expiry `seconds`.
fn persistent(client_id: &str, seconds: Option<u32>, clean_start: bool) -> Connect {
    let mut props = Props::new();
    if let Some(seconds) = seconds {
        props = props.four(prop::SESSION_EXPIRY_INTERVAL, seconds);
    }
    Connect::v5(client_id).clean(clean_start).props(props)
}

// MQTT 5.0 section 3.1.2.11.2: with no Session Expiry Interval (0) the session ends with
// the connection, even with Clean Start 0.
#[test]
fn session_expiry_absent_ends_session() {
    let broker = start_broker("");
    let (mut wire, _) = Wire::connect_ok(&broker, &persistent("se-absent", None, false));
    wire.subscribe_ok(1, &[("se/absent", 1)]);
    wire.disconnect();
    thread::sleep(Duration::from_millis(200));
    let (_, connack) = Wire::connect_ok(&broker, &persistent("se-absent", None, false));
    assert!(!connack.session_present, "MQTT-3.2.2-3: no session should exist");
}

// MQTT-3.1.2-23: with Session Expiry Interval > 0 the session, its subscriptions and the
// QoS 1 messages published meanwhile survive the disconnection.
#[test]
fn session_expiry_keeps_session() {
    let broker = start_broker("");
    let (mut wire, _) = Wire::connect_ok(&broker, &persistent("se-kept", Some(300), true));
    wire.subscribe_ok(1, &[("se/kept", 1)]);
    wire.disconnect();

    let mut publisher = login(&broker, "se-kept-pub");
    publisher.publish("se/kept", 1, false, 1, &Props::new(), b"while away");

    let (mut resumed, connack) = Wire::connect_ok(&broker, &persistent("se-kept", Some(300), false));
    assert!(connack.session_present, "MQTT-3.2.2-2: Session Present 1 expected");
    assert_eq!(resumed.expect_publish().payload, b"while away");
}

// MQTT 5.0 section 3.1.2.11.2: 0xFFFFFFFF means the session does not expire.
#[test]
fn session_expiry_max_never_expires() {
    let broker = start_broker("");
    let (wire, _) = Wire::connect_ok(&broker, &persistent("se-max", Some(u32::MAX), true));
    wire.disconnect();
    thread::sleep(Duration::from_millis(1500));
    let (_, connack) = Wire::connect_ok(&broker, &persistent("se-max", Some(u32::MAX), false));
    assert!(connack.session_present, "session with expiry 0xFFFFFFFF was removed");
}

// MQTT 5.0 section 3.1.2.11.2: the session is removed when its interval has passed.
#[test]
fn session_expiry_elapses() {
    let broker = start_broker("");
    let (wire, _) = Wire::connect_ok(&broker, &persistent("se-1s", Some(1), true));
    wire.disconnect();
    thread::sleep(Duration::from_millis(2500));
    let (_, connack) = Wire::connect_ok(&broker, &persistent("se-1s", Some(1), false));
    assert!(!connack.session_present, "session with expiry 1 s still present after 2.5 s");
}

// MQTT-3.1.2-4: Clean Start 1 discards the stored session and its subscriptions.
#[test]
fn clean_start_discards_session() {
    let broker = start_broker("");
    let (mut wire, _) = Wire::connect_ok(&broker, &persistent("se-clean", Some(300), true));
    wire.subscribe_ok(1, &[("se/clean", 1)]);
    wire.disconnect();
    let (mut fresh, connack) = Wire::connect_ok(&broker, &persistent("se-clean", Some(300), true));
    assert!(!connack.session_present, "MQTT-3.2.2-2: Clean Start 1 gives Session Present 0");
    let mut publisher = login(&broker, "se-clean-pub");
    publisher.publish("se/clean", 1, false, 1, &Props::new(), b"x");
    fresh.expect_silence(QUIET);
}

/// DISCONNECT with reason 0 and a Session Expiry Interval property.
fn disconnect_with_expiry(seconds: u32) -> Vec<u8> {
    Body::new().u8(0).props(&Props::new().four(prop::SESSION_EXPIRY_INTERVAL, seconds)).packet(first::DISCONNECT)
}

// MQTT 5.0 section 3.14.2.2.2: DISCONNECT may set the Session Expiry Interval to 0, which
// ends the session at once.
#[test]
fn disconnect_sets_expiry_zero() {
    let broker = start_broker("");
    let (mut wire, _) = Wire::connect_ok(&broker, &persistent("se-dis-0", Some(300), true));
    wire.send(&disconnect_with_expiry(0));
    wire.expect_closed();
    let (_, connack) = Wire::connect_ok(&broker, &persistent("se-dis-0", Some(300), false));
    assert!(!connack.session_present, "DISCONNECT set Session Expiry 0 but the session survived");
}

// MQTT 5.0 section 3.14.2.2.2: DISCONNECT may lengthen a non-zero Session Expiry Interval.
#[test]
fn disconnect_lengthens_expiry() {
    let broker = start_broker("");
    let (mut wire, _) = Wire::connect_ok(&broker, &persistent("se-dis-long", Some(1), true));
    wire.send(&disconnect_with_expiry(300));
    wire.expect_closed();
    thread::sleep(Duration::from_millis(2500));
    let (_, connack) = Wire::connect_ok(&broker, &persistent("se-dis-long", Some(1), false));
    assert!(connack.session_present, "DISCONNECT set Session Expiry 300 s but the session expired after 1 s");
}

// MQTT 5.0 section 3.14.2.2.2: a non-zero Session Expiry Interval on DISCONNECT after
// CONNECT sent 0 is a Protocol Error: DISCONNECT 0x82, and the session still ends.
#[test]
fn disconnect_expiry_after_zero_is_protocol_error() {
    let broker = start_broker("");
    let (mut wire, _) = Wire::connect_ok(&broker, &persistent("se-dis-err", None, true));
    let from = broker.log_position();
    wire.send(&disconnect_with_expiry(60));
    expect_disconnect(&mut wire, reason::PROTOCOL_ERROR);
    wire.expect_closed();
    conformance_support::assert_warned(&broker, from, &wire.local_addr(), "se-dis-err");
    let (_, connack) = Wire::connect_ok(&broker, &persistent("se-dis-err", None, false));
    assert!(!connack.session_present);
}

// MQTT-3.3.2-5, MQTT-3.3.2-6: a queued message whose Message Expiry Interval has passed is
// not sent. The other one carries the received interval minus the time it waited.
#[test]
fn message_expiry_queued() {
    let broker = start_broker("");
    let (mut subscriber, _) = Wire::connect_ok(&broker, &persistent("mx-sub", Some(300), true));
    subscriber.subscribe_ok(1, &[("mx/t", 1)]);
    subscriber.disconnect();

    let mut publisher = login(&broker, "mx-pub");
    publisher.publish("mx/t", 1, false, 1, &Props::new().four(prop::MESSAGE_EXPIRY_INTERVAL, 1), b"short");
    publisher.publish("mx/t", 1, false, 2, &Props::new().four(prop::MESSAGE_EXPIRY_INTERVAL, 60), b"long");
    thread::sleep(Duration::from_millis(2500));

    let (mut resumed, connack) = Wire::connect_ok(&broker, &persistent("mx-sub", Some(300), false));
    assert!(connack.session_present);
    let received = resumed.drain_publishes(QUIET);
    let payloads: Vec<&[u8]> = received.iter().map(|message| message.payload.as_slice()).collect();
    assert_eq!(payloads, vec![&b"long"[..]], "the expired message must not be sent");
    let remaining = four(received[0].property(prop::MESSAGE_EXPIRY_INTERVAL)).expect("no Message Expiry Interval forwarded");
    assert!((50..=58).contains(&remaining), "Message Expiry Interval {remaining}, expected 60 minus the 2.5 s waited");
}

// MQTT-3.3.2-5, MQTT-3.3.2-6 for retained messages: an expired retained message is not
// sent, a live one carries its remaining interval.
#[test]
fn message_expiry_retained() {
    let broker = start_broker("");
    let mut publisher = login(&broker, "mxr-pub");
    publisher.publish("mxr/short", 1, true, 1, &Props::new().four(prop::MESSAGE_EXPIRY_INTERVAL, 1), b"short");
    publisher.publish("mxr/long", 1, true, 2, &Props::new().four(prop::MESSAGE_EXPIRY_INTERVAL, 60), b"long");
    thread::sleep(Duration::from_millis(2500));

    let mut subscriber = login(&broker, "mxr-sub");
    subscriber.subscribe_ok(1, &[("mxr/#", 1)]);
    let received = subscriber.drain_publishes(QUIET);
    let topics: Vec<&str> = received.iter().map(|message| message.topic.as_str()).collect();
    assert_eq!(topics, vec!["mxr/long"], "the expired retained message must not be sent");
    let remaining = four(received[0].property(prop::MESSAGE_EXPIRY_INTERVAL)).expect("no Message Expiry Interval forwarded");
    assert!((50..=58).contains(&remaining), "Message Expiry Interval {remaining}, expected 60 minus the 2.5 s waited");
}

// MQTT-3.3.2-6: a message forwarded at once keeps its Message Expiry Interval (at most the
// value sent).
#[test]
fn message_expiry_forwarded_live() {
    let broker = start_broker("");
    let mut subscriber = login(&broker, "mx-live-sub");
    subscriber.subscribe_ok(1, &[("mx/live", 0)]);
    let mut publisher = login(&broker, "mx-live-pub");
    publisher.publish("mx/live", 0, false, 0, &Props::new().four(prop::MESSAGE_EXPIRY_INTERVAL, 30), b"x");
    let message = subscriber.expect_publish();
    let remaining = four(message.property(prop::MESSAGE_EXPIRY_INTERVAL)).expect("no Message Expiry Interval forwarded");
    assert!((29..=30).contains(&remaining), "Message Expiry Interval {remaining}, sent 30");
}

/// Reads frames for `quiet` without acknowledging anything.
fn read_unacknowledged(wire: &mut Wire, quiet: Duration) -> Vec<Publish> {
    let mut received = Vec::new();
    loop {
        match wire.read(quiet) {
            Ok(frame) => received.push(frame.publish(5).unwrap_or_else(|error| panic!("bad PUBLISH: {error}"))),
            Err(ReadError::Timeout) => return received,
            Err(error) => panic!("connection failed: {error:?}"),
        }
    }
}

// MQTT-3.3.4-9: the server sends no more unacknowledged QoS 1 and 2 messages than the
// client's Receive Maximum; each PUBACK lets one more through.
#[test]
fn receive_maximum_limits_outgoing() {
    let broker = start_broker("");
    let (mut subscriber, _) = Wire::v5(&broker, "rm-sub", Props::new().two(prop::RECEIVE_MAXIMUM, 2));
    subscriber.subscribe_ok(1, &[("rm/t", 1)]);
    let mut publisher = login(&broker, "rm-pub");
    for index in 1..=5u16 {
        publisher.publish("rm/t", 1, false, index, &Props::new(), index.to_string().as_bytes());
    }
    let in_flight = read_unacknowledged(&mut subscriber, QUIET);
    assert_eq!(in_flight.len(), 2, "messages in flight with Receive Maximum 2: {in_flight:?}");

    subscriber.send(&encode::ack(first::PUBACK, in_flight[0].packet_id));
    let next = read_unacknowledged(&mut subscriber, QUIET);
    assert_eq!(next.len(), 1, "one PUBACK must release exactly one more message: {next:?}");
    assert_eq!(next[0].payload, b"3");
}

// MQTT 5.0 section 3.1.2.11.3: Receive Maximum 0 is a Protocol Error (CONNACK 0x82).
#[test]
fn receive_maximum_zero() {
    assert_v5_connect_rejected(&Connect::v5("rm-zero").props(Props::new().two(prop::RECEIVE_MAXIMUM, 0)), reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 3.3.4: a client that exceeds the server's Receive Maximum (announced in
// CONNACK, where Mosquitto 2.0.11 announces 20) gets DISCONNECT 0x93.
#[test]
fn receive_maximum_exceeded_by_client() {
    let broker = start_broker("");
    let (mut wire, connack) = Wire::v5(&broker, "rm-exceed", Props::new());
    let maximum = two(find(&connack.props, prop::RECEIVE_MAXIMUM))
        .unwrap_or_else(|| panic!("CONNACK announces no Receive Maximum (so 65,535), which no client can exceed: {connack:?}"));
    assert!(maximum < u16::MAX, "Receive Maximum {maximum} cannot be exceeded with distinct packet ids");
    for packet_id in 1..=maximum {
        wire.send(&publish("rm/exceed", 2, false, packet_id, &Props::new(), b"x"));
        let pubrec = wire.expect_frame("PUBREC");
        assert_eq!(pubrec.kind(), 5, "expected PUBREC, received {pubrec:?}");
    }
    let from = broker.log_position();
    wire.send(&publish("rm/exceed", 2, false, maximum + 1, &Props::new(), b"x"));
    expect_disconnect(&mut wire, reason::RECEIVE_MAXIMUM_EXCEEDED);
    wire.expect_closed();
    conformance_support::assert_warned(&broker, from, &wire.local_addr(), "rm-exceed");
    assert_broker_healthy(&broker);
}

/// Topic Alias Maximum announced in a CONNACK, 0 when absent.
fn alias_maximum(connack: &Connack) -> u16 {
    two(find(&connack.props, prop::TOPIC_ALIAS_MAXIMUM)).unwrap_or(0)
}

// MQTT 5.0 section 3.3.2.3.4: a client sets an alias with a topic, then publishes with an
// empty topic and the alias. A later topic remaps the alias.
#[test]
fn topic_alias_from_client() {
    let broker = start_broker("");
    let mut subscriber = login(&broker, "alias-sub");
    subscriber.subscribe_ok(1, &[("alias/#", 0)]);
    let (mut publisher, connack) = Wire::v5(&broker, "alias-pub", Props::new());
    assert!(alias_maximum(&connack) >= 1, "CONNACK allows no topic alias: {connack:?}");
    let alias = Props::new().two(prop::TOPIC_ALIAS, 1);
    publisher.publish("alias/a", 1, false, 1, &alias, b"1");
    publisher.publish("", 1, false, 2, &alias, b"2");
    publisher.publish("alias/b", 1, false, 3, &alias, b"3");
    publisher.publish("", 1, false, 4, &alias, b"4");
    let received: Vec<(String, Vec<u8>)> =
        subscriber.drain_publishes(QUIET).into_iter().map(|message| (message.topic, message.payload)).collect();
    let expected: Vec<(String, Vec<u8>)> = [("alias/a", "1"), ("alias/a", "2"), ("alias/b", "3"), ("alias/b", "4")]
        .iter()
        .map(|(topic, payload)| (topic.to_string(), payload.as_bytes().to_vec()))
        .collect();
    assert_eq!(received, expected);
}

// MQTT-3.3.2-8 and section 3.3.4: Topic Alias 0 gets DISCONNECT 0x94 (Topic Alias
// invalid), as section 3.3.4 requires (Mosquitto 2.0.11 sends 0x81).
#[test]
fn topic_alias_zero() {
    assert_v5_rejected(&publish("alias/zero", 0, false, 0, &Props::new().two(prop::TOPIC_ALIAS, 0), b"x"), reason::TOPIC_ALIAS_INVALID);
}

// MQTT 5.0 section 3.3.2.3.4: a Topic Alias above the announced Topic Alias Maximum gets
// DISCONNECT 0x94.
#[test]
fn topic_alias_above_maximum() {
    let broker = start_broker("");
    let (mut wire, connack) = Wire::v5(&broker, "alias-over", Props::new());
    let maximum = alias_maximum(&connack);
    let from = broker.log_position();
    wire.send(&publish("alias/over", 0, false, 0, &Props::new().two(prop::TOPIC_ALIAS, maximum + 1), b"x"));
    conformance_support::expect_rejected(&mut wire, reason::TOPIC_ALIAS_INVALID);
    conformance_support::assert_warned(&broker, from, &wire.local_addr(), "alias-over");
    assert_broker_healthy(&broker);
}

// MQTT 5.0 section 3.3.4: an empty topic with an alias never set is a Protocol Error, 0x82.
#[test]
fn topic_alias_unmapped() {
    assert_v5_rejected(&publish("", 0, false, 0, &Props::new().two(prop::TOPIC_ALIAS, 1), b"x"), reason::PROTOCOL_ERROR);
}

// MQTT-3.3.2-7: topic alias mappings do not carry over to a new connection.
#[test]
fn topic_alias_not_carried_over() {
    let broker = start_broker("");
    let (mut first_connection, _) = Wire::connect_ok(&broker, &persistent("alias-carry", Some(60), true));
    first_connection.publish("alias/carry", 0, false, 0, &Props::new().two(prop::TOPIC_ALIAS, 1), b"set");
    first_connection.ping();
    first_connection.disconnect();
    let (mut second, _) = Wire::connect_ok(&broker, &persistent("alias-carry", Some(60), false));
    let from = broker.log_position();
    second.send(&publish("", 0, false, 0, &Props::new().two(prop::TOPIC_ALIAS, 1), b"use"));
    conformance_support::expect_rejected(&mut second, reason::PROTOCOL_ERROR);
    conformance_support::assert_warned(&broker, from, &second.local_addr(), "alias-carry");
}

// MQTT-3.1.2-27: a client that announces no Topic Alias Maximum never receives a Topic Alias.
#[test]
fn topic_alias_not_sent_without_maximum() {
    let broker = start_broker("");
    let mut subscriber = login(&broker, "alias-none-sub");
    subscriber.subscribe_ok(1, &[("noalias/#", 0)]);
    let mut publisher = login(&broker, "alias-none-pub");
    for round in 0..3 {
        publisher.publish("noalias/t", 1, false, round + 1, &Props::new(), b"x");
    }
    for message in subscriber.drain_publishes(QUIET) {
        assert!(message.property(prop::TOPIC_ALIAS).is_none(), "MQTT-3.1.2-27: Topic Alias sent: {message:?}");
        assert_eq!(message.topic, "noalias/t");
    }
}

// MQTT-3.1.2-26, MQTT-3.3.2-12: aliases the server sends stay within the client's Topic
// Alias Maximum, and an empty topic only uses an alias it has set.
#[test]
fn topic_alias_to_client_within_maximum() {
    let broker = start_broker("");
    let (mut subscriber, _) = Wire::v5(&broker, "alias-max-sub", Props::new().two(prop::TOPIC_ALIAS_MAXIMUM, 2));
    subscriber.subscribe_ok(1, &[("talias/#", 1)]);
    let mut publisher = login(&broker, "alias-max-pub");
    let mut expected = Vec::new();
    for round in 0..2u16 {
        for topic_index in 0..4u16 {
            let topic = format!("talias/{topic_index}");
            publisher.publish(&topic, 1, false, round * 4 + topic_index + 1, &Props::new(), b"x");
            expected.push(topic);
        }
    }
    let mut aliases: HashMap<u16, String> = HashMap::new();
    let mut resolved = Vec::new();
    for message in subscriber.drain_publishes(QUIET) {
        let alias = two(message.property(prop::TOPIC_ALIAS));
        if let Some(alias) = alias {
            assert!((1..=2).contains(&alias), "Topic Alias {alias} outside 1..=2: {message:?}");
        }
        let topic = match (message.topic.is_empty(), alias) {
            (false, Some(alias)) => {
                aliases.insert(alias, message.topic.clone());
                message.topic.clone()
            }
            (false, None) => message.topic.clone(),
            (true, Some(alias)) => aliases.get(&alias).cloned().unwrap_or_else(|| panic!("alias {alias} used before being set")),
            (true, None) => panic!("empty topic without Topic Alias: {message:?}"),
        };
        resolved.push(topic);
    }
    assert_eq!(resolved, expected);
}

// MQTT-3.8.3-3: with No Local, a client does not receive its own messages; others do.
#[test]
fn no_local() {
    let broker = start_broker("");
    let mut own = login(&broker, "nolocal-own");
    own.subscribe_ok(1, &[("nolocal/t", options(1, true, false, 0))]);
    let mut other = login(&broker, "nolocal-other");
    other.subscribe_ok(1, &[("nolocal/t", options(1, false, false, 0))]);
    own.publish("nolocal/t", 1, false, 2, &Props::new(), b"mine");
    assert_eq!(other.expect_publish().payload, b"mine");
    own.expect_silence(QUIET);
}

// MQTT-3.8.3-4: No Local on a shared subscription is a Protocol Error (DISCONNECT 0x82);
// Mosquitto 2.0.11 grants it.
#[test]
fn no_local_on_shared_subscription() {
    let bytes = encode::subscribe(5, 1, &Props::new(), &[("$share/group/t", options(0, true, false, 0))]);
    assert_v5_rejected(&bytes, reason::PROTOCOL_ERROR);
}

// MQTT-3.3.1-12, MQTT-3.3.1-13: Retain As Published 0 clears RETAIN on forwarded messages,
// 1 keeps the publisher's flag.
#[test]
fn retain_as_published() {
    let broker = start_broker("");
    let mut cleared = login(&broker, "rap-0");
    cleared.subscribe_ok(1, &[("rap/t", options(0, false, false, 0))]);
    let mut kept = login(&broker, "rap-1");
    kept.subscribe_ok(1, &[("rap/t", options(0, false, true, 0))]);
    let mut publisher = login(&broker, "rap-pub");
    publisher.publish("rap/t", 1, true, 1, &Props::new(), b"r");
    assert!(!cleared.expect_publish().retain, "Retain As Published 0 must forward RETAIN 0");
    assert!(kept.expect_publish().retain, "Retain As Published 1 must forward RETAIN 1");
}

/// Publishes a retained message on `topic` and returns a fresh subscriber connection.
fn retained_setup(broker: &Broker, topic: &str, subscriber_id: &str) -> Wire {
    let mut publisher = login(broker, &format!("{subscriber_id}-pub"));
    publisher.publish(topic, 1, true, 1, &Props::new(), b"retained");
    login(broker, subscriber_id)
}

// MQTT-3.3.1-9: Retain Handling 0 sends retained messages on every SUBSCRIBE.
#[test]
fn retain_handling_0() {
    let broker = start_broker("");
    let mut subscriber = retained_setup(&broker, "rh/0", "rh0");
    subscriber.subscribe_ok(1, &[("rh/0", options(0, false, false, 0))]);
    assert!(subscriber.expect_publish().retain);
    subscriber.subscribe_ok(2, &[("rh/0", options(0, false, false, 0))]);
    assert!(subscriber.expect_publish().retain, "Retain Handling 0: sent again on a repeated SUBSCRIBE");
}

// MQTT-3.3.1-10: Retain Handling 1 sends retained messages only for a new subscription.
#[test]
fn retain_handling_1() {
    let broker = start_broker("");
    let mut subscriber = retained_setup(&broker, "rh/1", "rh1");
    subscriber.subscribe_ok(1, &[("rh/1", options(0, false, false, 1))]);
    assert!(subscriber.expect_publish().retain);
    subscriber.subscribe_ok(2, &[("rh/1", options(0, false, false, 1))]);
    subscriber.expect_silence(QUIET);
}

// MQTT-3.3.1-11: Retain Handling 2 never sends retained messages on SUBSCRIBE.
#[test]
fn retain_handling_2() {
    let broker = start_broker("");
    let mut subscriber = retained_setup(&broker, "rh/2", "rh2");
    subscriber.subscribe_ok(1, &[("rh/2", options(0, false, false, 2))]);
    subscriber.expect_silence(QUIET);
}

// MQTT-3.3.4-3: a message matching a subscription made with a Subscription Identifier
// carries that identifier.
#[test]
fn subscription_identifier_forwarded() {
    let broker = start_broker("");
    let mut subscriber = login(&broker, "sid-one");
    let codes = subscriber.subscribe_with(1, &Props::new().varint(prop::SUBSCRIPTION_IDENTIFIER, 300), &[("sid/one", 0)]);
    assert_eq!(codes, vec![0]);
    let mut publisher = login(&broker, "sid-one-pub");
    publisher.publish("sid/one", 0, false, 0, &Props::new(), b"x");
    assert_eq!(subscriber.expect_publish().subscription_ids(), vec![300]);
}

// MQTT-3.3.4-4, MQTT-3.3.4-5: with overlapping subscriptions the identifiers of all matching
// subscriptions reach the client, in one copy or one copy each.
#[test]
fn subscription_identifiers_overlapping() {
    let broker = start_broker("");
    let mut subscriber = login(&broker, "sid-overlap");
    subscriber.subscribe_with(1, &Props::new().varint(prop::SUBSCRIPTION_IDENTIFIER, 7), &[("sidx/#", 0)]);
    subscriber.subscribe_with(2, &Props::new().varint(prop::SUBSCRIPTION_IDENTIFIER, 9), &[("sidx/t", 0)]);
    let mut publisher = login(&broker, "sid-overlap-pub");
    publisher.publish("sidx/t", 0, false, 0, &Props::new(), b"both");
    publisher.publish("sidx/u", 0, false, 0, &Props::new(), b"one");

    let received = subscriber.drain_publishes(QUIET);
    let both: BTreeSet<u32> =
        received.iter().filter(|message| message.payload == b"both").flat_map(|message| message.subscription_ids()).collect();
    assert_eq!(both, BTreeSet::from([7, 9]), "identifiers for sidx/t: {received:?}");
    let one: Vec<u32> =
        received.iter().filter(|message| message.payload == b"one").flat_map(|message| message.subscription_ids()).collect();
    assert_eq!(one, vec![7], "identifiers for sidx/u: {received:?}");
}

// MQTT 5.0 section 3.8.2.1.2: Subscription Identifier 0 is a Protocol Error.
#[test]
fn subscription_identifier_zero() {
    let bytes = encode::subscribe(5, 1, &Props::new().varint(prop::SUBSCRIPTION_IDENTIFIER, 0), &[("sid/zero", 0)]);
    assert_v5_rejected(&bytes, reason::PROTOCOL_ERROR);
}

// MQTT-3.3.4-6: a PUBLISH from a client must not carry a Subscription Identifier, so one
// that does is a Protocol Error (Mosquitto 2.0.11 ignores it).
#[test]
fn subscription_identifier_from_client() {
    let props = Props::new().varint(prop::SUBSCRIPTION_IDENTIFIER, 5);
    assert_v5_rejected(&publish("sid/client", 0, false, 0, &props, b"x"), reason::PROTOCOL_ERROR);
}

/// Properties a publisher sets that the server must forward unchanged.
fn application_properties() -> Props {
    Props::new()
        .byte(prop::PAYLOAD_FORMAT_INDICATOR, 1)
        .str(prop::CONTENT_TYPE, "application/json; charset=utf-8")
        .str(prop::RESPONSE_TOPIC, "reply/to/me")
        .string(prop::CORRELATION_DATA, &[0x00, 0x01, 0xFE, 0xFF])
        .user("region", "eu")
        .user("empty", "")
        .user("region", "us")
}

/// Asserts that `received` carries the properties of [`application_properties`]: the same
/// values, User Properties in the same order.
fn assert_application_properties(received: &[Property]) {
    let sent = conformance_support::decode::read_props(
        &Body::new().props(&application_properties()).bytes,
        &mut 0,
    )
    .unwrap();
    let user = |props: &[Property]| -> Vec<Value> { find_all(props, prop::USER_PROPERTY).into_iter().cloned().collect() };
    assert_eq!(user(received), user(&sent), "MQTT-3.3.2-17, MQTT-3.3.2-18: User Properties, in order");
    for id in [prop::PAYLOAD_FORMAT_INDICATOR, prop::CONTENT_TYPE, prop::RESPONSE_TOPIC, prop::CORRELATION_DATA] {
        assert_eq!(find_all(received, id), find_all(&sent, id), "property {id:#04x} not forwarded unchanged");
    }
}

// MQTT-3.3.2-4, MQTT-3.3.2-15 to MQTT-3.3.2-20: Payload Format Indicator, Content Type,
// Response Topic, Correlation Data and User Properties reach the subscriber unchanged.
#[test]
fn publish_properties_forwarded() {
    let broker = start_broker("");
    let mut subscriber = login(&broker, "props-sub");
    subscriber.subscribe_ok(1, &[("props/t", 1)]);
    let mut publisher = login(&broker, "props-pub");
    publisher.publish("props/t", 1, false, 1, &application_properties(), b"{\"t\":24.5}");
    let message = subscriber.expect_publish();
    assert_eq!(message.payload, b"{\"t\":24.5}");
    assert_application_properties(&message.props);
}

// MQTT-3.3.2-4 to MQTT-3.3.2-20 for a retained message sent to a later subscriber.
#[test]
fn retained_properties_forwarded() {
    let broker = start_broker("");
    let mut publisher = login(&broker, "rprops-pub");
    publisher.publish("rprops/t", 1, true, 1, &application_properties(), b"r");
    let mut subscriber = login(&broker, "rprops-sub");
    subscriber.subscribe_ok(1, &[("rprops/t", 1)]);
    let message = subscriber.expect_publish();
    assert!(message.retain);
    assert_application_properties(&message.props);
}

// MQTT 5.0 section 3.1.3.2 (MQTT-3.1.3-10 for the order of User Properties): the will's
// properties are published with it.
#[test]
fn will_properties_forwarded() {
    let broker = start_broker("");
    let mut watcher = login(&broker, "wprops-watch");
    watcher.subscribe_ok(1, &[("wprops/t", 0)]);
    let connect = Connect::v5("wprops").will("wprops/t", b"gone", 0, false).will_props(application_properties());
    let (client, _) = Wire::connect_ok(&broker, &connect);
    client.drop_connection();
    let will = watcher.expect_publish();
    assert_eq!(will.payload, b"gone");
    assert_application_properties(&will.props);
}

/// Asserts that `frame`'s properties hold no Reason String and no User Property.
fn assert_no_problem_information(props: &[Property], what: &str) {
    assert!(find(props, prop::REASON_STRING).is_none(), "MQTT-3.1.2-29: Reason String in {what}: {props:?}");
    assert!(find(props, prop::USER_PROPERTY).is_none(), "MQTT-3.1.2-29: User Property in {what}: {props:?}");
}

// MQTT-3.1.2-29: with Request Problem Information 0 the server sends no Reason String and
// no User Property except on PUBLISH, CONNACK and DISCONNECT.
#[test]
fn request_problem_information_zero() {
    let broker = start_broker("");
    let (mut wire, _) = Wire::v5(&broker, "rpi-0", Props::new().byte(prop::REQUEST_PROBLEM_INFORMATION, 0));

    let deep = vec!["d"; 200].join("/");
    wire.send(&encode::subscribe(5, 1, &Props::new(), &[(deep.as_str(), 0)]));
    let suback = wire.expect_frame("SUBACK");
    let (_, props, codes) = suback.sub_reply(5).unwrap();
    assert!(codes[0] >= 0x80, "a 200-level filter must be refused: {suback:?}");
    assert_no_problem_information(&props, "SUBACK");

    wire.send(&encode::unsubscribe(5, 2, &["never/subscribed"]));
    let unsuback = wire.expect_frame("UNSUBACK");
    assert_no_problem_information(&unsuback.sub_reply(5).unwrap().1, "UNSUBACK");

    wire.send(&publish("rpi/nobody", 1, false, 3, &Props::new(), b"x"));
    let puback = wire.expect_frame("PUBACK");
    assert_no_problem_information(&puback.reply().unwrap().props, "PUBACK");
}

// MQTT 5.0 section 3.1.2.11.7: Request Problem Information other than 0 or 1 is a Protocol
// Error.
#[test]
fn request_problem_information_invalid() {
    let connect = Connect::v5("rpi-2").props(Props::new().byte(prop::REQUEST_PROBLEM_INFORMATION, 2));
    assert_v5_connect_rejected(&connect, reason::PROTOCOL_ERROR);
}

// MQTT-3.1.2-28: with Request Response Information 0 (or absent) CONNACK has no Response
// Information.
#[test]
fn request_response_information_zero() {
    let broker = start_broker("");
    let (_, explicit) = Wire::v5(&broker, "rri-0", Props::new().byte(prop::REQUEST_RESPONSE_INFORMATION, 0));
    assert!(find(&explicit.props, prop::RESPONSE_INFORMATION).is_none(), "{explicit:?}");
    let (_, absent) = Wire::v5(&broker, "rri-absent", Props::new());
    assert!(find(&absent.props, prop::RESPONSE_INFORMATION).is_none(), "{absent:?}");
    let (_, asked) = Wire::v5(&broker, "rri-1", Props::new().byte(prop::REQUEST_RESPONSE_INFORMATION, 1));
    if let Some(value) = find(&asked.props, prop::RESPONSE_INFORMATION) {
        assert!(matches!(value, Value::Text(_)), "Response Information must be a string: {asked:?}");
    }
}

// MQTT 5.0 section 3.1.2.11.6: Request Response Information other than 0 or 1 is a
// Protocol Error.
#[test]
fn request_response_information_invalid() {
    let connect = Connect::v5("rri-2").props(Props::new().byte(prop::REQUEST_RESPONSE_INFORMATION, 2));
    assert_v5_connect_rejected(&connect, reason::PROTOCOL_ERROR);
}

// MQTT 5.0 sections 3.14.2.2.3 and 3.14.4: a DISCONNECT with a Reason String and a User
// Property ends the connection normally, and the will is discarded.
#[test]
fn client_disconnect_with_reason_string() {
    let broker = start_broker("");
    let mut watcher = login(&broker, "reason-watch");
    watcher.subscribe_ok(1, &[("reason/will", 0)]);
    let (mut client, _) = Wire::connect_ok(&broker, &Connect::v5("reason-client").will("reason/will", b"w", 0, false));
    let props = Props::new().str(prop::REASON_STRING, "shutting down for maintenance").user("k", "v");
    client.send(&Body::new().u8(0).props(&props).packet(first::DISCONNECT));
    client.expect_closed();
    watcher.expect_silence(Duration::from_millis(1000));
    assert_broker_healthy(&broker);
}

// MQTT 5.0 section 3.14.2.1: DISCONNECT with reason 0x04 (Disconnect with Will Message)
// publishes the will.
#[test]
fn disconnect_with_will_message() {
    let broker = start_broker("");
    let mut watcher = login(&broker, "dww-watch");
    watcher.subscribe_ok(1, &[("dww/will", 0)]);
    let (mut client, _) = Wire::connect_ok(&broker, &Connect::v5("dww").will("dww/will", b"bye", 0, false));
    client.send(&[first::DISCONNECT, 0x01, reason::DISCONNECT_WITH_WILL]);
    client.expect_closed();
    assert_eq!(watcher.expect_publish().payload, b"bye");
}

// MQTT-1.5.4-1, MQTT-3.1.2-8: a DISCONNECT with an ill-formed Reason String is malformed,
// so it is not a normal disconnection: DISCONNECT 0x81 and the will is published.
#[test]
fn malformed_disconnect_publishes_will() {
    let broker = start_broker("");
    let mut watcher = login(&broker, "mdis-watch");
    watcher.subscribe_ok(1, &[("mdis/will", 0)]);
    let (mut client, _) = Wire::connect_ok(&broker, &Connect::v5("mdis").will("mdis/will", b"lost", 0, false));
    let props = Props::new().string(prop::REASON_STRING, b"\xFF\xFE");
    client.send(&Body::new().u8(0).props(&props).packet(first::DISCONNECT));
    conformance_support::expect_rejected(&mut client, reason::MALFORMED_PACKET);
    assert_eq!(watcher.expect_publish().payload, b"lost");
}

// MQTT-3.1.2-24, MQTT-3.1.2-25: a message larger than the client's Maximum Packet Size is
// not sent to it (and the connection stays up); smaller ones are.
#[test]
fn client_maximum_packet_size_respected() {
    let broker = start_broker("");
    let (mut subscriber, _) = Wire::v5(&broker, "mps-sub", Props::new().four(prop::MAXIMUM_PACKET_SIZE, 64));
    subscriber.subscribe_ok(1, &[("mps/t", 1)]);
    let mut publisher = login(&broker, "mps-pub");
    publisher.publish("mps/t", 1, false, 1, &Props::new(), &[b'x'; 200]);
    publisher.publish("mps/t", 1, false, 2, &Props::new(), b"small");

    let frame = subscriber.expect_frame("PUBLISH");
    assert!(frame.bytes.len() <= 64, "MQTT-3.1.2-24: {}-byte packet sent to a client with Maximum Packet Size 64", frame.bytes.len());
    let message = frame.publish(5).unwrap();
    subscriber.acknowledge(&message);
    assert_eq!(message.payload, b"small");
    subscriber.expect_silence(QUIET);
    subscriber.ping();
}

// MQTT 5.0 section 3.1.2.11.4: Maximum Packet Size 0 is a Protocol Error.
#[test]
fn client_maximum_packet_size_zero() {
    let connect = Connect::v5("mps-0").props(Props::new().four(prop::MAXIMUM_PACKET_SIZE, 0));
    assert_v5_connect_rejected(&connect, reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 3.2.2.3.6: the server announces limits.max_packet_size and sends
// DISCONNECT 0x95 (Packet too large) for a larger packet. A packet of exactly the limit passes.
#[test]
fn server_maximum_packet_size_enforced() {
    let broker = start_broker("[limits]\nmax_packet_size = 1024\n");
    let (mut wire, connack) = Wire::v5(&broker, "smps", Props::new());
    assert_eq!(four(find(&connack.props, prop::MAXIMUM_PACKET_SIZE)), Some(1024), "{connack:?}");

    let fits = publish("smps/t", 1, false, 1, &Props::new(), &[]);
    let payload_len = 1024 - fits.len() - 1;
    let exact = publish("smps/t", 1, false, 1, &Props::new(), &vec![b'x'; payload_len]);
    assert_eq!(exact.len(), 1024, "test setup: a 1024-byte PUBLISH");
    wire.send(&exact);
    let puback = wire.expect_frame("PUBACK");
    assert_eq!(puback.kind(), 4, "a 1024-byte packet is within the limit: {puback:?}");

    let from = broker.log_position();
    wire.send(&publish("smps/t", 1, false, 2, &Props::new(), &vec![b'x'; 2000]));
    conformance_support::expect_rejected(&mut wire, reason::PACKET_TOO_LARGE);
    conformance_support::assert_warned(&broker, from, &wire.local_addr(), "smps");
    assert_broker_healthy(&broker);
}

// limits.max_packet_size for 3.1.1: a larger packet closes the connection without reply.
#[test]
fn server_maximum_packet_size_v311() {
    let broker = start_broker("[limits]\nmax_packet_size = 1024\n");
    let bytes = encode::publish(4, b"smps/t", 0, false, 0, &Props::new(), &vec![b'x'; 2000]);
    assert_rejects(&broker, 4, "smps-311", &bytes, reason::PACKET_TOO_LARGE);
}

/// Connects a will client with Session Expiry `expiry` and Will Delay `delay` seconds and a
/// watcher of its will topic.
fn will_delay_setup(broker: &Broker, name: &str, expiry: u32, delay: u32) -> (Wire, Wire) {
    let topic = format!("wd/{name}");
    let mut watcher = login(broker, &format!("{name}-watch"));
    watcher.subscribe_ok(1, &[(topic.as_str(), 0)]);
    let connect = persistent(name, Some(expiry), true)
        .will(&topic, b"delayed", 0, false)
        .will_props(Props::new().four(prop::WILL_DELAY_INTERVAL, delay));
    let (client, _) = Wire::connect_ok(broker, &connect);
    (watcher, client)
}

// MQTT 5.0 section 3.1.3.2.2: with a Will Delay Interval shorter than the Session Expiry
// Interval the will is published when the delay has passed, not before.
#[test]
fn will_delay_shorter_than_expiry() {
    let broker = start_broker("");
    let (mut watcher, client) = will_delay_setup(&broker, "wd-short", 30, 2);
    let dropped = Instant::now();
    client.drop_connection();
    watcher.expect_silence(Duration::from_millis(1200));
    let will = watcher.expect_publish();
    let elapsed = dropped.elapsed();
    assert_eq!(will.payload, b"delayed");
    assert!(elapsed >= Duration::from_millis(1800), "will published after {elapsed:?}, before its 2 s delay");
}

// MQTT 5.0 section 3.1.3.2.2: the will is published when the session ends, if that comes
// before the Will Delay Interval.
#[test]
fn will_delay_longer_than_expiry() {
    let broker = start_broker("");
    let (mut watcher, client) = will_delay_setup(&broker, "wd-long", 1, 60);
    let dropped = Instant::now();
    client.drop_connection();
    let will = watcher.expect_publish();
    let elapsed = dropped.elapsed();
    assert_eq!(will.payload, b"delayed");
    assert!(elapsed >= Duration::from_millis(800), "will published after {elapsed:?}, before the 1 s session expiry");
}

// MQTT-3.1.3-9: a reconnection to the session within the Will Delay Interval cancels the will.
#[test]
fn will_delay_cancelled_by_reconnect() {
    let broker = start_broker("");
    let (mut watcher, client) = will_delay_setup(&broker, "wd-cancel", 60, 2);
    client.drop_connection();
    thread::sleep(Duration::from_millis(500));
    let (_back, connack) = Wire::connect_ok(&broker, &persistent("wd-cancel", Some(60), false));
    assert!(connack.session_present);
    watcher.expect_silence(Duration::from_millis(3000));
}

// MQTT 5.0 section 2.2.2.2: a property included twice where the specification allows it
// once is a Protocol Error: Session Expiry Interval twice in CONNECT gets CONNACK 0x82.
#[test]
fn duplicate_property_in_connect() {
    let props = Props::new().four(prop::SESSION_EXPIRY_INTERVAL, 10).four(prop::SESSION_EXPIRY_INTERVAL, 20);
    assert_v5_connect_rejected(&Connect::v5("dup-connect").props(props), reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 3.1.3.2: Will Delay Interval twice in the will properties.
#[test]
fn duplicate_property_in_will() {
    let props = Props::new().four(prop::WILL_DELAY_INTERVAL, 1).four(prop::WILL_DELAY_INTERVAL, 2);
    let connect = Connect::v5("dup-will").will("dup/will", b"x", 0, false).will_props(props);
    assert_v5_connect_rejected(&connect, reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 3.3.2.3.2: Payload Format Indicator twice in PUBLISH is a Protocol Error.
#[test]
fn duplicate_payload_format_indicator() {
    let props = Props::new().byte(prop::PAYLOAD_FORMAT_INDICATOR, 0).byte(prop::PAYLOAD_FORMAT_INDICATOR, 0);
    assert_v5_rejected(&publish("dup/pfi", 0, false, 0, &props, b"x"), reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 3.3.2.3.9: Content Type twice in PUBLISH is a Protocol Error.
#[test]
fn duplicate_content_type() {
    let props = Props::new().str(prop::CONTENT_TYPE, "a").str(prop::CONTENT_TYPE, "b");
    assert_v5_rejected(&publish("dup/ct", 1, false, 1, &props, b"x"), reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 3.8.2.1.2: Subscription Identifier twice in SUBSCRIBE is a Protocol Error.
#[test]
fn duplicate_subscription_identifier() {
    let props = Props::new().varint(prop::SUBSCRIPTION_IDENTIFIER, 1).varint(prop::SUBSCRIPTION_IDENTIFIER, 2);
    assert_v5_rejected(&encode::subscribe(5, 1, &props, &[("dup/sid", 0)]), reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 2.2.2.2: a property not valid for the packet type is a Malformed Packet:
// Session Expiry Interval in PUBLISH.
#[test]
fn property_not_allowed_in_publish() {
    let props = Props::new().four(prop::SESSION_EXPIRY_INTERVAL, 10);
    assert_v5_rejected(&publish("bad/prop", 0, false, 0, &props, b"x"), reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 2.2.2.2: Topic Alias in SUBSCRIBE is a Malformed Packet.
#[test]
fn property_not_allowed_in_subscribe() {
    let props = Props::new().two(prop::TOPIC_ALIAS, 1);
    assert_v5_rejected(&encode::subscribe(5, 1, &props, &[("bad/prop", 0)]), reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 2.2.2.2: Topic Alias in CONNECT gets CONNACK 0x81.
#[test]
fn property_not_allowed_in_connect() {
    let connect = Connect::v5("bad-prop-connect").props(Props::new().two(prop::TOPIC_ALIAS, 1));
    assert_v5_connect_rejected(&connect, reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 3.1.3.2: Session Expiry Interval among the will properties gets CONNACK 0x81.
#[test]
fn property_not_allowed_in_will() {
    let props = Props::new().four(prop::SESSION_EXPIRY_INTERVAL, 10);
    let connect = Connect::v5("bad-prop-will").will("bad/will", b"x", 0, false).will_props(props);
    assert_v5_connect_rejected(&connect, reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 2.2.2.2: an unknown property identifier (0x7F) is a Malformed Packet.
#[test]
fn unknown_property_identifier() {
    let mut props = Props::new();
    props.bytes.extend_from_slice(&[0x7F, 0x00]);
    assert_v5_rejected(&publish("bad/unknown", 0, false, 0, &props, b"x"), reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 2.2.2.1: a Property Length that runs past the packet is malformed.
#[test]
fn property_length_past_packet() {
    let body = Body::new().str("bad/length").raw(&[0x20, 0x01, 0x00]);
    assert_v5_rejected(&packet(first::PUBLISH, &body.bytes), reason::MALFORMED_PACKET);
}

// MQTT-1.5.4-1: ill-formed UTF-8 in a User Property key is a Malformed Packet.
#[test]
fn user_property_invalid_utf8() {
    let mut props = Props::new();
    props.bytes.push(prop::USER_PROPERTY);
    props.bytes.extend(Body::new().string(b"k\xC0").str("v").bytes);
    assert_v5_rejected(&publish("bad/user", 0, false, 0, &props, b"x"), reason::MALFORMED_PACKET);
}

// MQTT-1.5.4-2: U+0000 in a Content Type is a Malformed Packet.
#[test]
fn content_type_null_character() {
    let props = Props::new().string(prop::CONTENT_TYPE, b"text/\0plain");
    assert_v5_rejected(&publish("bad/ct", 0, false, 0, &props, b"x"), reason::MALFORMED_PACKET);
}

// MQTT-3.3.2-14: a Response Topic must not contain wildcards, so one with '#' is a Protocol
// Error, DISCONNECT 0x82 (Mosquitto 2.0.11 accepts it).
#[test]
fn response_topic_wildcard() {
    let props = Props::new().str(prop::RESPONSE_TOPIC, "reply/#");
    assert_v5_rejected(&publish("bad/rt", 0, false, 0, &props, b"x"), reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 4.12: an Authentication Method the server does not support gets CONNACK
// 0x8C (Bad authentication method), as Mosquitto without an auth plugin, then the close.
#[test]
fn unsupported_authentication_method() {
    let connect = Connect::v5("auth-method").props(Props::new().str(prop::AUTHENTICATION_METHOD, "SCRAM-SHA-1"));
    assert_v5_connect_rejected(&connect, reason::BAD_AUTHENTICATION_METHOD);
}

// MQTT 5.0 section 4.12: AUTH from a client whose CONNECT had no Authentication Method is a
// Protocol Error.
#[test]
fn auth_packet_without_method() {
    assert_v5_rejected(&[first::AUTH, 0x00], reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 3.4.2.1: PUBACK carries 0x10 (No matching subscribers) when no client
// subscribed, as Mosquitto, and 0x00 otherwise.
#[test]
fn puback_reason_codes() {
    let broker = start_broker("");
    let mut wire = login(&broker, "puback-codes");
    wire.send(&publish("nobody/here", 1, false, 1, &Props::new(), b"x"));
    let alone = wire.expect_frame("PUBACK").reply().unwrap();
    assert_eq!((alone.packet_id, alone.code), (Some(1), reason::NO_MATCHING_SUBSCRIBERS));

    wire.subscribe_ok(2, &[("nobody/here", 0)]);
    wire.send(&publish("nobody/here", 1, false, 3, &Props::new(), b"x"));
    let frame = wire.expect_frame("PUBACK");
    let matched = frame.reply().unwrap();
    assert_eq!((matched.packet_id, matched.code), (Some(3), reason::SUCCESS), "{frame:?}");
}

// MQTT 5.0 section 4.3.3: PUBREL for an unknown packet id gets PUBCOMP with the same id.
// Its reason code is 0x00 (Mosquitto) or 0x92 (Packet Identifier not found).
#[test]
fn pubrel_unknown_id_v5() {
    let broker = start_broker("");
    let mut wire = login(&broker, "pubrel-unknown-5");
    wire.send(&encode::ack(first::PUBREL, 77));
    let frame: Frame = wire.expect_frame("PUBCOMP");
    assert_eq!(frame.bytes[0], first::PUBCOMP, "{frame:?}");
    let reply = frame.reply().unwrap();
    assert_eq!(reply.packet_id, Some(77));
    assert!(
        [reason::SUCCESS, reason::PACKET_IDENTIFIER_NOT_FOUND].contains(&reply.code),
        "PUBCOMP reason {:#04x}",
        reply.code
    );
}

// MQTT 5.0 section 3.8.4: a well-formed subscription the server rejects (here over
// limits.max_topic_levels) gets a failure code in SUBACK, and the broker sends nothing else.
#[test]
fn suback_refusal_keeps_connection() {
    let broker = start_broker("");
    let mut wire = login(&broker, "suback-refusal");
    let deep = vec!["x"; 129].join("/");
    let codes = wire.subscribe(1, &[(deep.as_str(), 0), ("fine/t", 1)]);
    assert_eq!(codes, vec![reason::TOPIC_FILTER_INVALID, reason::GRANTED_QOS_1]);
    wire.expect_silence(QUIET);
    wire.ping();
}

// MQTT 5.0 section 3.14.2.2.3: a server's DISCONNECT may carry a Reason String, even with
// Request Problem Information 0 (MQTT-3.1.2-29 allows it on CONNACK and DISCONNECT). The
// broker names the fault there, so a client's developer need not read the broker's log.
#[test]
fn disconnect_reason_string_explains() {
    let broker = start_broker("");
    let (mut wire, _) = Wire::v5(&broker, "explained", Props::new().byte(prop::REQUEST_PROBLEM_INFORMATION, 0));
    wire.send(&publish("a/+/b", 0, false, 0, &Props::new(), b"x"));
    let reply = expect_disconnect(&mut wire, reason::PROTOCOL_ERROR);
    let text = match find(&reply.props, prop::REASON_STRING) {
        Some(Value::Text(text)) => text.clone(),
        other => panic!("DISCONNECT without a Reason String: {other:?}"),
    };
    assert!(text.contains("a/+/b"), "Reason String {text:?}");
    assert!(text.contains("wildcard"), "Reason String {text:?}");
}

// MQTT 5.0 section 3.1.2.11.5: Topic Alias Maximum 0 is valid and means the client takes no
// alias. The client connects, and its messages carry full topics.
#[test]
fn topic_alias_maximum_zero() {
    let broker = start_broker("");
    let (mut wire, connack) = Wire::v5(&broker, "tam-zero", Props::new().two(prop::TOPIC_ALIAS_MAXIMUM, 0));
    assert_eq!(connack.code, reason::SUCCESS, "{connack:?}");
    wire.subscribe_ok(1, &[("tam/zero", 0)]);
    let mut publisher = login(&broker, "tam-zero-pub");
    for _ in 0..2 {
        publisher.publish("tam/zero", 0, false, 0, &Props::new(), b"x");
        let message = wire.expect_publish();
        assert_eq!(message.topic, "tam/zero");
        assert!(find(&message.props, prop::TOPIC_ALIAS).is_none(), "Topic Alias sent to a client that takes none: {message:?}");
    }
    assert_broker_healthy(&broker);
}
