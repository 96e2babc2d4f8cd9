//! Sessions: messages queued for offline persistent sessions, clean sessions, redelivery of
//! unacknowledged messages on reconnect, and takeover of a client id by a new connection.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::mosquitto::{self, Subscriber};
use common::raw::{encode_ack, ConnectOptions, Packet, RawClient, ReadError, DISCONNECT, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, REPLY_TIMEOUT};
use common::Broker;

/// MQTT 5.0 reason code 0x8E: Session taken over.
const SESSION_TAKEN_OVER: u8 = 0x8E;

/// Publishes QoS 1 and QoS 2 messages while the subscriber is offline.
fn publish_while_offline(broker: &Broker, topic: &str) -> Vec<(String, u8)> {
    let mut publisher = RawClient::login_admin(broker.addr, 4, "offline-publisher");
    let mut sent = Vec::new();
    for index in 0..3 {
        for qos in [1u8, 2] {
            let payload = format!("queued-q{qos}-{index}");
            publisher.publish(topic, qos, false, payload.as_bytes());
            sent.push((payload, qos));
        }
    }
    publisher.disconnect();
    sent
}

/// Asserts that `received` contains the messages of `sent` with the same QoS, in publish order
/// within each QoS. MQTT 3.1.1 section 4.6 only orders messages of the same topic and QoS,
/// and Mosquitto 2.0 delivers a queue's QoS 1 messages before its QoS 2 messages.
fn assert_same_per_qos(received: &[(String, u8)], sent: &[(String, u8)], context: &str) {
    for qos in [0u8, 1, 2] {
        let of_qos = |messages: &[(String, u8)]| -> Vec<String> {
            messages.iter().filter(|(_, q)| *q == qos).map(|(payload, _)| payload.clone()).collect()
        };
        assert_eq!(of_qos(received), of_qos(sent), "{context}: QoS {qos} messages; all received: {received:?}");
    }
}

#[test]
fn persistent_session_v311_mosquitto() {
    let broker = Broker::start("");
    let login = mosquitto::admin_login();
    // `-c` keeps the session (clean session 0), and `-E` exits once the SUBACK arrives.
    let mut args = vec!["-V", "mqttv311", "-c", "-i", "keeper-311", "-q", "2", "-t", "session/311", "-E"];
    args.extend(login);
    let first = Subscriber::start(&broker, &args);
    let (code, _) = first.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "mosquitto_sub -E exit code");

    let sent = publish_while_offline(&broker, "session/311");

    let mut args = vec!["-V", "mqttv311", "-c", "-i", "keeper-311", "-q", "2", "-t", "session/311", "-C", "6", "-W", "10"];
    args.extend(login);
    let second = Subscriber::spawn(&broker, &args);
    let (code, messages) = second.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "mosquitto_sub did not receive 6 queued messages: {messages:?}");
    let received: Vec<(String, u8)> = messages.iter().map(|message| (message.payload.clone(), message.qos)).collect();
    assert_same_per_qos(&received, &sent, "mosquitto_sub -c");
}

fn persistent_session_raw(level: u8, options: ConnectOptions) {
    let broker = Broker::start("");
    let client_id = options.client_id.clone();
    let mut subscriber = RawClient::login(broker.addr, &options);
    subscriber.subscribe_ok(&[("session/raw", 2)]);
    subscriber.disconnect();

    let sent = publish_while_offline(&broker, "session/raw");

    let (mut subscriber, connack) = RawClient::connect(broker.addr, &options);
    assert_eq!(connack.code, 0, "reconnect refused: {connack:?}");
    assert!(connack.session_present, "CONNACK of the reconnect for {client_id} has session present 0");
    let received = subscriber.expect_publishes(sent.len(), Duration::from_secs(10));
    let received: Vec<(String, u8)> = received.iter().map(|publish| (publish.payload_text(), publish.qos)).collect();
    assert_same_per_qos(&received, &sent, &format!("protocol level {level}"));
    let extra = subscriber.drain_publishes(Duration::from_millis(500));
    assert!(extra.is_empty(), "deliveries beyond the queued messages: {extra:?}");
}

#[test]
fn persistent_session_v311() {
    persistent_session_raw(4, ConnectOptions::admin(4, "keeper-raw-311").clean(false));
}

#[test]
fn persistent_session_v5_expiry() {
    persistent_session_raw(5, ConnectOptions::admin(5, "keeper-raw-5").clean(false).session_expiry(300));
}

#[test]
fn session_expiry_zero_v5_not_kept() {
    let broker = Broker::start("");
    // MQTT 5.0: without Session Expiry Interval the session ends with the connection, even
    // with Clean Start 0.
    let options = ConnectOptions::admin(5, "short-lived").clean(false);
    let mut subscriber = RawClient::login(broker.addr, &options);
    subscriber.subscribe_ok(&[("session/short", 1)]);
    subscriber.disconnect();

    publish_while_offline(&broker, "session/short");

    let (mut subscriber, connack) = RawClient::connect(broker.addr, &options);
    assert_eq!(connack.code, 0);
    assert!(!connack.session_present, "session present after a session with expiry 0 ended");
    let received = subscriber.drain_publishes(Duration::from_secs(1));
    assert!(received.is_empty(), "messages delivered to an expired session: {received:?}");
}

#[test]
fn clean_session_gets_nothing() {
    let broker = Broker::start("");
    for level in [3, 4, 5] {
        let client_id = format!("forgetful-{level}");
        let topic = format!("session/clean/{level}");
        let options = ConnectOptions::admin(level, &client_id);
        let mut subscriber = RawClient::login(broker.addr, &options);
        subscriber.subscribe_ok(&[(topic.as_str(), 1)]);
        subscriber.disconnect();

        publish_while_offline(&broker, &topic);

        let (mut subscriber, connack) = RawClient::connect(broker.addr, &options);
        assert_eq!(connack.code, 0);
        assert!(!connack.session_present, "protocol level {level}: clean session reported session present");
        let received = subscriber.drain_publishes(Duration::from_secs(1));
        assert!(received.is_empty(), "protocol level {level}: clean session received {received:?}");
    }
}

#[test]
fn offline_messages_queued_per_session() {
    let broker = Broker::start("");
    // Two persistent sessions on the same topic each get their own copy, exactly once.
    let options: Vec<ConnectOptions> =
        ["twin-a", "twin-b"].iter().map(|id| ConnectOptions::admin(4, id).clean(false)).collect();
    for option in &options {
        let mut client = RawClient::login(broker.addr, option);
        client.subscribe_ok(&[("session/twins", 2)]);
        client.disconnect();
    }

    let sent = publish_while_offline(&broker, "session/twins");

    for option in &options {
        let mut client = RawClient::login(broker.addr, option);
        let received = client.expect_publishes(sent.len(), Duration::from_secs(10));
        let received: Vec<(String, u8)> =
            received.iter().map(|publish| (publish.payload_text(), publish.qos)).collect();
        assert_same_per_qos(&received, &sent, &option.client_id);
        let extra = client.drain_publishes(Duration::from_millis(500));
        assert!(extra.is_empty(), "{}: extra deliveries {extra:?}", option.client_id);
    }
}

/// Reads packets without acknowledging any until none arrives for `quiet`.
fn read_unacknowledged(client: &mut RawClient, quiet: Duration) -> Vec<Packet> {
    let mut packets = Vec::new();
    loop {
        match client.read_packet(quiet) {
            Ok(packet) => packets.push(packet),
            Err(ReadError::Timeout) => return packets,
            Err(error) => panic!("connection failed while reading: {error:?}; received so far {packets:?}"),
        }
        assert!(packets.len() < 100, "more than 100 packets: {packets:?}");
    }
}

/// Leaves a persistent session with a QoS 1 and a QoS 2 PUBLISH unacknowledged and a third
/// message at PUBREC, drops the connection, and checks what the broker resends on reconnect.
fn redelivery_on_reconnect(options: ConnectOptions) {
    let broker = Broker::start("");
    let level = options.level;
    let mut subscriber = RawClient::login(broker.addr, &options);
    subscriber.subscribe_ok(&[("redeliver/#", 2)]);
    let mut publisher = RawClient::login_admin(broker.addr, 4, "redeliver-publisher");
    publisher.publish("redeliver/qos1", 1, false, b"one");
    publisher.publish("redeliver/qos2", 2, false, b"two");
    publisher.publish("redeliver/received", 2, false, b"three");

    let first = read_unacknowledged(&mut subscriber, Duration::from_millis(500));
    let mut packet_ids: BTreeMap<String, u16> = BTreeMap::new();
    for packet in &first {
        assert_eq!(packet.kind, PUBLISH, "expected only PUBLISH before any acknowledgement, got {first:?}");
        let publish = packet.publish(level);
        assert!(!publish.dup, "first delivery with DUP 1: {publish:?}");
        packet_ids.insert(publish.topic, publish.packet_id);
    }
    assert_eq!(packet_ids.len(), 3, "deliveries before the drop: {first:?}");
    let received_id = packet_ids["redeliver/received"];
    subscriber.send(&encode_ack(PUBREC, received_id));
    let pubrel = subscriber.read_packet(REPLY_TIMEOUT).expect("no PUBREL after PUBREC");
    assert_eq!((pubrel.kind, pubrel.packet_id()), (PUBREL, received_id), "reply to PUBREC: {pubrel:?}");
    subscriber.drop_connection();

    let (mut subscriber, connack) = RawClient::connect(broker.addr, &options);
    assert_eq!(connack.code, 0, "reconnect refused: {connack:?}");
    assert!(connack.session_present, "reconnect of {} found no session: {connack:?}", options.client_id);

    // MQTT-4.4.0-1 (the same number in 3.1.1 and 5.0): on reconnect the server resends each
    // unacknowledged PUBLISH with its original packet id and DUP 1 (MQTT-3.3.1-1). For a QoS 2
    // message whose PUBREC it received, it resends the PUBREL and never the message.
    let resent = read_unacknowledged(&mut subscriber, Duration::from_secs(1));
    let mut republished: BTreeMap<String, (u16, bool)> = BTreeMap::new();
    let mut pubrels = Vec::new();
    for packet in &resent {
        match packet.kind {
            PUBLISH => {
                let publish = packet.publish(level);
                let previous = republished.insert(publish.topic.clone(), (publish.packet_id, publish.dup));
                assert!(previous.is_none(), "resent twice: {publish:?}");
            }
            PUBREL => pubrels.push(packet.packet_id()),
            _ => panic!("unexpected packet after reconnect: {packet:?}"),
        }
    }
    let expected: BTreeMap<String, (u16, bool)> = [
        ("redeliver/qos1".to_string(), (packet_ids["redeliver/qos1"], true)),
        ("redeliver/qos2".to_string(), (packet_ids["redeliver/qos2"], true)),
    ]
    .into_iter()
    .collect();
    assert_eq!(republished, expected, "PUBLISH packets resent as (packet id, DUP); all packets: {resent:?}");
    assert_eq!(pubrels, vec![received_id], "PUBREL resent; all packets: {resent:?}");

    subscriber.send(&encode_ack(PUBACK, packet_ids["redeliver/qos1"]));
    subscriber.send(&encode_ack(PUBREC, packet_ids["redeliver/qos2"]));
    subscriber.send(&encode_ack(PUBCOMP, received_id));
    let pubrel = subscriber.read_packet(REPLY_TIMEOUT).expect("no PUBREL after PUBREC of the resent message");
    assert_eq!((pubrel.kind, pubrel.packet_id()), (PUBREL, packet_ids["redeliver/qos2"]), "{pubrel:?}");
    subscriber.send(&encode_ack(PUBCOMP, packet_ids["redeliver/qos2"]));
    assert!(subscriber.ping(), "connection unusable after the redelivery");
    subscriber.disconnect();

    // Every exchange is complete now, so a further reconnect resends nothing.
    let (mut subscriber, connack) = RawClient::connect(broker.addr, &options);
    assert!(connack.session_present);
    let again = read_unacknowledged(&mut subscriber, Duration::from_millis(500));
    assert!(again.is_empty(), "packets resent after every exchange was completed: {again:?}");
}

#[test]
fn redelivery_on_reconnect_v311() {
    redelivery_on_reconnect(ConnectOptions::admin(4, "redeliver-311").clean(false));
}

#[test]
fn redelivery_on_reconnect_v5() {
    redelivery_on_reconnect(ConnectOptions::admin(5, "redeliver-5").clean(false).session_expiry(300));
}

#[test]
fn takeover_v5_disconnect_0x8e() {
    let broker = Broker::start("");
    let mut old = RawClient::login_admin(broker.addr, 5, "thermostat");

    let _new = RawClient::login_admin(broker.addr, 5, "thermostat");

    let closed = old.wait_for_close(Duration::from_secs(5));
    let packets = closed.unwrap_or_else(|packets| panic!("old connection still open 5 s after takeover; got {packets:?}"));
    let disconnect = packets
        .iter()
        .find(|packet| packet.kind == DISCONNECT)
        .unwrap_or_else(|| panic!("old connection closed without DISCONNECT; got {packets:?}"));
    assert_eq!(disconnect.disconnect_reason(), SESSION_TAKEN_OVER, "DISCONNECT reason code");
}

#[test]
fn takeover_v311_closes_old() {
    let broker = Broker::start("");
    let mut old = RawClient::login_admin(broker.addr, 4, "thermostat");

    let mut new = RawClient::login_admin(broker.addr, 4, "thermostat");

    let closed = old.wait_for_close(Duration::from_secs(5));
    let packets = closed.unwrap_or_else(|packets| panic!("old connection still open 5 s after takeover; got {packets:?}"));
    // MQTT 3.1.1 has no DISCONNECT from the server: the broker just closes the socket.
    assert!(packets.is_empty(), "old 3.1.1 connection received {packets:?}");
    assert!(new.ping(), "new connection unusable after the takeover");
}

#[test]
fn takeover_keeps_session() {
    let broker = Broker::start("");
    let options = ConnectOptions::admin(4, "handover").clean(false);
    let mut old = RawClient::login(broker.addr, &options);
    old.subscribe_ok(&[("session/handover", 1)]);

    let (mut new, connack) = RawClient::connect(broker.addr, &options);
    assert_eq!(connack.code, 0);
    assert!(connack.session_present, "takeover of a persistent session reported session present 0");

    let mut publisher = RawClient::login_admin(broker.addr, 4, "handover-publisher");
    publisher.publish("session/handover", 1, false, b"after takeover");
    let publish = new.next_publish(Duration::from_secs(5)).expect("subscription lost in the takeover");
    assert_eq!(publish.payload, b"after takeover");
    drop(old);
}
