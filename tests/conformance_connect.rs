//! Conformance of CONNECT, CONNACK, keep alive, takeover, wills and the connection limits,
//! checked byte by byte against the real broker. Each test names the MQTT 3.1.1 (OASIS,
//! 2014) normative statement it checks; MQTT 5.0 specifics are in `conformance_v5.rs`.

mod common;
mod conformance_support;

use std::thread;
use std::time::{Duration, Instant};

use conformance_support::encode::{self, packet};
use conformance_support::{
    assert_broker_healthy, assert_connect_rejects, assert_warned, expect_disconnect, first, reason, start_broker,
    Body, Connect, Props, Wire, QUIET, REPLY_TIMEOUT,
};

/// MQTT 3.1.1 CONNACK return codes (section 3.2.2.3).
const ACCEPTED: [u8; 4] = [0x20, 0x02, 0x00, 0x00];
const ACCEPTED_SESSION_PRESENT: [u8; 4] = [0x20, 0x02, 0x01, 0x00];
const UNACCEPTABLE_PROTOCOL_VERSION: [u8; 4] = [0x20, 0x02, 0x00, 0x01];
const IDENTIFIER_REJECTED: [u8; 4] = [0x20, 0x02, 0x00, 0x02];

/// Sends `connect` as the first packet and returns the connection.
fn send_first(broker: &common::Broker, connect: &Connect) -> Wire {
    Wire::send_connect(broker, connect)
}

// MQTT-3.2.2-1, MQTT-3.2.2-3: clean session, or no stored session, gives Session Present 0.
#[test]
fn connack_bytes_clean_session() {
    let broker = start_broker("");
    let mut wire = send_first(&broker, &Connect::v311("connack-clean"));
    wire.expect(&ACCEPTED);
    wire.ping();

    let mut persistent = send_first(&broker, &Connect::v311("connack-new-persistent").clean(false));
    persistent.expect(&ACCEPTED);
    assert_broker_healthy(&broker);
}

// MQTT-3.2.2-2: clean session 0 with a stored session gives Session Present 1; a clean
// session then discards it (MQTT-3.1.2-6).
#[test]
fn connack_session_present_on_resume() {
    let broker = start_broker("");
    let connect = Connect::v311("connack-resume").clean(false);
    let mut wire = send_first(&broker, &connect);
    wire.expect(&ACCEPTED);
    wire.disconnect();

    let mut resumed = send_first(&broker, &connect);
    resumed.expect(&ACCEPTED_SESSION_PRESENT);
    resumed.disconnect();

    let mut clean = send_first(&broker, &Connect::v311("connack-resume"));
    clean.expect(&ACCEPTED);
    clean.disconnect();

    let mut after_clean = send_first(&broker, &connect);
    after_clean.expect(&ACCEPTED);
    assert_broker_healthy(&broker);
}

// MQTT-3.1.2-2: an unsupported protocol level gets return code 0x01, then the close.
#[test]
fn connect_unsupported_protocol_level() {
    let broker = start_broker("");
    let mut connect = Connect::v311("level-six");
    connect.level = 6;
    let from = broker.log_position();
    let mut wire = send_first(&broker, &connect);
    wire.expect_then_closed(&UNACCEPTABLE_PROTOCOL_VERSION);
    assert_warned(&broker, from, &wire.local_addr(), "");
    assert_broker_healthy(&broker);
}

// MQTT-3.1.2-1: a wrong protocol name ends the connection; Mosquitto closes without CONNACK.
#[test]
fn connect_wrong_protocol_name() {
    let broker = start_broker("");
    let mut connect = Connect::v311("wrong-name");
    connect.protocol_name = b"MQTX".to_vec();
    assert_connect_rejects(&broker, &connect, reason::PROTOCOL_ERROR);
}

// MQTT-3.1.2-3: the reserved bit 0 of the Connect Flags must be 0, else the close.
#[test]
fn connect_reserved_flag_set_v311() {
    let broker = start_broker("");
    assert_connect_rejects(&broker, &Connect::v311("reserved-flag").flags(0x03), reason::MALFORMED_PACKET);
}

// MQTT 5.0 section 3.1.2.3: a set reserved Connect Flag is a Malformed Packet (CONNACK 0x81).
#[test]
fn connect_reserved_flag_set_v5() {
    let broker = start_broker("");
    assert_connect_rejects(&broker, &Connect::v5("reserved-flag-5").flags(0x03), reason::MALFORMED_PACKET);
}

// MQTT-3.1.2-13: with the Will Flag 0 the Will QoS must be 0.
#[test]
fn connect_will_qos_without_will_flag() {
    let broker = start_broker("");
    assert_connect_rejects(&broker, &Connect::v311("will-qos-no-will").flags(0x0A), reason::MALFORMED_PACKET);
}

// MQTT-3.1.2-14: Will QoS 3 is forbidden.
#[test]
fn connect_will_qos_3() {
    let broker = start_broker("");
    let connect = Connect::v311("will-qos-3").will("will/q3", b"x", 0, false).flags(0x1E);
    assert_connect_rejects(&broker, &connect, reason::MALFORMED_PACKET);
}

// MQTT-3.1.2-14 in MQTT 5.0 (section 3.1.2.6): Will QoS 3 is a Malformed Packet.
#[test]
fn connect_will_qos_3_v5() {
    let broker = start_broker("");
    let connect = Connect::v5("will-qos-3-5").will("will/q3", b"x", 0, false).flags(0x1E);
    assert_connect_rejects(&broker, &connect, reason::MALFORMED_PACKET);
}

// MQTT-3.1.2-15: with the Will Flag 0 the Will Retain flag must be 0.
#[test]
fn connect_will_retain_without_will_flag() {
    let broker = start_broker("");
    assert_connect_rejects(&broker, &Connect::v311("will-retain-no-will").flags(0x22), reason::MALFORMED_PACKET);
}

// MQTT-3.1.2-22: a password without a username is a protocol violation in 3.1.1, even on a
// listener that accepts anonymous clients.
#[test]
fn connect_password_without_username_v311() {
    let broker = start_broker("");
    let connect = Connect::v311("password-only").password(b"secret");
    assert_connect_rejects(&broker, &connect, reason::PROTOCOL_ERROR);
}

// MQTT 5.0 section 3.1.2.9 allows a password without a username: not a protocol error.
#[test]
fn connect_password_without_username_v5() {
    let broker = start_broker("");
    let (mut wire, _) = Wire::connect_ok(&broker, &Connect::v5("password-only-5").password(b"secret"));
    wire.ping();
    assert_broker_healthy(&broker);
}

// MQTT-3.1.3-8: an empty client id with clean session 0 gets 0x02, then the close.
#[test]
fn connect_empty_client_id_persistent() {
    let broker = start_broker("");
    let from = broker.log_position();
    let mut wire = send_first(&broker, &Connect::v311("").clean(false));
    wire.expect_then_closed(&IDENTIFIER_REJECTED);
    assert_warned(&broker, from, &wire.local_addr(), "");
    assert_broker_healthy(&broker);
}

// MQTT-3.1.3-6, MQTT-3.1.3-7: an empty client id with clean session 1 is accepted.
#[test]
fn connect_empty_client_id_clean() {
    let broker = start_broker("");
    let mut wire = send_first(&broker, &Connect::v311(""));
    wire.expect(&ACCEPTED);
    wire.ping();
    assert_broker_healthy(&broker);
}

fn connect_with_client_id_bytes(level: u8, client_id: &[u8]) -> Connect {
    let mut connect = Connect::for_level(level, "placeholder");
    connect.client_id = client_id.to_vec();
    connect
}

/// Checks the refusal of a 3.1.1 CONNECT whose client id is not a valid string. The
/// connection must close (MQTT-1.5.3-1, MQTT-1.5.3-2); return code 0x02 before the close
/// is also accepted, because MQTT-3.1.3-9 requires it for a rejected client id.
fn assert_client_id_rejected_v311(client_id: &[u8]) {
    let broker = start_broker("");
    let from = broker.log_position();
    let mut wire = Wire::open(&broker);
    wire.send(&connect_with_client_id_bytes(4, client_id).encode());
    match wire.frames_until_close() {
        Ok(frames) => {
            let received: Vec<&[u8]> = frames.iter().map(|frame| frame.bytes.as_slice()).collect();
            assert!(
                received.is_empty() || received == [&IDENTIFIER_REJECTED[..]],
                "expected the close, or return code 0x02 then the close; received {frames:?}"
            );
        }
        Err(frames) => panic!("connection still open after an invalid client id; received {frames:?}"),
    }
    assert_warned(&broker, from, &wire.local_addr(), "");
    assert_broker_healthy(&broker);
}

// MQTT-1.5.3-1: ill-formed UTF-8 (here a lone continuation byte) in the client id.
#[test]
fn connect_client_id_invalid_utf8_v311() {
    assert_client_id_rejected_v311(b"bad\x80id");
}

// MQTT-1.5.4-1: ill-formed UTF-8 in a 5.0 string is a Malformed Packet (CONNACK 0x81).
#[test]
fn connect_client_id_invalid_utf8_v5() {
    let broker = start_broker("");
    assert_connect_rejects(&broker, &connect_with_client_id_bytes(5, b"bad\x80id"), reason::MALFORMED_PACKET);
}

// MQTT-1.5.3-1: UTF-16 surrogates (U+D800 encoded as ED A0 80) are ill-formed UTF-8.
#[test]
fn connect_client_id_surrogate_v311() {
    assert_client_id_rejected_v311(b"sur\xED\xA0\x80");
}

// MQTT-1.5.3-2: U+0000 in a string closes the connection.
#[test]
fn connect_client_id_null_v311() {
    assert_client_id_rejected_v311(b"nul\0id");
}

// MQTT-1.5.4-2: U+0000 in a 5.0 string is a Malformed Packet.
#[test]
fn connect_client_id_null_v5() {
    let broker = start_broker("");
    assert_connect_rejects(&broker, &connect_with_client_id_bytes(5, b"nul\0id"), reason::MALFORMED_PACKET);
}

// MQTT-1.5.3-1: ill-formed UTF-8 (an overlong encoding of '/') in the username.
#[test]
fn connect_username_invalid_utf8_v311() {
    let broker = start_broker("");
    let mut connect = Connect::v311("bad-username").password(b"pw");
    connect.username = Some(b"user\xC0\xAF".to_vec());
    assert_connect_rejects(&broker, &connect, reason::MALFORMED_PACKET);
}

// MQTT-1.5.4-1: ill-formed UTF-8 in the username of a 5.0 CONNECT.
#[test]
fn connect_username_invalid_utf8_v5() {
    let broker = start_broker("");
    let mut connect = Connect::v5("bad-username-5").password(b"pw");
    connect.username = Some(b"user\xFF".to_vec());
    assert_connect_rejects(&broker, &connect, reason::MALFORMED_PACKET);
}

// MQTT-1.5.3-1: ill-formed UTF-8 in the will topic.
#[test]
fn connect_will_topic_invalid_utf8_v311() {
    let broker = start_broker("");
    let mut connect = Connect::v311("bad-will-utf8").will("placeholder", b"x", 0, false);
    connect.will.as_mut().unwrap().topic = b"will/\xC3\x28".to_vec();
    assert_connect_rejects(&broker, &connect, reason::MALFORMED_PACKET);
}

// MQTT-3.3.2-2 and section 3.1.3.3: the will topic is a topic name, so a wildcard in it
// ends the connection.
#[test]
fn connect_will_topic_wildcard_v311() {
    let broker = start_broker("");
    assert_connect_rejects(&broker, &Connect::v311("will-plus").will("will/+/x", b"x", 0, false), reason::TOPIC_NAME_INVALID);
    assert_connect_rejects(&broker, &Connect::v311("will-hash").will("will/#", b"x", 0, false), reason::TOPIC_NAME_INVALID);
}

// MQTT 5.0 section 3.2.2.2: a will topic the server does not accept gets CONNACK 0x90
// (Topic Name invalid), the code the broker also uses for a wildcard in a PUBLISH topic.
#[test]
fn connect_will_topic_wildcard_v5() {
    let broker = start_broker("");
    assert_connect_rejects(&broker, &Connect::v5("will-plus-5").will("will/+", b"x", 0, false), reason::TOPIC_NAME_INVALID);
    assert_connect_rejects(&broker, &Connect::v5("will-hash-5").will("#", b"x", 0, false), reason::TOPIC_NAME_INVALID);
}

// MQTT-4.7.3-1: a topic name has at least one character, the will topic included.
#[test]
fn connect_will_topic_empty_v311() {
    let broker = start_broker("");
    assert_connect_rejects(&broker, &Connect::v311("will-empty").will("", b"x", 0, false), reason::TOPIC_NAME_INVALID);
}

// MQTT-4.7.3-1 for 5.0: an empty will topic is refused with CONNACK 0x90.
#[test]
fn connect_will_topic_empty_v5() {
    let broker = start_broker("");
    assert_connect_rejects(&broker, &Connect::v5("will-empty-5").will("", b"x", 0, false), reason::TOPIC_NAME_INVALID);
}

// MQTT-3.1.0-2: a second CONNECT is a protocol violation; the connection closes.
#[test]
fn second_connect_v311() {
    let broker = start_broker("");
    conformance_support::assert_rejects(&broker, 4, "second-connect", &Connect::v311("second-connect").encode(), reason::PROTOCOL_ERROR);
}

// MQTT-3.1.0-2 for 5.0 (section 3.1): a second CONNECT is a Protocol Error, DISCONNECT 0x82.
#[test]
fn second_connect_v5() {
    let broker = start_broker("");
    conformance_support::assert_rejects(&broker, 5, "second-connect-5", &Connect::v5("second-connect-5").encode(), reason::PROTOCOL_ERROR);
}

/// Sends `bytes` as the first packet and asserts the close without reply and the WARN line.
fn assert_first_packet_rejected(broker: &common::Broker, bytes: &[u8]) {
    let from = broker.log_position();
    let mut wire = Wire::open(broker);
    let _ = wire.try_send(bytes);
    wire.expect_closed();
    assert_warned(broker, from, &wire.local_addr(), "");
    assert_broker_healthy(broker);
}

// MQTT-3.1.0-1: the first packet must be CONNECT; PINGREQ gets no PINGRESP but the close.
#[test]
fn first_packet_pingreq() {
    let broker = start_broker("");
    assert_first_packet_rejected(&broker, &[first::PINGREQ, 0]);
}

// MQTT-3.1.0-1: a PUBLISH before CONNECT is not routed and closes the connection.
#[test]
fn first_packet_publish() {
    let broker = start_broker("");
    let mut subscriber = Wire::v311(&broker, "first-publish-watch");
    subscriber.subscribe_ok(1, &[("first/#", 0)]);

    let props = Props::new();
    assert_first_packet_rejected(&broker, &encode::publish(4, b"first/publish", 0, false, 0, &props, b"sneaky"));
    subscriber.expect_silence(QUIET);
}

// MQTT-3.1.0-1: a SUBSCRIBE before CONNECT gets no SUBACK.
#[test]
fn first_packet_subscribe() {
    let broker = start_broker("");
    assert_first_packet_rejected(&broker, &encode::subscribe(4, 1, &Props::new(), &[("a", 0)]));
}

// MQTT-3.1.0-1 and section 2.2.2: a CONNECT with reserved header flags (0x11) is refused.
#[test]
fn first_packet_connect_flags_wrong() {
    let broker = start_broker("");
    let mut bytes = Connect::v311("connect-flags").encode();
    bytes[0] = 0x11;
    assert_first_packet_rejected(&broker, &bytes);
}

// MQTT-3.1.0-1: a first packet that announces 256 MiB and is not CONNECT closes at once,
// before any of its body arrives: nothing is allocated for the announced length.
#[test]
fn first_packet_huge_announced_publish() {
    let broker = start_broker("");
    let started = Instant::now();
    assert_first_packet_rejected(&broker, &[0x30, 0xFF, 0xFF, 0xFF, 0x7F]);
    assert!(started.elapsed() < REPLY_TIMEOUT, "closing took {:?}", started.elapsed());
}

// A connection that sends no CONNECT within limits.connect_timeout_secs is closed.
#[test]
fn connect_timeout_closes() {
    let broker = start_broker("[limits]\nconnect_timeout_secs = 1\n");
    let from = broker.log_position();
    let started = Instant::now();
    let mut wire = Wire::open(&broker);
    wire.expect_closed();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "closed after {elapsed:?}, before the 1 s timeout");
    assert_warned(&broker, from, &wire.local_addr(), "");
    assert_broker_healthy(&broker);
}

// MQTT-3.1.2-24: with no packet for 1.5 times the keep alive, the server closes the
// connection; a 3.1.1 client gets no packet before the close.
#[test]
fn keep_alive_timeout_v311() {
    let broker = start_broker("");
    let mut wire = send_first(&broker, &Connect::v311("keepalive-1").keep_alive(1));
    wire.expect(&ACCEPTED);
    let started = Instant::now();
    wire.expect_closed();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1400), "closed after {elapsed:?}, before 1.5 x keep alive");
    assert!(elapsed <= Duration::from_millis(3500), "closed after {elapsed:?}, long after 1.5 x keep alive");
    assert_broker_healthy(&broker);
}

// MQTT-3.1.2-23: any packet, PINGREQ included, resets the keep alive timer.
#[test]
fn keep_alive_kept_by_pingreq() {
    let broker = start_broker("");
    let mut wire = send_first(&broker, &Connect::v311("keepalive-ping").keep_alive(1));
    wire.expect(&ACCEPTED);
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(700));
        wire.ping();
    }
    assert_broker_healthy(&broker);
}

// MQTT 3.1.1 section 3.1.2.10: keep alive 0 turns the mechanism off.
#[test]
fn keep_alive_zero_never_times_out() {
    let broker = start_broker("");
    let mut wire = send_first(&broker, &Connect::v311("keepalive-0").keep_alive(0));
    wire.expect(&ACCEPTED);
    wire.expect_silence(Duration::from_millis(2500));
    wire.ping();
}

// MQTT-3.12.4-1: PINGREQ gets PINGRESP, exactly D0 00.
#[test]
fn pingreq_gets_pingresp() {
    let broker = start_broker("");
    let mut wire = Wire::v311(&broker, "pinger");
    wire.send(&[first::PINGREQ, 0]);
    wire.expect(&[first::PINGRESP, 0]);
    let mut wire5 = Wire::login(&broker, 5, "pinger-5");
    wire5.send(&[first::PINGREQ, 0]);
    wire5.expect(&[first::PINGRESP, 0]);
}

// MQTT-3.1.4-2: a second connection with the same client id closes the first; a 3.1.1
// client gets no DISCONNECT.
#[test]
fn takeover_closes_old_connection_v311() {
    let broker = start_broker("");
    let mut old = Wire::v311(&broker, "takeover");
    let mut new = send_first(&broker, &Connect::v311("takeover"));
    new.expect(&ACCEPTED);
    old.expect_closed();
    new.ping();
    assert_broker_healthy(&broker);
}

/// Starts a subscriber on `topic` and a client whose will goes there.
fn will_pair(broker: &common::Broker, name: &str, level: u8) -> (Wire, Wire) {
    let topic = format!("will/{name}");
    let mut watcher = Wire::login(broker, 4, &format!("{name}-watcher"));
    watcher.subscribe_ok(1, &[(topic.as_str(), 1)]);
    let connect = Connect::for_level(level, name).will(&topic, b"gone", 1, false);
    let (client, _) = Wire::connect_ok(broker, &connect);
    (watcher, client)
}

// MQTT-3.1.2-8: the will is published when the connection ends without DISCONNECT.
#[test]
fn will_published_on_abrupt_close() {
    let broker = start_broker("");
    let (mut watcher, client) = will_pair(&broker, "will-abrupt", 4);
    client.drop_connection();
    let will = watcher.expect_publish();
    assert_eq!(will.topic, "will/will-abrupt");
    assert_eq!(will.payload, b"gone");
    assert_eq!(will.qos, 1, "will QoS 1 on a QoS 1 subscription");
}

// MQTT-3.1.2-8: a connection closed for a protocol error also publishes the will.
#[test]
fn will_published_after_protocol_error() {
    let broker = start_broker("");
    let (mut watcher, mut client) = will_pair(&broker, "will-error", 4);
    let _ = client.try_send(&[0x30 | 0x06, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]);
    client.expect_closed();
    let will = watcher.expect_publish();
    assert_eq!(will.payload, b"gone");
}

// MQTT-3.1.2-10, MQTT-3.14.4-3: DISCONNECT discards the will.
#[test]
fn will_discarded_on_disconnect() {
    let broker = start_broker("");
    let (mut watcher, client) = will_pair(&broker, "will-disconnect", 4);
    client.disconnect();
    watcher.expect_silence(Duration::from_millis(1500));
}

// MQTT-3.1.2-8 with the will retained (MQTT-3.1.2-17): a later subscriber receives it.
#[test]
fn will_retained_when_flagged() {
    let broker = start_broker("");
    let connect = Connect::v311("will-retained").will("will/retained", b"last", 0, true);
    let (client, _) = Wire::connect_ok(&broker, &connect);
    client.drop_connection();
    thread::sleep(Duration::from_millis(500));
    let mut late = Wire::v311(&broker, "will-retained-late");
    late.subscribe_ok(1, &[("will/retained", 0)]);
    let will = late.expect_publish();
    assert_eq!(will.payload, b"last");
    assert!(will.retain, "MQTT-3.3.1-8: a retained message sent on subscription has RETAIN 1");
}

// limits.max_client_id_len: a longer client id gets return code 0x02 (Identifier
// rejected), then the close; an id of exactly the limit is accepted.
#[test]
fn client_id_over_max_length_v311() {
    let broker = start_broker("[limits]\nmax_client_id_len = 8\n");
    let mut at_limit = send_first(&broker, &Connect::v311("abcdefgh"));
    at_limit.expect(&ACCEPTED);

    let from = broker.log_position();
    let mut wire = send_first(&broker, &Connect::v311("abcdefghi"));
    wire.expect_then_closed(&IDENTIFIER_REJECTED);
    assert_warned(&broker, from, &wire.local_addr(), "abcdefghi");
    assert_broker_healthy(&broker);
}

// MQTT 5.0 section 3.2.2.2: a client id over limits.max_client_id_len gets CONNACK 0x85.
#[test]
fn client_id_over_max_length_v5() {
    let broker = start_broker("[limits]\nmax_client_id_len = 8\n");
    Wire::connect_ok(&broker, &Connect::v5("abcdefgh"));
    assert_connect_rejects(&broker, &Connect::v5("abcdefghi"), reason::CLIENT_IDENTIFIER_NOT_VALID);
}

// limits.max_keepalive_secs: 3.1.1 cannot tell a client the server's limit, so a longer
// keep alive is accepted, as Mosquitto 2.0.11 does with max_keepalive.
#[test]
fn keep_alive_over_max_v311() {
    let broker = start_broker("[limits]\nmax_keepalive_secs = 30\n");
    let mut wire = send_first(&broker, &Connect::v311("keepalive-60").keep_alive(60));
    wire.expect(&ACCEPTED);
    wire.ping();
    assert_broker_healthy(&broker);
}

// listeners.NAME.max_connections: past the limit a new connection is closed without
// CONNACK (as Mosquitto's max_connections), and a freed slot is usable again.
#[test]
fn max_connections_per_listener() {
    let broker = start_broker("[listeners.lan]\nmax_connections = 2\n");
    let first_client = Wire::v311(&broker, "slot-1");
    let mut second_client = Wire::v311(&broker, "slot-2");

    let from = broker.log_position();
    let mut third = Wire::open(&broker);
    let _ = third.try_send(&Connect::v311("slot-3").encode());
    third.expect_closed();
    assert_warned(&broker, from, &third.local_addr(), "");

    first_client.disconnect();
    thread::sleep(Duration::from_millis(300));
    let mut fourth = send_first(&broker, &Connect::v311("slot-4"));
    fourth.expect(&ACCEPTED);
    second_client.ping();
}

// limits.max_packet_size: a CONNECT larger than the limit closes the connection before
// CONNACK (the protocol level is not known yet, so no 5.0 reason code can be chosen).
#[test]
fn connect_over_max_packet_size() {
    let broker = start_broker("[limits]\nmax_packet_size = 256\n");
    let long_id = "x".repeat(300);
    let from = broker.log_position();
    let mut wire = send_first(&broker, &Connect::v311(&long_id));
    wire.expect_closed();
    assert_warned(&broker, from, &wire.local_addr(), "");
    assert_broker_healthy(&broker);
}

// A 5.0 client that is taken over receives DISCONNECT 0x8E (MQTT-3.1.4-3) and the new
// connection is accepted; kept here beside the 3.1.1 takeover for comparison.
#[test]
fn takeover_sends_0x8e_v5() {
    let broker = start_broker("");
    let (mut old, _) = Wire::v5(&broker, "takeover-5", Props::new());
    let (mut new, _) = Wire::v5(&broker, "takeover-5", Props::new());
    expect_disconnect(&mut old, reason::SESSION_TAKEN_OVER);
    old.expect_closed();
    new.ping();
    assert_broker_healthy(&broker);
}

// MQTT-3.1.4-5 (3.1.1): after a refused CONNECT the server processes nothing more; a
// PUBLISH sent right behind a refused CONNECT is not routed.
#[test]
fn refused_connect_ignores_following_packets() {
    let broker = start_broker("");
    let mut watcher = Wire::v311(&broker, "refused-watch");
    watcher.subscribe_ok(1, &[("refused/#", 0)]);

    let mut bytes = Connect::v311("").clean(false).encode();
    bytes.extend(encode::publish(4, b"refused/x", 0, false, 0, &Props::new(), b"must not pass"));
    let mut wire = Wire::open(&broker);
    wire.send(&bytes);
    wire.expect_then_closed(&IDENTIFIER_REJECTED);
    watcher.expect_silence(QUIET);
}

// MQTT 3.1 (protocol name MQIsdp, level 3) is accepted with the 3.1.1 CONNACK layout.
#[test]
fn connect_mqtt31_accepted() {
    let broker = start_broker("");
    let mut connect = Connect::v311("mqtt31");
    connect.protocol_name = b"MQIsdp".to_vec();
    connect.level = 3;
    let mut wire = send_first(&broker, &connect);
    wire.expect(&ACCEPTED);
    wire.ping();
}

// Section 4.2: TCP is a byte stream, so a CONNECT written one byte at a time is reassembled.
#[test]
fn connect_split_byte_by_byte() {
    let broker = start_broker("");
    let bytes = Connect::v311("split").encode();
    let mut wire = Wire::open(&broker);
    for byte in &bytes {
        wire.send(&[*byte]);
        thread::sleep(Duration::from_millis(5));
    }
    wire.expect(&ACCEPTED);
    let body = Body::new().u16(1).str("split/x").u8(0);
    wire.send(&packet(first::SUBSCRIBE, &body.bytes));
    wire.expect(&[0x90, 0x03, 0x00, 0x01, 0x00]);
}
