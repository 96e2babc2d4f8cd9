//! Byte-level conformance harness. [`Wire`] writes exactly the bytes a test gives and
//! returns each reply packet whole. The checks every conformance test shares are here too:
//! the exact reply, the close that must follow forbidden input, the WARN log line that
//! names the client, and a broker that neither panicked nor logged an ERROR.
//!
//! A test crate that uses this module declares `mod common;` before `mod conformance_support;`.
//!
//! Where MQTT leaves the server a choice, the tests expect what Mosquitto 2.0.11 (the
//! Debian package, probed by hand with the same packets) does, and their comments say so.
//! Malformed input or a protocol error from an MQTT 3.1.1 client closes the connection with
//! no reply (MQTT-4.8.0-1). For an MQTT 5.0 client the broker first sends CONNACK (for an
//! error in CONNECT) or DISCONNECT (for any other packet) with the reason code of section
//! 4.13 (MQTT-4.13.1-1).

#![allow(dead_code)]

pub mod decode;
pub mod encode;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::common::Broker;

#[allow(unused_imports)]
pub use decode::{find, find_all, Connack, Frame, Property, Publish, Reply, Value};
#[allow(unused_imports)]
pub use encode::{first, hex, prop, reason, Body, Connect, Props};

/// Maximum wait for one reply or for the broker to close a connection.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a test waits to be sure that nothing arrives.
pub const QUIET: Duration = Duration::from_millis(500);

/// Settings of every conformance broker: anonymous clients on `lan`, so that no test pays
/// for a password hash, and no TLS or WebSocket listener.
const CONFORMANCE_CONFIG: &str = r#"
[listeners.lan]
allow_anonymous = true

[listeners.tls]
enabled = false

[listeners.ws]
enabled = false
"#;

/// Starts a broker with the conformance settings and `extra` merged over them.
pub fn start_broker(extra: &str) -> Broker {
    let mut config: toml::Table = CONFORMANCE_CONFIG.parse().expect("conformance configuration is invalid TOML");
    let overlay: toml::Table = extra.parse().unwrap_or_else(|error| panic!("invalid TOML in extra: {error}\n{extra}"));
    merge(&mut config, overlay);
    Broker::start(&toml::to_string(&config).expect("failed to serialize the configuration"))
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => merge(base_table, overlay_table),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Why [`Wire::read`] returned no packet.
#[derive(Debug)]
pub enum ReadError {
    Timeout,
    /// End of file or reset: the broker closed the connection.
    Closed,
    Io(io::Error),
}

/// A TCP connection to the broker that sends raw bytes and returns whole packets.
pub struct Wire {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Protocol level of the CONNECT this connection sent (4 or 5), for decoding.
    pub level: u8,
    /// Client id sent in CONNECT, to find the connection's log lines.
    pub client_id: String,
}

impl Wire {
    /// Opens a TCP connection without sending anything.
    pub fn open(broker: &Broker) -> Wire {
        let stream = TcpStream::connect_timeout(&broker.addr, REPLY_TIMEOUT)
            .unwrap_or_else(|error| panic!("TCP connect to {} failed: {error}", broker.addr));
        stream.set_nodelay(true).unwrap();
        Wire { stream, buffer: Vec::new(), level: 4, client_id: String::new() }
    }

    /// Opens a connection and sends `connect`; the reply is left for the caller.
    pub fn send_connect(broker: &Broker, connect: &Connect) -> Wire {
        let mut wire = Wire::open(broker);
        wire.level = connect.level;
        wire.client_id = String::from_utf8_lossy(&connect.client_id).into_owned();
        wire.send(&connect.encode());
        wire
    }

    /// Connects with `connect` and asserts a successful CONNACK; returns its properties.
    pub fn connect_ok(broker: &Broker, connect: &Connect) -> (Wire, Connack) {
        let mut wire = Wire::send_connect(broker, connect);
        let frame = wire.expect_frame("CONNACK");
        let connack = frame.connack(connect.level).unwrap_or_else(|error| panic!("bad CONNACK: {error}"));
        assert_eq!(connack.code, 0, "CONNACK refused client id {:?}: {frame:?}", wire.client_id);
        if let Some(Value::Text(assigned)) = find(&connack.props, prop::ASSIGNED_CLIENT_IDENTIFIER) {
            wire.client_id = assigned.clone();
        }
        (wire, connack)
    }

    /// Connects an MQTT 3.1.1 client with a clean session and checks the exact CONNACK.
    pub fn v311(broker: &Broker, client_id: &str) -> Wire {
        let mut wire = Wire::send_connect(broker, &Connect::v311(client_id));
        // MQTT-3.2.2-1: clean session gives Session Present 0; return code 0 accepts.
        wire.expect(&[0x20, 0x02, 0x00, 0x00]);
        wire
    }

    /// Connects an MQTT 5.0 client with a clean start and the given CONNECT properties.
    pub fn v5(broker: &Broker, client_id: &str, props: Props) -> (Wire, Connack) {
        Wire::connect_ok(broker, &Connect::v5(client_id).props(props))
    }

    /// Connects a client of protocol `level` (4 or 5) with a clean session.
    pub fn login(broker: &Broker, level: u8, client_id: &str) -> Wire {
        match level {
            5 => Wire::v5(broker, client_id, Props::new()).0,
            _ => Wire::v311(broker, client_id),
        }
    }

    /// Local address of the socket, as the broker logs it in `peer=`.
    pub fn local_addr(&self) -> String {
        self.stream.local_addr().expect("local_addr failed").to_string()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap_or_else(|error| panic!("write of [{}] failed: {error}", hex(bytes)));
    }

    /// Writes `bytes`; the error is returned because the broker may already have closed.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        self.stream.write_all(bytes)
    }

    /// Closes the sending side, so the broker reads end of file after what was sent.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Closes the socket without DISCONNECT.
    pub fn drop_connection(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Reads the next whole packet within `timeout`.
    pub fn read(&mut self, timeout: Duration) -> Result<Frame, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = self.take_buffered()? {
                return Ok(frame);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadError::Timeout);
            }
            self.stream.set_read_timeout(Some(deadline - now)).map_err(ReadError::Io)?;
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(count) => self.buffer.extend_from_slice(&chunk[..count]),
                Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(ReadError::Timeout)
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return Err(ReadError::Closed)
                }
                Err(error) => return Err(ReadError::Io(error)),
            }
        }
    }

    fn take_buffered(&mut self) -> Result<Option<Frame>, ReadError> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let mut position = 1;
        let length = match decode::read_varint(&self.buffer, &mut position) {
            Ok(length) => length,
            Err(_) if self.buffer.len() < 5 => return Ok(None),
            Err(error) => {
                panic!("the broker sent a malformed Remaining Length ({error}): [{}]", hex(&self.buffer))
            }
        };
        if self.buffer.len() < position + length {
            return Ok(None);
        }
        let bytes: Vec<u8> = self.buffer.drain(..position + length).collect();
        Ok(Some(Frame { bytes, header_len: position }))
    }

    /// Reads the next packet; panics on timeout or close, naming `what` was expected.
    pub fn expect_frame(&mut self, what: &str) -> Frame {
        match self.read(REPLY_TIMEOUT) {
            Ok(frame) => frame,
            Err(error) => panic!("waiting for {what} on client {:?}: {error:?}", self.client_id),
        }
    }

    /// Asserts that the next packet is exactly `expected`.
    pub fn expect(&mut self, expected: &[u8]) {
        let frame = self.expect_frame(&format!("[{}]", hex(expected)));
        assert_eq!(
            frame.bytes,
            expected,
            "client {:?} expected [{}], received [{}]",
            self.client_id,
            hex(expected),
            hex(&frame.bytes)
        );
    }

    /// Reads packets until the connection closes; `Err` with what came if it is still open
    /// after [`REPLY_TIMEOUT`].
    pub fn frames_until_close(&mut self) -> Result<Vec<Frame>, Vec<Frame>> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut frames = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.read(remaining) {
                Ok(frame) => frames.push(frame),
                Err(ReadError::Closed) => return Ok(frames),
                Err(ReadError::Timeout) => return Err(frames),
                Err(ReadError::Io(error)) => panic!("read failed while waiting for the close: {error}"),
            }
        }
    }

    /// Asserts that the broker closes the connection without sending anything more.
    pub fn expect_closed(&mut self) {
        match self.frames_until_close() {
            Ok(frames) => assert!(frames.is_empty(), "the broker sent {frames:?} before closing, expected nothing"),
            Err(frames) => panic!("the connection is still open after {REPLY_TIMEOUT:?}; received {frames:?}"),
        }
    }

    /// Asserts that the broker sends exactly `expected`, then closes the connection.
    pub fn expect_then_closed(&mut self, expected: &[u8]) {
        match self.frames_until_close() {
            Ok(frames) => {
                let received: Vec<&[u8]> = frames.iter().map(|frame| frame.bytes.as_slice()).collect();
                assert_eq!(received, vec![expected], "expected [{}] then the close, received {frames:?}", hex(expected));
            }
            Err(frames) => panic!("the connection is still open after {REPLY_TIMEOUT:?}; received {frames:?}"),
        }
    }

    /// Asserts that nothing arrives for `quiet` and that the connection stays open.
    pub fn expect_silence(&mut self, quiet: Duration) {
        match self.read(quiet) {
            Err(ReadError::Timeout) => {}
            Ok(frame) => panic!("expected no packet, received {frame:?}"),
            Err(error) => panic!("expected an open connection, got {error:?}"),
        }
    }

    /// Sends PINGREQ and asserts the exact PINGRESP (MQTT-3.12.4-1).
    pub fn ping(&mut self) {
        self.send(&[first::PINGREQ, 0]);
        self.expect(&[first::PINGRESP, 0]);
    }

    /// Sends DISCONNECT (reason 0) and closes the socket.
    pub fn disconnect(mut self) {
        let _ = self.try_send(&[first::DISCONNECT, 0]);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Subscribes with `entries` of (filter, options byte) and returns the SUBACK codes.
    pub fn subscribe(&mut self, packet_id: u16, entries: &[(&str, u8)]) -> Vec<u8> {
        self.subscribe_with(packet_id, &Props::new(), entries)
    }

    /// Like [`Wire::subscribe`] with SUBSCRIBE properties (5.0).
    pub fn subscribe_with(&mut self, packet_id: u16, props: &Props, entries: &[(&str, u8)]) -> Vec<u8> {
        self.send(&encode::subscribe(self.level, packet_id, props, entries));
        let frame = self.expect_frame("SUBACK");
        let (id, _, codes) = frame.sub_reply(self.level).unwrap_or_else(|error| panic!("bad SUBACK: {error}"));
        assert_eq!(frame.bytes[0], first::SUBACK, "expected SUBACK, received {frame:?}");
        assert_eq!(id, packet_id, "SUBACK packet id (MQTT-3.8.4-2): {frame:?}");
        codes
    }

    /// Subscribes and asserts that each filter got the QoS it requested.
    pub fn subscribe_ok(&mut self, packet_id: u16, entries: &[(&str, u8)]) {
        let codes = self.subscribe(packet_id, entries);
        let expected: Vec<u8> = entries.iter().map(|(_, options)| options & 3).collect();
        assert_eq!(codes, expected, "SUBACK codes for {entries:?}");
    }

    /// Publishes and completes the QoS 1 or 2 exchange, checking each acknowledgement.
    pub fn publish(&mut self, topic: &str, qos: u8, retain: bool, packet_id: u16, props: &Props, payload: &[u8]) {
        self.send(&encode::publish(self.level, topic.as_bytes(), qos, retain, packet_id, props, payload));
        match qos {
            1 => self.expect_ack(4, packet_id),
            2 => {
                self.expect_ack(5, packet_id);
                self.send(&encode::ack(first::PUBREL, packet_id));
                self.expect_ack(7, packet_id);
            }
            _ => {}
        }
    }

    /// Reads an acknowledgement of packet type `kind` for `packet_id` with a success code.
    fn expect_ack(&mut self, kind: u8, packet_id: u16) {
        let frame = self.expect_frame("acknowledgement");
        assert_eq!(frame.kind(), kind, "expected packet type {kind}, received {frame:?}");
        if self.level == 5 {
            let reply = frame.reply().unwrap_or_else(|error| panic!("bad acknowledgement: {error}"));
            assert_eq!(reply.packet_id, Some(packet_id), "acknowledgement packet id: {frame:?}");
            assert!(reply.code < 0x80, "acknowledgement with an error code: {frame:?}");
        } else {
            let expected = encode::ack(frame.bytes[0], packet_id);
            assert_eq!(frame.bytes, expected, "acknowledgement bytes");
        }
    }

    /// Reads the next packet and decodes it as PUBLISH, acknowledging QoS 1 and 2.
    pub fn expect_publish(&mut self) -> Publish {
        let frame = self.expect_frame("PUBLISH");
        let publish = frame.publish(self.level).unwrap_or_else(|error| panic!("bad PUBLISH: {error}"));
        self.acknowledge(&publish);
        publish
    }

    /// Sends PUBACK, or PUBREC then PUBCOMP after the PUBREL, for a received PUBLISH.
    pub fn acknowledge(&mut self, publish: &Publish) {
        match publish.qos {
            1 => self.send(&encode::ack(first::PUBACK, publish.packet_id)),
            2 => {
                self.send(&encode::ack(first::PUBREC, publish.packet_id));
                self.expect(&encode::ack(first::PUBREL, publish.packet_id));
                self.send(&encode::ack(first::PUBCOMP, publish.packet_id));
            }
            _ => {}
        }
    }

    /// Collects PUBLISH packets until none arrives for `quiet`, acknowledging each.
    pub fn drain_publishes(&mut self, quiet: Duration) -> Vec<Publish> {
        let mut received = Vec::new();
        loop {
            match self.read(quiet) {
                Ok(frame) => {
                    let publish = frame.publish(self.level).unwrap_or_else(|error| panic!("bad PUBLISH: {error}"));
                    self.acknowledge(&publish);
                    received.push(publish);
                }
                Err(ReadError::Timeout) => return received,
                Err(error) => panic!("connection failed while collecting PUBLISH packets: {error:?}"),
            }
            assert!(received.len() < 10_000, "more than 10,000 PUBLISH packets arrived");
        }
    }
}

/// Asserts the end that forbidden input must cause: for MQTT 3.1.1 the connection closes
/// with no reply; for 5.0 a DISCONNECT with `v5_reason` comes first.
pub fn expect_rejected(wire: &mut Wire, v5_reason: u8) {
    if wire.level == 5 {
        expect_disconnect(wire, v5_reason);
        match wire.frames_until_close() {
            Ok(frames) => assert!(frames.is_empty(), "packets after DISCONNECT: {frames:?}"),
            Err(frames) => panic!("connection still open after DISCONNECT; received {frames:?}"),
        }
    } else {
        wire.expect_closed();
    }
}

/// Reads the next packet and asserts it is an MQTT 5.0 DISCONNECT with `reason_code`.
pub fn expect_disconnect(wire: &mut Wire, reason_code: u8) -> Reply {
    let frame = match wire.read(REPLY_TIMEOUT) {
        Ok(frame) => frame,
        Err(error) => panic!("expected DISCONNECT with reason {reason_code:#04x}, got {error:?}"),
    };
    assert_eq!(frame.bytes[0], first::DISCONNECT, "expected DISCONNECT with reason {reason_code:#04x}, received {frame:?}");
    let reply = frame.reply().unwrap_or_else(|error| panic!("bad DISCONNECT: {error}"));
    assert_eq!(reply.code, reason_code, "DISCONNECT reason code, received {frame:?}");
    // MQTT 5.0 section 3.14.2.2: a server's DISCONNECT may carry only these properties;
    // Session Expiry Interval in particular is the client's alone (MQTT-3.14.2-2).
    for (id, _) in &reply.props {
        assert!(
            [prop::REASON_STRING, prop::USER_PROPERTY, prop::SERVER_REFERENCE].contains(id),
            "property {id:#04x} not allowed in a server's DISCONNECT: {frame:?}"
        );
    }
    reply
}

/// Asserts the end of a refused CONNECT: for 3.1.1 the close without reply, for 5.0 a CONNACK
/// with `v5_reason` first. Section 4.13 makes that CONNACK optional and Mosquitto 2.0.11
/// mostly omits it; the tests require it so that the client learns why.
pub fn expect_connect_rejected(wire: &mut Wire, v5_reason: u8) {
    if wire.level != 5 {
        wire.expect_closed();
        return;
    }
    let frames = match wire.frames_until_close() {
        Ok(frames) => frames,
        Err(frames) => panic!("connection still open after a forbidden CONNECT; received {frames:?}"),
    };
    assert_eq!(frames.len(), 1, "expected one CONNACK with reason {v5_reason:#04x} then the close, received {frames:?}");
    let connack = frames[0].connack(5).unwrap_or_else(|error| panic!("bad CONNACK: {error}"));
    assert_eq!(connack.code, v5_reason, "CONNACK reason code, received {:?}", frames[0]);
    assert!(!connack.session_present, "MQTT-3.2.2-6: Session Present must be 0 in a refusal");
}

/// Asserts a WARN log line, after log position `from`, that names the connection's address
/// and, when it sent one, its client id.
pub fn assert_warned(broker: &Broker, from: usize, peer: &str, client_id: &str) {
    let mut needles = vec!["WARN", peer];
    if !client_id.is_empty() {
        needles.push(client_id);
    }
    let deadline = Instant::now() + REPLY_TIMEOUT;
    while !broker.has_log_from(from, &needles) {
        assert!(
            Instant::now() < deadline,
            "no WARN line naming {needles:?} after the forbidden input\n--- broker log ---\n{}",
            broker.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that the broker never panicked nor logged at ERROR level, and still serves a
/// new client.
pub fn assert_broker_healthy(broker: &Broker) {
    let bad: Vec<String> = broker
        .stderr_lines()
        .into_iter()
        .filter(|line| line.contains("panicked") || line.contains(" ERROR "))
        .collect();
    assert!(bad.is_empty(), "the broker panicked or logged an ERROR:\n{}", bad.join("\n"));
    // A short client id, so that it passes any limits.max_client_id_len a test sets.
    let mut probe = Wire::v311(broker, "probe");
    probe.ping();
    probe.disconnect();
}

/// Sends `bytes` on an MQTT 3.1.1 or 5.0 connection that is up, then checks the whole
/// contract for forbidden input: the rejection, the WARN line with address and client id,
/// and a healthy broker.
pub fn assert_rejects(broker: &Broker, level: u8, client_id: &str, bytes: &[u8], v5_reason: u8) {
    let mut wire = Wire::login(broker, level, client_id);
    assert_rejects_on(broker, &mut wire, bytes, v5_reason);
}

/// Like [`assert_rejects`] on a connection the test has already set up.
pub fn assert_rejects_on(broker: &Broker, wire: &mut Wire, bytes: &[u8], v5_reason: u8) {
    let from = broker.log_position();
    let _ = wire.try_send(bytes);
    expect_rejected(wire, v5_reason);
    assert_warned(broker, from, &wire.local_addr(), &wire.client_id.clone());
    assert_broker_healthy(broker);
}

/// Like [`assert_rejects`] for a forbidden CONNECT, sent as the first packet.
pub fn assert_connect_rejects(broker: &Broker, connect: &Connect, v5_reason: u8) {
    let from = broker.log_position();
    let mut wire = Wire::open(broker);
    wire.level = connect.level;
    wire.client_id = String::from_utf8_lossy(&connect.client_id).into_owned();
    let _ = wire.try_send(&connect.encode());
    expect_connect_rejected(&mut wire, v5_reason);
    // Only the address is required: a CONNECT that fails to decode may end before its
    // client id (5.0 properties come first), so the broker cannot always name it.
    assert_warned(broker, from, &wire.local_addr(), "");
    assert_broker_healthy(broker);
}

/// A small deterministic pseudo-random generator (xorshift64*), so a failing input can be
/// reproduced from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Returns a number in `0..bound`.
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}
