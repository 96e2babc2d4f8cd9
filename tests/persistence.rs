//! Persistence: retained messages, persistent sessions and their queued messages kept in
//! `<data_dir>/store.redb` across a graceful stop (SIGTERM) and across SIGKILL, the
//! `store check` and `store repair` commands, relaxed mode, and persistence turned off.
//!
//! The kill test draws its kill points from a seed that it prints; set
//! `LPIOTIA_TEST_SEED=N` to run the same kill points again.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::mosquitto;
use common::process::{self, Output};
use common::raw::{
    encode_ack, encode_publish, encode_subscribe, ConnectOptions, Packet, PropertyValue, RawClient, ReadError, PUBACK,
    PUBCOMP, PUBLISH, PUBREC, PUBREL, REPLY_TIMEOUT, SUBACK,
};
use common::{broker_command, Broker, TestDir, ADMIN_PASSWORD, ADMIN_USER, STOP_TIMEOUT};

/// File name of the store inside the data directory.
const STORE_FILE: &str = "store.redb";

/// Prefix of the name under which `store repair` keeps the damaged file.
const DAMAGED_PREFIX: &str = "store.redb.damaged-";

/// Configuration that states the default mode, so that a change of defaults cannot turn the
/// durability tests into tests of another mode.
const DURABLE: &str = "[persistence]\nenabled = true\nmode = \"durable\"\n";

/// Log message of the broker after it has read the store at start.
const RESTORED_LOG: &str = "state restored from the store";

/// MQTT 5.0 property identifiers that these tests send or decode.
mod property {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const USER_PROPERTY: u8 = 0x26;
}

// ---------------------------------------------------------------------------------------
// Restarting a broker on the same data directory
// ---------------------------------------------------------------------------------------

/// How a broker is stopped before a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGTERM, with a clean exit expected.
    Graceful,
    /// SIGKILL: no shutdown code runs.
    Kill,
}

/// Stops `broker` with the signal that `stop` selects and waits for the process to end.
fn halt(broker: &mut Broker, stop: Stop) {
    match stop {
        Stop::Graceful => broker.stop(),
        Stop::Kill => {
            broker.signal(libc::SIGKILL);
            let status = broker.wait_for_exit(STOP_TIMEOUT);
            assert_eq!(status.signal(), Some(libc::SIGKILL), "broker exited with {status} instead of being killed");
        }
    }
}

/// Moves the test directory out of a broker that has exited, leaving an empty one behind.
fn take_dir(broker: &mut Broker) -> TestDir {
    std::mem::replace(&mut broker.dir, TestDir::new())
}

/// Stops `broker` and starts a new one on the same data directory with `config_extra`.
fn restart(mut broker: Broker, stop: Stop, config_extra: &str) -> Broker {
    halt(&mut broker, stop);
    let dir = take_dir(&mut broker);
    drop(broker);
    Broker::start_in(dir, config_extra)
}

/// Counts of the broker's `state restored from the store` log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Restored {
    retained: usize,
    sessions: usize,
    queued: usize,
}

/// Reads the `state restored from the store` line that a broker logs before its listeners start.
fn restored_counts(broker: &Broker) -> Restored {
    let line = broker.wait_for_log(RESTORED_LOG, Duration::from_secs(5));
    let field = |name: &str| -> usize {
        let key = format!("{name}=");
        let start = line.find(&key).unwrap_or_else(|| panic!("no {key} field in the log line: {line}")) + key.len();
        let digits: String = line[start..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or_else(|_| panic!("{key} is not a number in the log line: {line}"))
    };
    Restored { retained: field("retained"), sessions: field("sessions"), queued: field("queued") }
}

/// Runs `lpiotia-mqtt serve` in `dir` and waits for it to exit; for a start that must fail.
fn run_serve_to_exit(dir: &TestDir) -> Output {
    let mut command = broker_command(dir);
    command
        .arg("serve")
        .arg("--config")
        .arg(dir.config_path())
        .arg("--log-level")
        .arg("info")
        .env("LPIOTIA_MQTT_ADMIN_PASSWORD", ADMIN_PASSWORD);
    process::run(command, None, Duration::from_secs(20))
}

/// Runs `lpiotia-mqtt store ACTION --config DIR/config.toml`.
fn run_store_command(dir: &TestDir, action: &str) -> Output {
    let mut command = broker_command(dir);
    command.arg("store").arg(action).arg("--config").arg(dir.config_path());
    process::run(command, None, Duration::from_secs(30))
}

/// Files in `dir` whose name starts with `prefix`.
fn files_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|error| panic!("failed to list {}: {error}", dir.display()));
    let mut found: Vec<PathBuf> = entries
        .map(|entry| entry.expect("failed to read a directory entry").path())
        .filter(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with(prefix)))
        .collect();
    found.sort();
    found
}

// ---------------------------------------------------------------------------------------
// Random numbers with a printed seed
// ---------------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea and Flood, 2014): enough randomness for kill points and garbage
/// bytes, and reproducible from its seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let value = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&value[..chunk.len()]);
        }
    }
}

/// Returns the seed from `LPIOTIA_TEST_SEED`, or one taken from the clock, and prints it.
fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("LPIOTIA_TEST_SEED") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("LPIOTIA_TEST_SEED={text:?} is not a u64")),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).expect("clock before 1970").as_nanos() as u64,
    };
    println!("{test}: seed {seed} (set LPIOTIA_TEST_SEED={seed} to repeat)");
    seed
}

// ---------------------------------------------------------------------------------------
// MQTT 5.0 PUBLISH with properties, which the shared raw client neither sends nor decodes
// ---------------------------------------------------------------------------------------

fn put_varint(buffer: &mut Vec<u8>, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        buffer.push(byte);
        if value == 0 {
            break;
        }
    }
}

fn put_binary(buffer: &mut Vec<u8>, data: &[u8]) {
    let length = u16::try_from(data.len()).expect("field longer than 65535 bytes");
    buffer.extend_from_slice(&length.to_be_bytes());
    buffer.extend_from_slice(data);
}

/// Reads a Variable Byte Integer at `*position`.
fn get_varint(buffer: &[u8], position: &mut usize) -> usize {
    let mut value = 0usize;
    for shift in 0..4 {
        let byte = buffer[*position];
        *position += 1;
        value |= usize::from(byte & 0x7F) << (7 * shift);
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("Variable Byte Integer longer than 4 bytes in {buffer:02x?}");
}

/// Encodes the properties of an MQTT 5.0 PUBLISH: an optional Content Type and User Properties.
fn encode_publish_properties(content_type: Option<&str>, user_properties: &[(String, String)]) -> Vec<u8> {
    let mut properties = Vec::new();
    if let Some(content_type) = content_type {
        properties.push(property::CONTENT_TYPE);
        put_binary(&mut properties, content_type.as_bytes());
    }
    for (key, value) in user_properties {
        properties.push(property::USER_PROPERTY);
        put_binary(&mut properties, key.as_bytes());
        put_binary(&mut properties, value.as_bytes());
    }
    properties
}

/// Encodes an MQTT 5.0 PUBLISH carrying `properties` (already encoded, without their length).
fn encode_publish_v5(topic: &str, qos: u8, retain: bool, packet_id: u16, properties: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + properties.len() + payload.len() + 8);
    put_binary(&mut body, topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    put_varint(&mut body, properties.len());
    body.extend_from_slice(properties);
    body.extend_from_slice(payload);

    let mut packet = vec![(PUBLISH << 4) | (qos << 1) | u8::from(retain)];
    put_varint(&mut packet, body.len());
    packet.extend_from_slice(&body);
    packet
}

/// A PUBLISH from the broker with the properties the tests compare.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ReceivedPublish {
    topic: String,
    qos: u8,
    retain: bool,
    packet_id: u16,
    content_type: Option<String>,
    user_properties: Vec<(String, String)>,
    payload: Vec<u8>,
}

/// Decodes a PUBLISH; on protocol level 5 its properties too.
fn decode_publish(packet: &Packet, level: u8) -> ReceivedPublish {
    assert_eq!(packet.kind, PUBLISH, "expected PUBLISH, got {packet:?}");
    let body = &packet.body;
    let qos = (packet.flags >> 1) & 0x03;
    let read_u16 = |position: &mut usize| -> u16 {
        let value = u16::from_be_bytes([body[*position], body[*position + 1]]);
        *position += 2;
        value
    };
    let read_text = |position: &mut usize| -> String {
        let length = usize::from(read_u16(position));
        let text = String::from_utf8_lossy(&body[*position..*position + length]).into_owned();
        *position += length;
        text
    };

    let mut position = 0;
    let topic = read_text(&mut position);
    let packet_id = if qos > 0 { read_u16(&mut position) } else { 0 };
    let mut content_type = None;
    let mut user_properties = Vec::new();
    if level == 5 {
        let length = get_varint(body, &mut position);
        let end = position + length;
        while position < end {
            let id = body[position];
            position += 1;
            match id {
                property::PAYLOAD_FORMAT_INDICATOR => position += 1,
                property::MESSAGE_EXPIRY_INTERVAL => position += 4,
                property::TOPIC_ALIAS => position += 2,
                property::SUBSCRIPTION_IDENTIFIER => {
                    get_varint(body, &mut position);
                }
                property::CONTENT_TYPE => content_type = Some(read_text(&mut position)),
                property::RESPONSE_TOPIC | property::CORRELATION_DATA => {
                    read_text(&mut position);
                }
                property::USER_PROPERTY => {
                    let key = read_text(&mut position);
                    let value = read_text(&mut position);
                    user_properties.push((key, value));
                }
                other => panic!("property {other:#04x} is not allowed in PUBLISH: {packet:?}"),
            }
        }
        assert_eq!(position, end, "PUBLISH properties overrun their length: {packet:?}");
    }
    ReceivedPublish {
        topic,
        qos,
        retain: packet.flags & 0x01 == 1,
        packet_id,
        content_type,
        user_properties,
        payload: body[position..].to_vec(),
    }
}

/// One PUBLISH to send, with the packet id of its PUBACK when it has QoS 1.
struct OutgoingPublish {
    bytes: Vec<u8>,
    puback_id: Option<u16>,
}

/// Sends `publishes` with at most `window` QoS 1 PUBLISH packets waiting for their PUBACK,
/// and returns once every PUBACK has arrived. Pipelining lets the broker's group commit
/// cover many messages with one fsync.
fn publish_pipelined(client: &mut RawClient, publishes: &[OutgoingPublish], window: usize) {
    let mut waiting: HashSet<u16> = HashSet::new();
    for publish in publishes {
        while waiting.len() >= window {
            receive_puback(client, &mut waiting);
        }
        client.send(&publish.bytes);
        if let Some(packet_id) = publish.puback_id {
            assert!(waiting.insert(packet_id), "packet id {packet_id} reused while in flight");
        }
    }
    while !waiting.is_empty() {
        receive_puback(client, &mut waiting);
    }
}

fn receive_puback(client: &mut RawClient, waiting: &mut HashSet<u16>) {
    let packet = client
        .read_packet(REPLY_TIMEOUT)
        .unwrap_or_else(|error| panic!("no PUBACK within {REPLY_TIMEOUT:?} for packet ids {waiting:?}: {error:?}"));
    assert_eq!(packet.kind, PUBACK, "expected PUBACK, got {packet:?}");
    let packet_id = packet.packet_id();
    // MQTT 5.0 may add a reason code; 0x10 (No matching subscribers) is a success too.
    if let Some(&reason) = packet.body.get(2) {
        assert!(reason < 0x80, "PUBACK for packet id {packet_id} has failure reason code {reason:#04x}");
    }
    assert!(waiting.remove(&packet_id), "PUBACK for packet id {packet_id}, which is not in flight: {waiting:?}");
}

/// Sends SUBSCRIBE and reads packets up to its SUBACK, which must grant the requested QoS;
/// a PUBLISH that comes first is an error here, so that no retained message is consumed
/// by code that ignores properties.
fn subscribe_raw(client: &mut RawClient, packet_id: u16, filters: &[(&str, u8)]) {
    client.send(&encode_subscribe(client.level, packet_id, filters));
    let packet = client
        .read_packet(REPLY_TIMEOUT)
        .unwrap_or_else(|error| panic!("no SUBACK for {filters:?}: {error:?}"));
    assert_eq!(packet.kind, SUBACK, "expected SUBACK for {filters:?} before any other packet, got {packet:?}");
    assert_eq!(packet.packet_id(), packet_id, "SUBACK for the wrong packet id");
    let granted = packet.suback_codes(client.level);
    let requested: Vec<u8> = filters.iter().map(|(_, qos)| *qos).collect();
    assert_eq!(granted, requested, "SUBACK codes for {filters:?}");
}

// ---------------------------------------------------------------------------------------
// 1. Retained messages
// ---------------------------------------------------------------------------------------

const RETAINED_COUNT: usize = 1000;

/// One retained message of `retained_survive_restart`.
struct RetainedCase {
    topic: String,
    qos: u8,
    payload: Vec<u8>,
    /// Published over MQTT 5.0 with a Content Type and a User Property.
    content_type: Option<String>,
    user_properties: Vec<(String, String)>,
}

fn retained_case(index: usize) -> RetainedCase {
    let with_properties = index % 5 == 0;
    RetainedCase {
        topic: format!("keep/{index:04}"),
        qos: (index % 2) as u8,
        payload: format!("retained {index} {}", "#".repeat(index % 64)).into_bytes(),
        content_type: with_properties.then(|| format!("text/x-{index}")),
        user_properties: if with_properties { vec![("k".to_string(), format!("v{index}"))] } else { Vec::new() },
    }
}

#[test]
fn retained_survive_restart() {
    let broker = Broker::start(DURABLE);
    let cases: Vec<RetainedCase> = (0..RETAINED_COUNT).map(retained_case).collect();

    // Messages with properties go over MQTT 5.0, the others over 3.1.1.
    let mut publishes_v311 = Vec::new();
    let mut publishes_v5 = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let packet_id = u16::try_from(index + 1).unwrap();
        let puback_id = (case.qos == 1).then_some(packet_id);
        if case.content_type.is_some() {
            let properties = encode_publish_properties(case.content_type.as_deref(), &case.user_properties);
            let bytes = encode_publish_v5(&case.topic, case.qos, true, packet_id, &properties, &case.payload);
            publishes_v5.push(OutgoingPublish { bytes, puback_id });
        } else {
            let bytes = encode_publish(4, &case.topic, case.qos, true, packet_id, &case.payload);
            publishes_v311.push(OutgoingPublish { bytes, puback_id });
        }
    }
    let mut writer_v311 = RawClient::login_admin(broker.addr, 4, "retain-writer-311");
    let (mut writer_v5, connack) = RawClient::connect(broker.addr, &ConnectOptions::admin(5, "retain-writer-5"));
    assert_eq!(connack.code, 0, "CONNACK of the MQTT 5.0 writer: {connack:?}");
    // MQTT 5.0: the broker's Receive Maximum caps the QoS 1 messages in flight (65535 if absent).
    let receive_maximum = match connack.property(property::RECEIVE_MAXIMUM) {
        Some(PropertyValue::Integer(value)) => *value as usize,
        Some(other) => panic!("Receive Maximum is not an integer: {other:?}"),
        None => usize::from(u16::MAX),
    };
    publish_pipelined(&mut writer_v311, &publishes_v311, 16);
    publish_pipelined(&mut writer_v5, &publishes_v5, receive_maximum.min(16));
    // QoS 0 PUBLISH packets get no reply; a PINGRESP after them shows they were read.
    assert!(writer_v311.ping(), "no PINGRESP after the QoS 0 messages (3.1.1)");
    assert!(writer_v5.ping(), "no PINGRESP after the QoS 0 messages (5.0)");
    writer_v311.disconnect();
    writer_v5.disconnect();

    let broker = restart(broker, Stop::Graceful, DURABLE);
    let restored = restored_counts(&broker);
    assert_eq!(restored.retained, RETAINED_COUNT, "retained messages read back from the store: {restored:?}");

    let mut reader = RawClient::login_admin(broker.addr, 5, "retain-reader");
    subscribe_raw(&mut reader, 1, &[("keep/#", 1)]);
    let mut received: BTreeMap<String, Vec<ReceivedPublish>> = BTreeMap::new();
    let mut total = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while total < RETAINED_COUNT && Instant::now() < deadline {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let packet = match reader.read_packet(remaining) {
            Ok(packet) => packet,
            Err(ReadError::Timeout) => break,
            Err(error) => panic!("reader connection failed after {total} retained messages: {error:?}"),
        };
        let publish = decode_publish(&packet, 5);
        if publish.qos == 1 {
            reader.send(&encode_ack(PUBACK, publish.packet_id));
        }
        total += 1;
        received.entry(publish.topic.clone()).or_default().push(publish);
    }
    // A PUBLISH after the 1000th is a duplicate or a message that no test client published.
    for _ in 0..RETAINED_COUNT {
        let Ok(packet) = reader.read_packet(Duration::from_millis(500)) else {
            break;
        };
        let publish = decode_publish(&packet, 5);
        if publish.qos == 1 {
            reader.send(&encode_ack(PUBACK, publish.packet_id));
        }
        received.entry(publish.topic.clone()).or_default().push(publish);
    }

    let missing: Vec<&str> =
        cases.iter().filter(|case| !received.contains_key(&case.topic)).map(|case| case.topic.as_str()).collect();
    assert!(
        missing.is_empty(),
        "{} of {RETAINED_COUNT} retained messages missing after the restart, first ones: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let known: HashSet<&str> = cases.iter().map(|case| case.topic.as_str()).collect();
    let unknown: Vec<&String> = received.keys().filter(|topic| !known.contains(topic.as_str())).collect();
    assert!(unknown.is_empty(), "retained messages on topics nobody published: {unknown:?}");
    let duplicated: Vec<(&String, usize)> =
        received.iter().filter(|(_, copies)| copies.len() > 1).map(|(topic, copies)| (topic, copies.len())).collect();
    assert!(duplicated.is_empty(), "retained messages delivered more than once for one SUBSCRIBE: {duplicated:?}");

    let mut wrong_payload = Vec::new();
    let mut wrong_qos = Vec::new();
    let mut without_retain_flag = Vec::new();
    let mut wrong_properties = Vec::new();
    for case in &cases {
        let publish = &received[&case.topic][0];
        if publish.payload != case.payload {
            wrong_payload.push((case.topic.as_str(), String::from_utf8_lossy(&publish.payload).into_owned()));
        }
        if publish.qos != case.qos {
            wrong_qos.push((case.topic.as_str(), case.qos, publish.qos));
        }
        if !publish.retain {
            without_retain_flag.push(case.topic.as_str());
        }
        if publish.content_type != case.content_type || publish.user_properties != case.user_properties {
            wrong_properties.push((case.topic.as_str(), publish.content_type.clone(), publish.user_properties.clone()));
        }
    }
    assert!(wrong_payload.is_empty(), "{} payloads changed by the restart: {:?}", wrong_payload.len(), &wrong_payload[..wrong_payload.len().min(10)]);
    assert!(wrong_qos.is_empty(), "{} QoS values changed (topic, published, delivered): {:?}", wrong_qos.len(), &wrong_qos[..wrong_qos.len().min(10)]);
    assert!(without_retain_flag.is_empty(), "{} messages delivered without the retain flag: {:?}", without_retain_flag.len(), &without_retain_flag[..without_retain_flag.len().min(10)]);
    assert!(
        wrong_properties.is_empty(),
        "{} messages with changed properties (topic, content type, user properties): {:?}",
        wrong_properties.len(),
        &wrong_properties[..wrong_properties.len().min(10)]
    );

    // The same properties as Mosquitto's own client prints them: %C content type, %P user properties.
    let case = &cases[15];
    let port = broker.port().to_string();
    let mut command = std::process::Command::new("mosquitto_sub");
    command
        .args(["-h", "127.0.0.1", "-p", port.as_str(), "-V", "mqttv5", "-u", ADMIN_USER, "-P", ADMIN_PASSWORD])
        .args(["-t", case.topic.as_str(), "-C", "1", "-W", "10", "-F", "%C|%P|%p"]);
    mosquitto::require_clients();
    let output = process::run(command, None, Duration::from_secs(20));
    assert!(output.success(), "mosquitto_sub received no retained message on {}\n{output}", case.topic);
    let expected = format!(
        "{}|k:v15|{}",
        case.content_type.as_deref().unwrap(),
        String::from_utf8_lossy(&case.payload)
    );
    assert_eq!(output.stdout.trim_end(), expected, "mosquitto_sub -F '%C|%P|%p' of {}", case.topic);
}

// ---------------------------------------------------------------------------------------
// 2. Persistent sessions
// ---------------------------------------------------------------------------------------

/// The receiving side of QoS 1 and QoS 2, as section 4.3.3 of MQTT 3.1.1 and of MQTT 5.0
/// describes it. A QoS 2 message is delivered when its PUBLISH first arrives, and a PUBLISH
/// with the same packet id before the PUBREL is that message again, not a new one.
#[derive(Default)]
struct DeliveryLog {
    /// Payload and QoS of every message handed to the application, in arrival order.
    delivered: Vec<(String, u8)>,
    /// QoS 2 packet ids acknowledged with PUBREC whose PUBREL has not arrived yet.
    awaiting_pubrel: HashSet<u16>,
    /// Packet ids of the PUBREL packets received.
    pubrels: Vec<u16>,
}

impl DeliveryLog {
    /// Handles one packet from the broker and sends the acknowledgement a client sends.
    fn handle(&mut self, client: &mut RawClient, packet: &Packet) {
        match packet.kind {
            PUBLISH => {
                let publish = decode_publish(packet, client.level);
                let payload = String::from_utf8_lossy(&publish.payload).into_owned();
                match publish.qos {
                    0 => self.delivered.push((payload, 0)),
                    1 => {
                        self.delivered.push((payload, 1));
                        client.send(&encode_ack(PUBACK, publish.packet_id));
                    }
                    _ => {
                        if self.awaiting_pubrel.insert(publish.packet_id) {
                            self.delivered.push((payload, 2));
                        }
                        client.send(&encode_ack(PUBREC, publish.packet_id));
                    }
                }
            }
            PUBREL => {
                let packet_id = packet.packet_id();
                self.awaiting_pubrel.remove(&packet_id);
                self.pubrels.push(packet_id);
                client.send(&encode_ack(PUBCOMP, packet_id));
            }
            _ => panic!("unexpected packet for a subscriber: {packet:?}"),
        }
    }

    /// Handles packets until `done` returns true or nothing arrives for `quiet`, at most `timeout`.
    fn receive(&mut self, client: &mut RawClient, timeout: Duration, quiet: Duration, done: impl Fn(&DeliveryLog) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return;
            }
            match client.read_packet(remaining.min(quiet)) {
                Ok(packet) => self.handle(client, &packet),
                Err(ReadError::Timeout) => return,
                Err(error) => panic!("subscriber connection failed: {error:?}"),
            }
        }
    }

    fn count_of(&self, payload: &str) -> usize {
        self.delivered.iter().filter(|(delivered, _)| delivered == payload).count()
    }
}

/// A message of the session tests and the QoS it must be delivered with.
#[derive(Clone, Debug)]
struct Expected {
    payload: String,
    qos: u8,
}

/// Publishes QoS 1 and QoS 2 messages to a topic subscribed at QoS 1 and one subscribed at
/// QoS 2; returns them with the QoS they must arrive with (the lower of the two).
fn publish_session_messages(broker: &Broker) -> Vec<Expected> {
    let mut publisher = RawClient::login_admin(broker.addr, 4, "session-publisher");
    let mut expected = Vec::new();
    for round in 0..5 {
        for (topic, subscription_qos) in [("durable/q1", 1u8), ("durable/q2", 2u8)] {
            for qos in [1u8, 2] {
                let payload = format!("{topic} published at QoS {qos} #{round}");
                publisher.publish(topic, qos, false, payload.as_bytes());
                expected.push(Expected { payload, qos: qos.min(subscription_qos) });
            }
        }
    }
    publisher.disconnect();
    expected
}

fn session_options(level: u8, client_id: &str) -> ConnectOptions {
    let options = ConnectOptions::admin(level, client_id).clean(false);
    if level == 5 {
        options.session_expiry(3600)
    } else {
        options
    }
}

/// Connects with the stored session and asserts that the broker reports it present.
fn reconnect(broker: &Broker, options: &ConnectOptions, context: &str) -> RawClient {
    let (client, connack) = RawClient::connect(broker.addr, options);
    assert_eq!(connack.code, 0, "{context}: reconnect of {} refused: {connack:?}", options.client_id);
    assert!(connack.session_present, "{context}: CONNACK for {} has session present 0", options.client_id);
    client
}

/// Takes one QoS 2 message half way through its exchange: the subscriber acknowledges the first
/// QoS 2 PUBLISH with PUBREC, waits for the PUBREL and drops the connection before sending
/// PUBCOMP. The broker must then resend that PUBREL, never the message. Other PUBLISH
/// packets on this connection are left unacknowledged, as by a client that crashed.
fn take_qos2_half_way(client: &mut RawClient, log: &mut DeliveryLog) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let packet_id = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let packet = client.read_packet(remaining).unwrap_or_else(|error| panic!("no QoS 2 PUBLISH after reconnecting: {error:?}"));
        if packet.kind == PUBLISH && (packet.flags >> 1) & 0x03 == 2 {
            let publish = decode_publish(&packet, client.level);
            log.delivered.push((String::from_utf8_lossy(&publish.payload).into_owned(), 2));
            client.send(&encode_ack(PUBREC, publish.packet_id));
            break publish.packet_id;
        }
    };
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let packet = client
            .read_packet(remaining)
            .unwrap_or_else(|error| panic!("no PUBREL for packet id {packet_id} after PUBREC: {error:?}"));
        if packet.kind == PUBREL && packet.packet_id() == packet_id {
            return packet_id;
        }
    }
}

fn persistent_session_across_restart(level: u8, stop: Stop) {
    let client_id = format!("keeper-{level}-{stop:?}").to_lowercase();
    let options = session_options(level, &client_id);
    let broker = Broker::start(DURABLE);

    let mut subscriber = RawClient::login(broker.addr, &options);
    subscriber.subscribe_ok(&[("durable/q1", 1), ("durable/q2", 2)]);
    subscriber.disconnect();
    let expected = publish_session_messages(&broker);

    let mut log = DeliveryLog::default();
    let mut subscriber = reconnect(&broker, &options, "before the restart");
    let half_way_id = take_qos2_half_way(&mut subscriber, &mut log);
    let half_way_payload = log.delivered[0].0.clone();
    subscriber.drop_connection();

    let broker = restart(broker, stop, DURABLE);
    let restored = restored_counts(&broker);
    assert_eq!(restored.sessions, 1, "sessions read back from the store after {stop:?}: {restored:?}");

    let mut subscriber = reconnect(&broker, &options, &format!("after {stop:?}"));
    let all_delivered = |log: &DeliveryLog| expected.iter().all(|message| log.count_of(&message.payload) > 0);
    log.receive(&mut subscriber, Duration::from_secs(15), Duration::from_secs(5), all_delivered);
    // Resent duplicates would come right after the queue; give them time to show.
    log.receive(&mut subscriber, Duration::from_secs(1), Duration::from_secs(1), |_| false);

    let missing: Vec<&Expected> = expected.iter().filter(|message| log.count_of(&message.payload) == 0).collect();
    assert!(missing.is_empty(), "{} of {} messages lost across {stop:?}: {missing:?}\ndelivered: {:?}", missing.len(), expected.len(), log.delivered);
    let wrong_qos: Vec<(&str, u8, u8)> = log
        .delivered
        .iter()
        .filter_map(|(payload, qos)| {
            let message = expected.iter().find(|message| &message.payload == payload)?;
            (message.qos != *qos).then_some((payload.as_str(), message.qos, *qos))
        })
        .collect();
    assert!(wrong_qos.is_empty(), "messages delivered with the wrong QoS (payload, expected, delivered): {wrong_qos:?}");
    let qos2_duplicates: Vec<(&str, usize)> = expected
        .iter()
        .filter(|message| message.qos == 2)
        .map(|message| (message.payload.as_str(), log.count_of(&message.payload)))
        .filter(|(_, count)| *count > 1)
        .collect();
    assert!(
        qos2_duplicates.is_empty(),
        "QoS 2 messages delivered more than once across {stop:?} (payload, count): {qos2_duplicates:?}; \
         the message taken half way (PUBREC sent, PUBREL received, no PUBCOMP) was {half_way_payload:?} \
         with packet id {half_way_id}"
    );
    assert!(
        log.pubrels.contains(&half_way_id),
        "the broker did not resend PUBREL for packet id {half_way_id} after {stop:?} (MQTT 3.1.1 section 4.4); PUBRELs received: {:?}",
        log.pubrels
    );
    assert!(log.awaiting_pubrel.is_empty(), "QoS 2 messages still waiting for PUBREL: {:?}", log.awaiting_pubrel);
    subscriber.disconnect();

    // Everything was acknowledged: a further restart must bring nothing back.
    let broker = restart(broker, Stop::Graceful, DURABLE);
    let mut subscriber = reconnect(&broker, &options, "after the second restart");
    let mut again = DeliveryLog::default();
    again.receive(&mut subscriber, Duration::from_secs(1), Duration::from_secs(1), |_| false);
    assert!(again.delivered.is_empty(), "acknowledged messages delivered again after another restart: {:?}", again.delivered);
    assert!(again.pubrels.is_empty(), "PUBREL resent for completed QoS 2 exchanges: {:?}", again.pubrels);
}

#[test]
fn persistent_session_v311_survives_restart() {
    persistent_session_across_restart(4, Stop::Graceful);
}

#[test]
fn persistent_session_v311_survives_kill9() {
    persistent_session_across_restart(4, Stop::Kill);
}

#[test]
fn persistent_session_v5_survives_restart() {
    persistent_session_across_restart(5, Stop::Graceful);
}

#[test]
fn persistent_session_v5_survives_kill9() {
    persistent_session_across_restart(5, Stop::Kill);
}

// ---------------------------------------------------------------------------------------
// 3. No acknowledged message lost to SIGKILL
// ---------------------------------------------------------------------------------------

/// Kill points the test aims for, and the fewest it accepts.
const KILL_POINTS: usize = 40;
const MIN_KILL_POINTS: usize = 20;
/// Whole test, kills and final drain together.
const KILL_TEST_BUDGET: Duration = Duration::from_secs(120);
/// Time after which no further kill starts, leaving the rest of the budget to the drain.
const KILL_PHASE_BUDGET: Duration = Duration::from_secs(80);
/// QoS 1 PUBLISH packets each publisher keeps waiting for their PUBACK.
const PUBLISH_WINDOW: usize = 8;
const KILL_PUBLISHERS: usize = 2;

/// Where the publishers connect: the current broker's address and its number (0 for the
/// first broker), or `None` while a broker is being killed and replaced.
type Target = Arc<Mutex<Option<(SocketAddr, u64)>>>;

/// A publisher connection that returns errors instead of panicking, because the broker dies under it.
struct FragileConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl FragileConnection {
    fn connect(addr: SocketAddr, client_id: &str) -> io::Result<FragileConnection> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let mut connection = FragileConnection { stream, buffer: Vec::new() };
        connection.send(&ConnectOptions::admin(4, client_id).encode())?;
        let (kind, body) = connection.read_packet(REPLY_TIMEOUT)?;
        if kind != 2 || body.get(1) != Some(&0) {
            return Err(io::Error::other(format!("CONNACK expected, got packet type {kind} with body {body:02x?}")));
        }
        Ok(connection)
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads the next packet as (type, body).
    fn read_packet(&mut self, timeout: Duration) -> io::Result<(u8, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(packet) = self.parse_buffered() {
                return Ok(packet);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no packet from the broker"));
            }
            self.stream.set_read_timeout(Some(remaining))?;
            let mut chunk = [0u8; 4096];
            let count = self.stream.read(&mut chunk)?;
            if count == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the broker closed the connection"));
            }
            self.buffer.extend_from_slice(&chunk[..count]);
        }
    }

    fn parse_buffered(&mut self) -> Option<(u8, Vec<u8>)> {
        let first = *self.buffer.first()?;
        let mut length = 0usize;
        let mut position = 1;
        loop {
            let byte = *self.buffer.get(position)?;
            length |= usize::from(byte & 0x7F) << (7 * (position - 1));
            position += 1;
            if byte & 0x80 == 0 {
                break;
            }
            assert!(position <= 4, "malformed remaining length from the broker");
        }
        if self.buffer.len() < position + length {
            return None;
        }
        let body = self.buffer[position..position + length].to_vec();
        self.buffer.drain(..position + length);
        Some((first >> 4, body))
    }
}

/// What one publisher thread did.
#[derive(Default)]
struct PublisherReport {
    /// Sequence numbers whose PUBACK arrived.
    acknowledged: BTreeSet<u64>,
    /// Numbers of the brokers that acknowledged at least one message.
    brokers_with_acks: BTreeSet<u64>,
    sent: u64,
    connections: u64,
    /// Replies that no broker should send: refused CONNACK, unknown packet ids, other packets.
    protocol_errors: Vec<String>,
}

fn kill_payload(publisher: usize, seq: u64) -> String {
    format!("{publisher}:{seq}")
}

/// Publishes numbered QoS 1 messages to `kill9/PUBLISHER`, reconnecting whenever the broker
/// goes away, until `running` is cleared. Unacknowledged messages are not resent: only the
/// acknowledged ones carry a promise.
fn run_kill_publisher(publisher: usize, target: Target, running: Arc<AtomicBool>, acked_total: Arc<AtomicU64>) -> PublisherReport {
    let topic = format!("kill9/{publisher}");
    let client_id = format!("kill9-publisher-{publisher}");
    let mut report = PublisherReport::default();
    let mut next_seq = 0u64;
    while running.load(Ordering::SeqCst) {
        let Some((addr, broker_number)) = *target.lock().unwrap() else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let mut connection = match FragileConnection::connect(addr, &client_id) {
            Ok(connection) => connection,
            Err(error) => {
                if error.kind() == io::ErrorKind::Other {
                    report.protocol_errors.push(format!("broker {broker_number}: {error}"));
                }
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        report.connections += 1;

        // Packet id to sequence number of each PUBLISH waiting for its PUBACK.
        let mut in_flight: BTreeMap<u16, u64> = BTreeMap::new();
        while running.load(Ordering::SeqCst) {
            while in_flight.len() < PUBLISH_WINDOW {
                let seq = next_seq;
                next_seq += 1;
                let packet_id = (seq % 60_000) as u16 + 1;
                let packet = encode_publish(4, &topic, 1, false, packet_id, kill_payload(publisher, seq).as_bytes());
                if connection.send(&packet).is_err() {
                    break;
                }
                report.sent += 1;
                in_flight.insert(packet_id, seq);
            }
            let (kind, body) = match connection.read_packet(Duration::from_secs(5)) {
                Ok(packet) => packet,
                Err(_) => break,
            };
            if kind != PUBACK || body.len() < 2 {
                report.protocol_errors.push(format!("broker {broker_number}: expected PUBACK, got type {kind} body {body:02x?}"));
                break;
            }
            let packet_id = u16::from_be_bytes([body[0], body[1]]);
            match in_flight.remove(&packet_id) {
                Some(seq) => {
                    report.acknowledged.insert(seq);
                    report.brokers_with_acks.insert(broker_number);
                    acked_total.fetch_add(1, Ordering::SeqCst);
                }
                None => {
                    report.protocol_errors.push(format!("broker {broker_number}: PUBACK for packet id {packet_id}, not in flight"));
                    break;
                }
            }
        }
    }
    report
}

/// One restart of the kill test, for the failure message.
#[derive(Debug)]
struct KillPoint {
    delay_ms: u64,
    /// Messages acknowledged by any broker before this one started.
    acknowledged_before: u64,
    restored: Restored,
}

#[test]
fn kill9_loses_no_acknowledged_message() {
    let started = Instant::now();
    let seed = test_seed("kill9_loses_no_acknowledged_message");
    let mut random = SplitMix64(seed);

    let mut broker = Broker::start(DURABLE);
    let sink = ConnectOptions::admin(4, "kill9-sink").clean(false);
    let mut subscriber = RawClient::login(broker.addr, &sink);
    subscriber.subscribe_ok(&[("kill9/#", 1)]);
    subscriber.disconnect();

    let target: Target = Arc::new(Mutex::new(Some((broker.addr, 0))));
    let running = Arc::new(AtomicBool::new(true));
    let acked_total = Arc::new(AtomicU64::new(0));
    let publishers: Vec<thread::JoinHandle<PublisherReport>> = (0..KILL_PUBLISHERS)
        .map(|publisher| {
            let target = Arc::clone(&target);
            let running = Arc::clone(&running);
            let acked_total = Arc::clone(&acked_total);
            thread::spawn(move || run_kill_publisher(publisher, target, running, acked_total))
        })
        .collect();

    let mut kill_points: Vec<KillPoint> = Vec::new();
    while kill_points.len() < KILL_POINTS && started.elapsed() < KILL_PHASE_BUDGET {
        let delay_ms = random.between(50, 400);
        thread::sleep(Duration::from_millis(delay_ms));
        *target.lock().unwrap() = None;
        halt(&mut broker, Stop::Kill);
        let dir = take_dir(&mut broker);
        drop(broker);

        broker = Broker::start_in(dir, DURABLE);
        // Read before the publishers learn the new address, so every count here came from a
        // broker that has been killed.
        let acknowledged_before = acked_total.load(Ordering::SeqCst);
        let restored = restored_counts(&broker);
        kill_points.push(KillPoint { delay_ms, acknowledged_before, restored });
        let broker_number = kill_points.len() as u64;
        *target.lock().unwrap() = Some((broker.addr, broker_number));
    }
    running.store(false, Ordering::SeqCst);
    let reports: Vec<PublisherReport> =
        publishers.into_iter().map(|handle| handle.join().expect("a publisher thread panicked")).collect();
    let kill_phase = started.elapsed();

    let delays: Vec<u64> = kill_points.iter().map(|point| point.delay_ms).collect();
    let summary = format!(
        "seed {seed}, {} kill points in {kill_phase:?} after {delays:?} ms, {} messages acknowledged, {} sent, \
         connections per publisher {:?}",
        kill_points.len(),
        reports.iter().map(|report| report.acknowledged.len()).sum::<usize>(),
        reports.iter().map(|report| report.sent).sum::<u64>(),
        reports.iter().map(|report| report.connections).collect::<Vec<_>>()
    );
    println!("{summary}");
    assert!(
        kill_points.len() >= MIN_KILL_POINTS,
        "only {} of {MIN_KILL_POINTS} kill points fit in {KILL_PHASE_BUDGET:?}; {summary}",
        kill_points.len()
    );
    for (publisher, report) in reports.iter().enumerate() {
        assert!(report.protocol_errors.is_empty(), "publisher {publisher} got wrong replies: {:?}; {summary}", report.protocol_errors);
        // Acknowledgements must come from many broker lifetimes, not only from the last one.
        assert!(
            report.brokers_with_acks.len() > kill_points.len() / 2,
            "publisher {publisher} got PUBACKs from only {} of {} brokers; {summary}",
            report.brokers_with_acks.len(),
            kill_points.len() + 1
        );
    }
    let short_restores: Vec<(usize, &KillPoint)> = kill_points
        .iter()
        .enumerate()
        .filter(|(_, point)| (point.restored.queued as u64) < point.acknowledged_before)
        .collect();

    // Drain the offline subscriber's queue.
    let mut subscriber = reconnect(&broker, &sink, "after the last kill");
    let mut received: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); KILL_PUBLISHERS];
    let mut deliveries = 0usize;
    let all_received = |received: &[BTreeSet<u64>]| {
        reports.iter().zip(received).all(|(report, got)| report.acknowledged.is_subset(got))
    };
    let drain_deadline = started + KILL_TEST_BUDGET - Duration::from_secs(2);
    while !all_received(&received) && Instant::now() < drain_deadline {
        let remaining = drain_deadline.saturating_duration_since(Instant::now());
        let Some(publish) = subscriber.next_publish(remaining.min(Duration::from_secs(10))) else {
            break;
        };
        deliveries += 1;
        let text = publish.payload_text();
        let parsed = text.split_once(':').and_then(|(publisher, seq)| Some((publisher.parse::<usize>().ok()?, seq.parse::<u64>().ok()?)));
        let (publisher, seq) = parsed.unwrap_or_else(|| panic!("unexpected payload {text:?} on {}", publish.topic));
        assert_eq!(publish.topic, format!("kill9/{publisher}"), "payload {text:?} on the wrong topic");
        received[publisher].insert(seq);
    }

    let mut missing_report = Vec::new();
    for (publisher, report) in reports.iter().enumerate() {
        let missing: Vec<u64> = report.acknowledged.difference(&received[publisher]).copied().collect();
        if !missing.is_empty() {
            missing_report.push(format!(
                "publisher {publisher}: {} of {} acknowledged missing: {:?}",
                missing.len(),
                report.acknowledged.len(),
                &missing[..missing.len().min(50)]
            ));
        }
    }
    assert!(
        missing_report.is_empty(),
        "acknowledged QoS 1 messages lost to SIGKILL ({deliveries} deliveries drained):\n{}\n{summary}\nrestores with fewer queued messages than acknowledged: {short_restores:?}",
        missing_report.join("\n")
    );
    assert!(short_restores.is_empty(), "a restart restored fewer queued messages than had been acknowledged: {short_restores:?}; {summary}");
    println!("kill9 test took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 4. Corrupt store
// ---------------------------------------------------------------------------------------

/// Starts a broker, stores retained messages with the given topics and payloads, stops it
/// gracefully and returns its directory.
fn store_retained_and_stop(messages: &[(&str, &str)]) -> TestDir {
    let mut broker = Broker::start(DURABLE);
    let mut publisher = RawClient::login_admin(broker.addr, 4, "store-filler");
    for (topic, payload) in messages {
        publisher.publish(topic, 1, true, payload.as_bytes());
    }
    publisher.disconnect();
    broker.stop();
    take_dir(&mut broker)
}

/// Subscribes to `filter` and returns the (topic, payload) of every retained message sent.
fn retained_under(broker: &Broker, filter: &str) -> BTreeSet<(String, String)> {
    let mut reader = RawClient::login_admin(broker.addr, 4, "retained-reader");
    reader.subscribe_ok(&[(filter, 1)]);
    reader
        .drain_publishes(Duration::from_secs(1))
        .into_iter()
        .map(|publish| (publish.topic.clone(), publish.payload_text()))
        .collect()
}

#[test]
fn corrupt_store_refused_and_repaired() {
    let dir = store_retained_and_stop(&[("corrupt/a", "before the damage")]);
    let store = dir.data_dir().join(STORE_FILE);

    let healthy = run_store_command(&dir, "check");
    assert!(healthy.success(), "store check rejects a healthy store\n{healthy}");
    assert!(healthy.stdout.contains("1 retained"), "store check of a store with 1 retained message\n{healthy}");

    let size = fs::metadata(&store).expect("store.redb missing after a graceful stop").len();
    let mut garbage = vec![0u8; usize::try_from(size).unwrap()];
    SplitMix64(test_seed("corrupt_store_refused_and_repaired")).fill(&mut garbage);
    fs::write(&store, &garbage).unwrap();

    let serve = run_serve_to_exit(&dir);
    assert!(!serve.success(), "serve started on a store full of random bytes\n{serve}");
    assert!(serve.code.is_some(), "serve died from a signal instead of exiting with an error\n{serve}");
    assert!(serve.stderr.contains(STORE_FILE), "serve's error does not name {STORE_FILE}\n{serve}");
    assert!(serve.stderr.contains("store repair"), "serve's error does not mention `store repair`\n{serve}");

    let check = run_store_command(&dir, "check");
    assert!(!check.success(), "store check accepts a store full of random bytes\n{check}");
    assert!(check.stderr.contains(STORE_FILE), "store check's error does not name {STORE_FILE}\n{check}");
    assert_eq!(fs::read(&store).unwrap(), garbage, "store check changed the damaged file");

    let repair = run_store_command(&dir, "repair");
    assert!(repair.success(), "store repair failed\n{repair}");
    let damaged = files_with_prefix(&dir.data_dir(), DAMAGED_PREFIX);
    assert_eq!(damaged.len(), 1, "expected one {DAMAGED_PREFIX}* file after the repair, found {damaged:?}\n{repair}");
    assert_eq!(fs::read(&damaged[0]).unwrap(), garbage, "{} is not the damaged file as it was", damaged[0].display());
    assert!(repair.stdout.contains(&damaged[0].display().to_string()), "store repair does not say where the damaged file went\n{repair}");

    let broker = Broker::start_in(dir, DURABLE);
    let restored = restored_counts(&broker);
    assert_eq!(restored, Restored { retained: 0, sessions: 0, queued: 0 }, "state restored from a store rebuilt out of random bytes");
    let mut publisher = RawClient::login_admin(broker.addr, 4, "after-repair");
    publisher.publish("corrupt/b", 1, true, b"after the repair");
    publisher.disconnect();
    let retained = retained_under(&broker, "corrupt/#");
    let expected: BTreeSet<(String, String)> = [("corrupt/b".to_string(), "after the repair".to_string())].into();
    assert_eq!(retained, expected, "retained messages of the repaired broker");
}

/// Finds the stored record of the retained message on `topic` and sets its format version
/// byte to an unknown value, in every copy of the page that contains it.
///
/// A stored message is a header (format version 1, QoS, RETAIN flag, 8 bytes of expiry)
/// followed by the MQTT 5.0 PUBLISH that carries it, which starts with 0x30, its remaining
/// length (one byte for a short message) and the topic with its 2-byte length.
fn break_retained_record(store: &Path, topic: &str) -> usize {
    let mut bytes = fs::read(store).unwrap();
    let mut needle = vec![0u8, u8::try_from(topic.len()).unwrap()];
    needle.extend_from_slice(topic.as_bytes());
    let mut broken = 0;
    let positions: Vec<usize> = bytes.windows(needle.len()).enumerate().filter(|(_, window)| *window == needle).map(|(i, _)| i).collect();
    for position in positions {
        // position - 2 is the PUBLISH fixed header, position - 13 the format version.
        if position < 13 || bytes[position - 2] != 0x30 {
            continue;
        }
        let header = position - 13;
        assert_eq!(
            bytes[header..header + 3],
            [1, 1, 1],
            "record of {topic} found at byte {header} but its header (version, QoS, retain) is not [1, 1, 1]: the record layout changed"
        );
        bytes[header] = 0xEE;
        broken += 1;
    }
    fs::write(store, &bytes).unwrap();
    broken
}

#[test]
fn corrupt_record_repair_keeps_readable() {
    let messages = [("repair/keep/a", "first"), ("repair/broken", "damaged"), ("repair/keep/b", "second")];
    let dir = store_retained_and_stop(&messages);
    let store = dir.data_dir().join(STORE_FILE);
    let broken = break_retained_record(&store, "repair/broken");
    assert!(broken > 0, "the record of repair/broken was not found in {}", store.display());

    let serve = run_serve_to_exit(&dir);
    assert!(!serve.success(), "serve started on a store with a corrupt record\n{serve}");
    assert!(serve.stderr.contains(STORE_FILE), "serve's error does not name {STORE_FILE}\n{serve}");
    assert!(serve.stderr.contains("store repair"), "serve's error does not mention `store repair`\n{serve}");
    assert!(serve.stderr.contains("repair/broken"), "serve's error does not name the corrupt record\n{serve}");

    let check = run_store_command(&dir, "check");
    assert!(!check.success(), "store check accepts a store with a corrupt record\n{check}");

    let repair = run_store_command(&dir, "repair");
    assert!(repair.success(), "store repair failed\n{repair}");
    assert_eq!(files_with_prefix(&dir.data_dir(), DAMAGED_PREFIX).len(), 1, "damaged store not kept\n{repair}");
    assert!(repair.stdout.contains("kept 2 retained messages"), "store repair should keep the 2 readable retained messages\n{repair}");

    let broker = Broker::start_in(dir, DURABLE);
    let restored = restored_counts(&broker);
    assert_eq!(restored.retained, 2, "retained messages after the repair: {restored:?}");
    let retained = retained_under(&broker, "repair/#");
    let expected: BTreeSet<(String, String)> =
        [("repair/keep/a", "first"), ("repair/keep/b", "second")].iter().map(|(t, p)| (t.to_string(), p.to_string())).collect();
    assert_eq!(retained, expected, "retained messages kept by the repair");
}

// ---------------------------------------------------------------------------------------
// 5. Relaxed mode and 6. persistence turned off
// ---------------------------------------------------------------------------------------

#[test]
fn relaxed_mode_restores_after_graceful_stop() {
    let config = "[persistence]\nenabled = true\nmode = \"relaxed\"\nrelaxed_interval_ms = 1000\n";
    let broker = Broker::start(config);
    let opened = broker.wait_for_log("store opened", Duration::from_secs(5));
    assert!(opened.contains("Relaxed"), "store not opened in relaxed mode: {opened}");

    let options = ConnectOptions::admin(4, "relaxed-sink").clean(false);
    let mut subscriber = RawClient::login(broker.addr, &options);
    subscriber.subscribe_ok(&[("relaxed/queue", 1)]);
    subscriber.disconnect();
    let mut publisher = RawClient::login_admin(broker.addr, 4, "relaxed-publisher");
    publisher.publish("relaxed/retained", 1, true, b"kept over a restart");
    publisher.publish("relaxed/queue", 1, false, b"queued over a restart");
    publisher.disconnect();

    // Graceful stop right away, well inside the 1 s write interval: the stop must write it out.
    let broker = restart(broker, Stop::Graceful, config);
    let restored = restored_counts(&broker);
    assert_eq!(restored, Restored { retained: 1, sessions: 1, queued: 1 }, "state restored in relaxed mode");

    let retained = retained_under(&broker, "relaxed/#");
    let expected: BTreeSet<(String, String)> = [("relaxed/retained".to_string(), "kept over a restart".to_string())].into();
    assert_eq!(retained, expected, "retained messages after a graceful restart in relaxed mode");

    let mut subscriber = reconnect(&broker, &options, "relaxed mode");
    let publishes = subscriber.expect_publishes(1, Duration::from_secs(5));
    assert_eq!(publishes[0].topic, "relaxed/queue");
    assert_eq!(publishes[0].payload_text(), "queued over a restart");
    let extra = subscriber.drain_publishes(Duration::from_millis(500));
    assert!(extra.is_empty(), "deliveries beyond the one queued message: {extra:?}");
}

#[test]
fn persistence_disabled_keeps_nothing() {
    let config = "[persistence]\nenabled = false\n";
    let broker = Broker::start(config);
    broker.wait_for_log("persistence is off", Duration::from_secs(5));

    let mut publisher = RawClient::login_admin(broker.addr, 4, "volatile-publisher");
    publisher.publish("volatile/retained", 1, true, b"in memory only");
    publisher.disconnect();
    let before = retained_under(&broker, "volatile/#");
    let expected: BTreeSet<(String, String)> = [("volatile/retained".to_string(), "in memory only".to_string())].into();
    assert_eq!(before, expected, "retained message before the restart (the broker must keep it while running)");
    let store_files = files_with_prefix(&broker.data_dir(), "store");
    assert!(store_files.is_empty(), "store files created with persistence off: {store_files:?}");

    let broker = restart(broker, Stop::Graceful, config);
    let store_files = files_with_prefix(&broker.data_dir(), "store");
    assert!(store_files.is_empty(), "store files created with persistence off: {store_files:?}");
    assert!(!broker.has_log_from(0, &[RESTORED_LOG]), "broker restored state with persistence off:\n{}", broker.log_tail());
    let after = retained_under(&broker, "volatile/#");
    assert!(after.is_empty(), "retained messages survived a restart with persistence off: {after:?}");
}
