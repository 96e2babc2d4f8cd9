//! Malformed and forbidden input at the framing level: Remaining Length, reserved packet
//! types and flag bits, packets only a server may send, truncated fields, announced sizes
//! the broker must not allocate, and generated garbage. Each connection that sends such
//! input must be closed (MQTT 3.1.1 MQTT-4.8.0-1; MQTT 5.0 MQTT-4.13.1-1, after DISCONNECT
//! with the reason code), logged at WARN, and must never crash the broker.

mod common;
mod conformance_support;

use std::thread;
use std::time::{Duration, Instant};

use conformance_support::encode::{self, packet};
use conformance_support::{
    assert_broker_healthy, assert_rejects, assert_rejects_on, assert_warned, first, reason, start_broker, Body, Connect, Props, ReadError,
    Rng, Wire, REPLY_TIMEOUT,
};

fn assert_rejected(level: u8, bytes: &[u8], v5_reason: u8) {
    let broker = start_broker("");
    assert_rejects(&broker, level, &format!("malformed-{level}"), bytes, v5_reason);
}

// MQTT 3.1.1 section 2.2.3: the Remaining Length has at most 4 bytes; a fifth
// continuation byte in the first packet closes the connection without reply.
#[test]
fn remaining_length_five_bytes_first_packet() {
    let broker = start_broker("");
    let from = broker.log_position();
    let mut wire = Wire::open(&broker);
    wire.send(&[first::CONNECT, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
    wire.expect_closed();
    assert_warned(&broker, from, &wire.local_addr(), "");
    assert_broker_healthy(&broker);
}

// MQTT 3.1.1 section 2.2.3: a 5-byte Remaining Length after CONNECT closes the connection.
#[test]
fn remaining_length_five_bytes_v311() {
    assert_rejected(4, &[first::PUBLISH, 0x80, 0x80, 0x80, 0x80, 0x01], reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 1.5.5: a Variable Byte Integer of more than 4 bytes is a Malformed
// Packet, DISCONNECT 0x81.
#[test]
fn remaining_length_five_bytes_v5() {
    assert_rejected(5, &[first::PINGREQ, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], reason::MALFORMED_PACKET);
}

// limits.max_packet_size: a Remaining Length over the limit closes the connection as soon
// as the header arrives, without waiting for (or buffering) the body.
#[test]
fn remaining_length_over_limit_v311() {
    let broker = start_broker("[limits]\nmax_packet_size = 1024\n");
    assert_rejects(&broker, 4, "over-limit", &[first::PUBLISH, 0x80, 0x10], reason::PACKET_TOO_LARGE);
}

// MQTT 5.0 section 3.2.2.3.6: a packet announced larger than the server's Maximum Packet
// Size gets DISCONNECT 0x95 once its header arrives.
#[test]
fn remaining_length_over_limit_v5() {
    let broker = start_broker("[limits]\nmax_packet_size = 1024\n");
    assert_rejects(&broker, 5, "over-limit-5", &[first::PUBLISH, 0x80, 0x10], reason::PACKET_TOO_LARGE);
}

// The first packet over limits.max_packet_size closes before any body is read.
#[test]
fn remaining_length_over_limit_first_packet() {
    let broker = start_broker("[limits]\nmax_packet_size = 1024\n");
    let from = broker.log_position();
    let mut wire = Wire::open(&broker);
    wire.send(&[first::CONNECT, 0x80, 0x80, 0x01]);
    wire.expect_closed();
    assert_warned(&broker, from, &wire.local_addr(), "");
    assert_broker_healthy(&broker);
}

/// Sends `header` and then `body_bytes` of payload in 64 KiB writes, and returns how far
/// the broker's resident memory grew, in KiB. Stops early if the broker closes.
fn memory_growth_while_sending(broker: &common::Broker, wire: &mut Wire, header: &[u8], body_bytes: usize) -> u64 {
    let before = broker.rss_kb();
    wire.send(header);
    let chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < body_bytes {
        if wire.try_send(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    thread::sleep(Duration::from_millis(300));
    broker.rss_kb().saturating_sub(before)
}

// The broker must never allocate what a client merely announces: a CONNECT announcing
// 128 MiB, within the default packet size limit, grows memory only by what arrives.
#[test]
fn announced_connect_size_not_allocated() {
    let broker = start_broker("[limits]\nconnect_timeout_secs = 3\n");
    let mut wire = Wire::open(&broker);
    // Remaining Length 134,217,727 (FF FF FF 3F).
    let grown_kb = memory_growth_while_sending(&broker, &mut wire, &[first::CONNECT, 0xFF, 0xFF, 0xFF, 0x3F], 1 << 20);
    assert!(grown_kb < 48 * 1024, "broker memory grew by {grown_kb} KiB for 1 MiB received of a 128 MiB CONNECT");
    match wire.frames_until_close() {
        Ok(frames) => assert!(frames.is_empty(), "reply to an incomplete CONNECT: {frames:?}"),
        Err(frames) => panic!("incomplete CONNECT still open after the connect timeout; received {frames:?}"),
    }
    assert_broker_healthy(&broker);
}

// A client that has not authenticated cannot make the broker buffer more than 1 MiB: a
// CONNECT announced larger is refused at once, though limits.max_packet_size allows it.
#[test]
fn connect_over_one_mib_refused() {
    let broker = start_broker("");
    let from = broker.log_position();
    let mut wire = Wire::open(&broker);
    // Remaining Length 2,097,152 (80 80 80 01); the connect timeout (10 s) is longer than
    // the wait for the close.
    wire.send(&[first::CONNECT, 0x80, 0x80, 0x80, 0x01]);
    wire.expect_closed();
    assert_warned(&broker, from, &wire.local_addr(), "");
    assert_broker_healthy(&broker);
}

// The same for a PUBLISH after CONNECT that announces 128 MiB: memory grows only by what
// arrives, and the broker keeps serving others.
#[test]
fn announced_publish_size_not_allocated() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "announced-publish");
    let grown_kb = memory_growth_while_sending(&broker, &mut wire, &[first::PUBLISH, 0xFF, 0xFF, 0xFF, 0x3F], 1 << 20);
    assert!(grown_kb < 48 * 1024, "broker memory grew by {grown_kb} KiB for 1 MiB received of a 128 MiB PUBLISH");
    let mut other = Wire::v311(&broker, "announced-other");
    other.ping();
    wire.drop_connection();
    assert_broker_healthy(&broker);
}

// MQTT 3.1.1 section 2.2.1: packet type 0 is reserved; it closes the connection.
#[test]
fn reserved_packet_type_0_v311() {
    assert_rejected(4, &[0x00, 0x00], reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 2.1.2: packet type 0 is forbidden; DISCONNECT 0x82 as Mosquitto 2.0.11.
#[test]
fn reserved_packet_type_0_v5() {
    assert_rejected(5, &[0x00, 0x00], reason::PROTOCOL_ERROR);
}

// MQTT 3.1.1 section 2.2.1: packet type 15 is reserved in 3.1.1 (AUTH exists only in 5.0).
#[test]
fn reserved_packet_type_15_v311() {
    assert_rejected(4, &[0xF0, 0x00], reason::MALFORMED_PACKET);
}

// MQTT-4.8.0-1: CONNACK is sent only by a server; from a client it is a protocol violation.
#[test]
fn client_sends_connack_v311() {
    assert_rejected(4, &[first::CONNACK, 0x02, 0x00, 0x00], reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 4.13: a CONNACK from a client is a Protocol Error, DISCONNECT 0x82.
#[test]
fn client_sends_connack_v5() {
    assert_rejected(5, &[first::CONNACK, 0x03, 0x00, 0x00, 0x00], reason::PROTOCOL_ERROR);
}

// MQTT-4.8.0-1: SUBACK from a client is a protocol violation.
#[test]
fn client_sends_suback_v311() {
    assert_rejected(4, &[first::SUBACK, 0x03, 0x00, 0x01, 0x00], reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 4.13: SUBACK from a client is a Protocol Error.
#[test]
fn client_sends_suback_v5() {
    assert_rejected(5, &[first::SUBACK, 0x04, 0x00, 0x01, 0x00, 0x00], reason::PROTOCOL_ERROR);
}

// MQTT-4.8.0-1: UNSUBACK from a client is a protocol violation.
#[test]
fn client_sends_unsuback_v311() {
    assert_rejected(4, &[first::UNSUBACK, 0x02, 0x00, 0x01], reason::PROTOCOL_ERROR);
}

// MQTT-4.8.0-1: PINGRESP from a client is a protocol violation.
#[test]
fn client_sends_pingresp_v311() {
    assert_rejected(4, &[first::PINGRESP, 0x00], reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 4.13: PINGRESP from a client is a Protocol Error.
#[test]
fn client_sends_pingresp_v5() {
    assert_rejected(5, &[first::PINGRESP, 0x00], reason::PROTOCOL_ERROR);
}

// MQTT-2.2.2-2 (3.1.1) / section 2.1.3 (5.0): reserved flag bits that differ from the
// listed value close the connection; 5.0 names it a Malformed Packet.

// MQTT-2.2.2-2: PINGREQ with flags 0001.
#[test]
fn pingreq_flags_v311() {
    assert_rejected(4, &[0xC1, 0x00], reason::MALFORMED_PACKET);
}

// Section 2.1.3 (5.0): PINGREQ with flags 1000.
#[test]
fn pingreq_flags_v5() {
    assert_rejected(5, &[0xC8, 0x00], reason::MALFORMED_PACKET);
}

/// Connects a client of `level` with a will on `will/<client_id>` and a watcher of that
/// topic.
fn client_with_will(broker: &common::Broker, level: u8, client_id: &str) -> (Wire, Wire) {
    let topic = format!("will/{client_id}");
    let mut watcher = Wire::v311(broker, &format!("{client_id}-watch"));
    watcher.subscribe_ok(1, &[(topic.as_str(), 0)]);
    let connect = Connect::for_level(level, client_id).will(&topic, b"will", 0, false);
    let (client, _) = Wire::connect_ok(broker, &connect);
    (client, watcher)
}

// MQTT-3.14.1-1: DISCONNECT flags must be 0; with flags 0010 it is not a normal
// DISCONNECT, so the will is published (MQTT-3.1.2-8).
#[test]
fn disconnect_flags_v311() {
    let broker = start_broker("");
    let (mut client, mut watcher) = client_with_will(&broker, 4, "dflags");
    assert_rejects_on(&broker, &mut client, &[0xE2, 0x00], reason::MALFORMED_PACKET);
    assert_eq!(watcher.expect_publish().payload, b"will");
}

// Section 2.1.3 (5.0): DISCONNECT with flags 0001 is malformed: DISCONNECT 0x81 from the
// server, and the will is published.
#[test]
fn disconnect_flags_v5() {
    let broker = start_broker("");
    let (mut client, mut watcher) = client_with_will(&broker, 5, "dflags-5");
    assert_rejects_on(&broker, &mut client, &[0xE1, 0x00], reason::MALFORMED_PACKET);
    assert_eq!(watcher.expect_publish().payload, b"will");
}

/// Connects a client of `level` subscribed at `qos` and returns it with the PUBLISH the
/// broker sent it, not yet acknowledged, so that acknowledgement tests use a real packet id.
fn client_with_inflight(broker: &common::Broker, level: u8, client_id: &str, qos: u8) -> (Wire, u16) {
    let mut wire = Wire::login(broker, level, client_id);
    wire.subscribe_ok(1, &[("inflight/t", qos)]);
    let mut publisher = Wire::v311(broker, &format!("{client_id}-pub"));
    publisher.publish("inflight/t", qos, false, 1, &Props::new(), b"x");
    let frame = wire.expect_frame("PUBLISH");
    let publish = frame.publish(level).unwrap_or_else(|error| panic!("bad PUBLISH: {error}"));
    assert_eq!(publish.qos, qos, "{frame:?}");
    (wire, publish.packet_id)
}

/// Connects a client of `level` that has sent a QoS 2 PUBLISH and received its PUBREC.
fn client_with_incoming_qos2(broker: &common::Broker, level: u8, client_id: &str) -> (Wire, u16) {
    let mut wire = Wire::login(broker, level, client_id);
    wire.send(&encode::publish(level, b"incoming/t", 2, false, 5, &Props::new(), b"x"));
    let pubrec = wire.expect_frame("PUBREC");
    assert_eq!(pubrec.kind(), 5, "expected PUBREC, received {pubrec:?}");
    (wire, 5)
}

// MQTT 3.1.1 gives a PUBACK for an unknown packet id no meaning, and Mosquitto 2.0.11 keeps
// the connection: a client that resumes a session may acknowledge a message twice.
#[test]
fn puback_unknown_id_ignored_v311() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "puback-unknown");
    wire.send(&encode::ack(first::PUBACK, 0x4242));
    wire.ping();
}

// MQTT 5.0 section 4.3.2: the same for 5.0; a PUBACK for an unknown packet id is no
// protocol error.
#[test]
fn puback_unknown_id_ignored_v5() {
    let broker = start_broker("");
    let mut wire = Wire::login(&broker, 5, "puback-unknown-5");
    wire.send(&encode::ack(first::PUBACK, 0x4242));
    wire.ping();
}

// MQTT-3.6.1-1: PUBREL flags must be 0010; 0000 on a real QoS 2 exchange closes the
// connection, with no PUBCOMP.
#[test]
fn pubrel_flags_v311() {
    let broker = start_broker("");
    let (mut wire, packet_id) = client_with_incoming_qos2(&broker, 4, "pubrel-flags");
    assert_rejects_on(&broker, &mut wire, &encode::ack(0x60, packet_id), reason::MALFORMED_PACKET);
}

// Section 2.1.3 (5.0): PUBREL with flags 0000 is malformed.
#[test]
fn pubrel_flags_v5() {
    let broker = start_broker("");
    let (mut wire, packet_id) = client_with_incoming_qos2(&broker, 5, "pubrel-flags-5");
    assert_rejects_on(&broker, &mut wire, &encode::ack(0x60, packet_id), reason::MALFORMED_PACKET);
}

// MQTT-2.2.2-2: PUBACK with flags 0001 for a message really in flight.
#[test]
fn puback_flags_v311() {
    let broker = start_broker("");
    let (mut wire, packet_id) = client_with_inflight(&broker, 4, "puback-flags", 1);
    assert_rejects_on(&broker, &mut wire, &encode::ack(0x41, packet_id), reason::MALFORMED_PACKET);
}

// Section 2.1.3 (5.0): PUBACK with flags 0100 for a message in flight is malformed.
#[test]
fn puback_flags_v5() {
    let broker = start_broker("");
    let (mut wire, packet_id) = client_with_inflight(&broker, 5, "puback-flags-5", 1);
    assert_rejects_on(&broker, &mut wire, &encode::ack(0x44, packet_id), reason::MALFORMED_PACKET);
}

// MQTT-2.2.2-2: PUBREC with flags 1000 for a QoS 2 message in flight.
#[test]
fn pubrec_flags_v311() {
    let broker = start_broker("");
    let (mut wire, packet_id) = client_with_inflight(&broker, 4, "pubrec-flags", 2);
    assert_rejects_on(&broker, &mut wire, &encode::ack(0x58, packet_id), reason::MALFORMED_PACKET);
}

// Section 2.1.3 (5.0): PUBCOMP with flags 0010 after a real PUBREL is malformed.
#[test]
fn pubcomp_flags_v5() {
    let broker = start_broker("");
    let (mut wire, packet_id) = client_with_inflight(&broker, 5, "pubcomp-flags-5", 2);
    wire.send(&encode::ack(first::PUBREC, packet_id));
    wire.expect(&encode::ack(first::PUBREL, packet_id));
    assert_rejects_on(&broker, &mut wire, &encode::ack(0x72, packet_id), reason::MALFORMED_PACKET);
}

// MQTT 3.1.1 section 3.12: PINGREQ has no variable header or payload; a Remaining Length
// of 1 is malformed.
#[test]
fn pingreq_with_body_v311() {
    assert_rejected(4, &[first::PINGREQ, 0x01, 0x00], reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 3.12: a PINGREQ with a body is a Malformed Packet.
#[test]
fn pingreq_with_body_v5() {
    assert_rejected(5, &[first::PINGREQ, 0x01, 0x00], reason::MALFORMED_PACKET);
}

// MQTT 3.1.1 section 3.4: PUBACK has a Remaining Length of exactly 2; a third byte after
// a real packet id is malformed.
#[test]
fn puback_too_long_v311() {
    let broker = start_broker("");
    let (mut wire, packet_id) = client_with_inflight(&broker, 4, "puback-long", 1);
    let [high, low] = packet_id.to_be_bytes();
    assert_rejects_on(&broker, &mut wire, &[first::PUBACK, 0x03, high, low, 0x00], reason::MALFORMED_PACKET);
}

// MQTT 3.1.1 section 3.4: a PUBACK of 1 byte cannot hold its packet id.
#[test]
fn puback_truncated_v311() {
    assert_rejected(4, &[first::PUBACK, 0x01, 0x00], reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 3.4: a PUBACK of 1 byte cannot hold its packet id: Malformed Packet.
#[test]
fn puback_truncated_v5() {
    assert_rejected(5, &[first::PUBACK, 0x01, 0x00], reason::MALFORMED_PACKET);
}

// MQTT 3.1.1 section 3.14: DISCONNECT has no body; one with a body is malformed.
#[test]
fn disconnect_with_body_v311() {
    assert_rejected(4, &[first::DISCONNECT, 0x01, 0x00], reason::MALFORMED_PACKET);
}

// A topic length that runs past the Remaining Length is malformed.
#[test]
fn publish_topic_length_past_end_v311() {
    assert_rejected(4, &[first::PUBLISH, 0x04, 0x00, 0x10, b'a', b'b'], reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 4.13: a topic length past the end of the packet is a Malformed Packet.
#[test]
fn publish_topic_length_past_end_v5() {
    assert_rejected(5, &[first::PUBLISH, 0x04, 0x00, 0x10, b'a', b'b'], reason::MALFORMED_PACKET);
}

// A QoS 1 PUBLISH too short to hold its packet id is malformed.
#[test]
fn publish_missing_packet_id_v311() {
    assert_rejected(4, &[first::PUBLISH | 0x02, 0x04, 0x00, 0x02, b'a', b'b'], reason::MALFORMED_PACKET);
}

// A SUBSCRIBE entry without its options byte is malformed.
#[test]
fn subscribe_missing_options_v311() {
    let body = Body::new().u16(1).str("a/b");
    assert_rejected(4, &packet(first::SUBSCRIBE, &body.bytes), reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 3.8.3: a SUBSCRIBE entry without its options byte is a Malformed Packet.
#[test]
fn subscribe_missing_options_v5() {
    let body = Body::new().u16(1).props(&Props::new()).str("a/b");
    assert_rejected(5, &packet(first::SUBSCRIBE, &body.bytes), reason::MALFORMED_PACKET);
}

// A SUBSCRIBE whose filter length runs past the packet is malformed.
#[test]
fn subscribe_filter_length_past_end_v311() {
    assert_rejected(4, &[first::SUBSCRIBE, 0x06, 0x00, 0x01, 0x00, 0x09, b'a', b'b'], reason::MALFORMED_PACKET);
}

// An UNSUBSCRIBE with a dangling single byte after its filter is malformed.
#[test]
fn unsubscribe_trailing_byte_v311() {
    let body = Body::new().u16(1).str("a").u8(0x00);
    assert_rejected(4, &packet(first::UNSUBSCRIBE, &body.bytes), reason::MALFORMED_PACKET);
}

// A CONNECT whose Remaining Length is shorter than its fields closes without CONNACK.
#[test]
fn connect_truncated_fields() {
    let broker = start_broker("");
    let full = Connect::v311("truncated").encode();
    let mut bytes = full[..full.len() - 4].to_vec();
    bytes[1] = (bytes.len() - 2) as u8;
    let from = broker.log_position();
    let mut wire = Wire::open(&broker);
    wire.send(&bytes);
    wire.expect_closed();
    assert_warned(&broker, from, &wire.local_addr(), "");
    assert_broker_healthy(&broker);
}

// Several forbidden packets in one write: the first one ends the connection and the rest
// is not acted on (no SUBACK, no routing).
#[test]
fn packets_after_forbidden_one_ignored() {
    let broker = start_broker("");
    let mut watcher = Wire::v311(&broker, "after-watch");
    watcher.subscribe_ok(1, &[("after/#", 0)]);
    let mut wire = Wire::v311(&broker, "after-forbidden");
    let mut bytes = encode::publish(4, b"after/+", 0, false, 0, &Props::new(), b"forbidden");
    bytes.extend(encode::subscribe(4, 2, &Props::new(), &[("after/x", 0)]));
    bytes.extend(encode::publish(4, b"after/x", 0, false, 0, &Props::new(), b"must not pass"));
    let _ = wire.try_send(&bytes);
    wire.expect_closed();
    let leaked = watcher.drain_publishes(Duration::from_millis(500));
    assert!(leaked.is_empty(), "packets after a forbidden one were acted on: {leaked:?}");
}

/// Valid packets of each type, the seeds the mutation test corrupts.
fn seed_packets(level: u8) -> Vec<Vec<u8>> {
    let props = if level == 5 {
        Props::new()
            .byte(conformance_support::prop::PAYLOAD_FORMAT_INDICATOR, 1)
            .str(conformance_support::prop::CONTENT_TYPE, "text/plain")
            .user("k", "v")
            .two(conformance_support::prop::TOPIC_ALIAS, 1)
    } else {
        Props::new()
    };
    vec![
        encode::publish(level, b"fuzz/a/b", 1, false, 7, &props, b"payload"),
        encode::publish(level, b"fuzz/q2", 2, true, 8, &props, b"payload"),
        encode::subscribe(level, 9, &Props::new(), &[("fuzz/+/x", 1), ("fuzz/#", 2)]),
        encode::unsubscribe(level, 10, &["fuzz/#", "a"]),
        encode::ack(first::PUBREL, 8),
        encode::ack(first::PUBACK, 1),
        vec![first::PINGREQ, 0x00],
        vec![first::DISCONNECT, 0x00],
    ]
}

/// Returns a corrupted copy of `seed`: bytes flipped, replaced, cut or repeated.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 => {
                let index = rng.below(bytes.len());
                bytes[index] ^= 1 << rng.below(8);
            }
            1 => {
                let index = rng.below(bytes.len());
                bytes[index] = [0x00, 0xFF, 0x7F, 0x80, b'#', b'+'][rng.below(6)];
            }
            2 => {
                let cut = 1 + rng.below(bytes.len());
                bytes.truncate(cut);
            }
            3 => {
                let index = rng.below(bytes.len());
                let byte = bytes[index];
                bytes.insert(index, byte);
            }
            _ => bytes.extend((0..rng.below(8)).map(|_| rng.next_u64() as u8)),
        }
        if bytes.is_empty() {
            bytes.push(0);
        }
    }
    bytes
}

/// Sends `bytes` on a fresh connection of `level` (after a valid CONNECT), then closes the
/// sending side, and waits for the broker to close. Returns the time it took.
fn send_and_wait_for_close(broker: &common::Broker, level: u8, client_id: &str, bytes: &[u8]) -> Duration {
    let mut wire = Wire::login(broker, level, client_id);
    let started = Instant::now();
    let _ = wire.try_send(bytes);
    wire.shutdown_write();
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match wire.read(remaining) {
            Ok(frame) => {
                if level == 5 && frame.bytes[0] == first::DISCONNECT {
                    frame.reply().unwrap_or_else(|error| panic!("the broker sent a malformed DISCONNECT {frame:?}: {error}"));
                }
            }
            Err(ReadError::Closed) => return started.elapsed(),
            Err(ReadError::Timeout) => panic!("connection still open {REPLY_TIMEOUT:?} after input [{}] and end of file", encode::hex(bytes)),
            Err(ReadError::Io(error)) => panic!("read failed: {error}"),
        }
    }
}

// Corrupted variants of valid packets (flipped bits, cut fields, doubled bytes) never crash
// the broker nor make it log an ERROR, and each connection ends. Seeded, so a failure
// names the reproducible input.
#[test]
fn mutated_packets_never_hurt() {
    let broker = start_broker("");
    let mut rng = Rng::new(0x5EED_0F_C0FFEE);
    for round in 0..240 {
        let level = if round % 2 == 0 { 4 } else { 5 };
        let seeds = seed_packets(level);
        let seed = &seeds[rng.below(seeds.len())];
        let bytes = mutate(&mut rng, seed);
        send_and_wait_for_close(&broker, level, &format!("mutant-{round}"), &bytes);
    }
    assert_broker_healthy(&broker);
}

// Random bytes after a valid CONNECT never crash the broker nor make it log an ERROR.
#[test]
fn random_bytes_never_hurt() {
    let broker = start_broker("");
    let mut rng = Rng::new(0xBAD_C0DE);
    for round in 0..160 {
        let level = if round % 2 == 0 { 4 } else { 5 };
        let length = 1 + rng.below(64);
        let bytes: Vec<u8> = (0..length).map(|_| rng.next_u64() as u8).collect();
        send_and_wait_for_close(&broker, level, &format!("random-{round}"), &bytes);
    }
    assert_broker_healthy(&broker);
}

// Corrupted CONNECT packets as the first packet never crash the broker. Each connection
// ends once the client closes its sending side, after at most a CONNACK.
#[test]
fn mutated_connect_never_hurts() {
    let broker = start_broker("[limits]\nconnect_timeout_secs = 2\n");
    let mut rng = Rng::new(0xC0_77EC7);
    let seeds = [
        Connect::v311("seed-311").will("fuzz/will", b"w", 1, true).username("u").password(b"p").encode(),
        Connect::v5("seed-5")
            .props(Props::new().four(conformance_support::prop::SESSION_EXPIRY_INTERVAL, 5).user("a", "b"))
            .will("fuzz/will", b"w", 1, false)
            .will_props(Props::new().four(conformance_support::prop::WILL_DELAY_INTERVAL, 1))
            .encode(),
    ];
    for round in 0..160 {
        let bytes = mutate(&mut rng, &seeds[round % 2]);
        let mut wire = Wire::open(&broker);
        let _ = wire.try_send(&bytes);
        wire.shutdown_write();
        if let Err(frames) = wire.frames_until_close() {
            panic!("connection still open after a mutated CONNECT [{}] and end of file; received {frames:?}", encode::hex(&bytes));
        }
    }
    assert_broker_healthy(&broker);
}
