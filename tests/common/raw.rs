//! A minimal MQTT client that writes and reads packets byte by byte, for what the real
//! clients cannot express: MQTT 3.1 CONNECT, exact CONNACK and DISCONNECT reason codes, the
//! QoS of each delivered PUBLISH, and a subscriber that never reads.
//!
//! Packet layouts follow MQTT 3.1.1 (OASIS, 2014) and MQTT 5.0 (OASIS, 2019), section 3.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{ADMIN_PASSWORD, ADMIN_USER};

/// Time limit for a reply that the broker sends at once (CONNACK, SUBACK, PUBACK ...).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const SUBACK: u8 = 9;
pub const UNSUBSCRIBE: u8 = 10;
pub const UNSUBACK: u8 = 11;
pub const PINGREQ: u8 = 12;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;

/// MQTT 5.0 property identifiers used by the tests.
pub mod property {
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
}

/// Will message of a CONNECT.
#[derive(Clone, Debug)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    /// Will Delay Interval in seconds (MQTT 5.0 only).
    pub delay_secs: Option<u32>,
}

impl Will {
    pub fn new(topic: &str, payload: &str) -> Will {
        Will { topic: topic.to_string(), payload: payload.as_bytes().to_vec(), qos: 0, retain: false, delay_secs: None }
    }
}

/// Fields of a CONNECT packet.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Protocol level: 3 (MQTT 3.1, `MQIsdp`), 4 (3.1.1) or 5 (5.0).
    pub level: u8,
    pub client_id: String,
    /// Clean Session (3.x) or Clean Start (5.0).
    pub clean: bool,
    pub keep_alive_secs: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub will: Option<Will>,
    /// Session Expiry Interval in seconds (MQTT 5.0 only).
    pub session_expiry_secs: Option<u32>,
}

impl ConnectOptions {
    /// Returns a clean-session CONNECT without credentials, keep alive 60 s.
    pub fn new(level: u8, client_id: &str) -> ConnectOptions {
        ConnectOptions {
            level,
            client_id: client_id.to_string(),
            clean: true,
            keep_alive_secs: 60,
            username: None,
            password: None,
            will: None,
            session_expiry_secs: None,
        }
    }

    /// Returns a clean-session CONNECT that logs in as the admin user.
    pub fn admin(level: u8, client_id: &str) -> ConnectOptions {
        ConnectOptions::new(level, client_id).credentials(ADMIN_USER, ADMIN_PASSWORD)
    }

    pub fn credentials(mut self, username: &str, password: &str) -> ConnectOptions {
        self.username = Some(username.to_string());
        self.password = Some(password.to_string());
        self
    }

    pub fn clean(mut self, clean: bool) -> ConnectOptions {
        self.clean = clean;
        self
    }

    pub fn keep_alive(mut self, seconds: u16) -> ConnectOptions {
        self.keep_alive_secs = seconds;
        self
    }

    pub fn will(mut self, will: Will) -> ConnectOptions {
        self.will = Some(will);
        self
    }

    pub fn session_expiry(mut self, seconds: u32) -> ConnectOptions {
        self.session_expiry_secs = Some(seconds);
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let protocol_name = if self.level == 3 { "MQIsdp" } else { "MQTT" };
        put_str(&mut body, protocol_name);
        body.push(self.level);

        let mut flags = 0u8;
        if self.username.is_some() {
            flags |= 0x80;
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos << 3);
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.clean {
            flags |= 0x02;
        }
        body.push(flags);
        body.extend_from_slice(&self.keep_alive_secs.to_be_bytes());

        if self.level == 5 {
            let mut properties = Vec::new();
            if let Some(seconds) = self.session_expiry_secs {
                properties.push(property::SESSION_EXPIRY_INTERVAL);
                properties.extend_from_slice(&seconds.to_be_bytes());
            }
            put_properties(&mut body, &properties);
        }

        put_str(&mut body, &self.client_id);
        if let Some(will) = &self.will {
            if self.level == 5 {
                let mut properties = Vec::new();
                if let Some(seconds) = will.delay_secs {
                    properties.push(property::WILL_DELAY_INTERVAL);
                    properties.extend_from_slice(&seconds.to_be_bytes());
                }
                put_properties(&mut body, &properties);
            }
            put_str(&mut body, &will.topic);
            put_binary(&mut body, &will.payload);
        }
        if let Some(username) = &self.username {
            put_str(&mut body, username);
        }
        if let Some(password) = &self.password {
            put_binary(&mut body, password.as_bytes());
        }
        frame(CONNECT << 4, &body)
    }
}

/// Encodes a PUBLISH. `packet_id` is ignored for QoS 0.
pub fn encode_publish(level: u8, topic: &str, qos: u8, retain: bool, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 8);
    put_str(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    let first = (PUBLISH << 4) | (qos << 1) | u8::from(retain);
    frame(first, &body)
}

/// Encodes a SUBSCRIBE with one entry per `(topic filter, maximum QoS)`.
pub fn encode_subscribe(level: u8, packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&packet_id.to_be_bytes());
    if level == 5 {
        body.push(0);
    }
    for (filter, qos) in filters {
        put_str(&mut body, filter);
        body.push(*qos);
    }
    frame((SUBSCRIBE << 4) | 0x02, &body)
}

/// Encodes PUBACK, PUBREC, PUBREL or PUBCOMP, which carry only a packet id here.
pub fn encode_ack(kind: u8, packet_id: u16) -> Vec<u8> {
    let flags = if kind == PUBREL { 0x02 } else { 0 };
    frame((kind << 4) | flags, &packet_id.to_be_bytes())
}

pub fn encode_pingreq() -> Vec<u8> {
    vec![PINGREQ << 4, 0]
}

/// Encodes a DISCONNECT with reason code 0 (Normal disconnection), which omits the body.
pub fn encode_disconnect() -> Vec<u8> {
    vec![DISCONNECT << 4, 0]
}

fn frame(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(body.len() + 5);
    packet.push(first_byte);
    put_varint(&mut packet, body.len());
    packet.extend_from_slice(body);
    packet
}

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

fn put_str(buffer: &mut Vec<u8>, text: &str) {
    put_binary(buffer, text.as_bytes());
}

fn put_binary(buffer: &mut Vec<u8>, data: &[u8]) {
    let length = u16::try_from(data.len()).expect("field longer than 65535 bytes");
    buffer.extend_from_slice(&length.to_be_bytes());
    buffer.extend_from_slice(data);
}

fn put_properties(buffer: &mut Vec<u8>, properties: &[u8]) {
    put_varint(buffer, properties.len());
    buffer.extend_from_slice(properties);
}

/// Reads a Variable Byte Integer at `*position`; `None` when the buffer ends first.
fn get_varint(buffer: &[u8], position: &mut usize) -> Option<usize> {
    let mut value = 0usize;
    for shift in 0..4 {
        let byte = *buffer.get(*position)?;
        *position += 1;
        value |= usize::from(byte & 0x7F) << (7 * shift);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    panic!("malformed Variable Byte Integer from the broker: more than 4 bytes");
}

/// One packet read from the broker.
#[derive(Clone)]
pub struct Packet {
    pub kind: u8,
    pub flags: u8,
    pub body: Vec<u8>,
}

impl fmt::Debug for Packet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Packet {{ type: {} ({}), flags: {:#x}, body: {:02x?} }}", type_name(self.kind), self.kind, self.flags, self.body)
    }
}

pub fn type_name(kind: u8) -> &'static str {
    match kind {
        CONNECT => "CONNECT",
        CONNACK => "CONNACK",
        PUBLISH => "PUBLISH",
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        PUBCOMP => "PUBCOMP",
        SUBSCRIBE => "SUBSCRIBE",
        SUBACK => "SUBACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBACK => "UNSUBACK",
        PINGREQ => "PINGREQ",
        PINGRESP => "PINGRESP",
        DISCONNECT => "DISCONNECT",
        15 => "AUTH",
        _ => "reserved",
    }
}

/// A property value of MQTT 5.0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropertyValue {
    Integer(u32),
    Text(String),
    Binary(Vec<u8>),
    Pair(String, String),
}

/// Decoded CONNACK.
#[derive(Clone, Debug)]
pub struct Connack {
    pub session_present: bool,
    /// Return code (3.x) or reason code (5.0).
    pub code: u8,
    pub properties: Vec<(u8, PropertyValue)>,
}

impl Connack {
    pub fn property(&self, id: u8) -> Option<&PropertyValue> {
        self.properties.iter().find(|(key, _)| *key == id).map(|(_, value)| value)
    }
}

/// Decoded PUBLISH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: u16,
    pub payload: Vec<u8>,
}

impl Publish {
    pub fn payload_text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

impl Packet {
    fn u16_at(&self, position: usize) -> u16 {
        u16::from_be_bytes([self.body[position], self.body[position + 1]])
    }

    /// Packet id of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
    pub fn packet_id(&self) -> u16 {
        self.u16_at(0)
    }

    pub fn connack(&self, level: u8) -> Connack {
        assert_eq!(self.kind, CONNACK, "expected CONNACK, got {self:?}");
        assert!(self.body.len() >= 2, "CONNACK shorter than 2 bytes: {self:?}");
        let mut properties = Vec::new();
        if level == 5 && self.body.len() > 2 {
            let mut position = 2;
            properties = parse_properties(&self.body, &mut position);
        }
        Connack { session_present: self.body[0] & 0x01 == 1, code: self.body[1], properties }
    }

    pub fn publish(&self, level: u8) -> Publish {
        assert_eq!(self.kind, PUBLISH, "expected PUBLISH, got {self:?}");
        let qos = (self.flags >> 1) & 0x03;
        let topic_length = usize::from(self.u16_at(0));
        let topic = String::from_utf8_lossy(&self.body[2..2 + topic_length]).into_owned();
        let mut position = 2 + topic_length;
        let mut packet_id = 0;
        if qos > 0 {
            packet_id = self.u16_at(position);
            position += 2;
        }
        if level == 5 {
            let length = get_varint(&self.body, &mut position).expect("truncated PUBLISH properties");
            position += length;
        }
        Publish {
            topic,
            qos,
            retain: self.flags & 0x01 == 1,
            dup: self.flags & 0x08 != 0,
            packet_id,
            payload: self.body[position..].to_vec(),
        }
    }

    /// Return codes of a SUBACK, one per topic filter.
    pub fn suback_codes(&self, level: u8) -> Vec<u8> {
        assert_eq!(self.kind, SUBACK, "expected SUBACK, got {self:?}");
        let mut position = 2;
        if level == 5 {
            let length = get_varint(&self.body, &mut position).expect("truncated SUBACK properties");
            position += length;
        }
        self.body[position..].to_vec()
    }

    /// Reason code of a DISCONNECT (MQTT 5.0); an empty body means 0x00.
    pub fn disconnect_reason(&self) -> u8 {
        assert_eq!(self.kind, DISCONNECT, "expected DISCONNECT, got {self:?}");
        self.body.first().copied().unwrap_or(0)
    }
}

fn parse_properties(body: &[u8], position: &mut usize) -> Vec<(u8, PropertyValue)> {
    let length = get_varint(body, position).expect("truncated property length");
    let end = *position + length;
    let mut properties = Vec::new();
    let read_u16 = |position: &mut usize| {
        let value = u16::from_be_bytes([body[*position], body[*position + 1]]);
        *position += 2;
        value
    };
    while *position < end {
        let id = body[*position];
        *position += 1;
        let value = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                let value = body[*position];
                *position += 1;
                PropertyValue::Integer(u32::from(value))
            }
            0x13 | 0x21 | 0x22 | 0x23 => PropertyValue::Integer(u32::from(read_u16(position))),
            0x02 | 0x11 | 0x18 | 0x27 => {
                let value = u32::from_be_bytes(body[*position..*position + 4].try_into().unwrap());
                *position += 4;
                PropertyValue::Integer(value)
            }
            0x0B => PropertyValue::Integer(get_varint(body, position).expect("truncated property") as u32),
            0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => {
                let length = usize::from(read_u16(position));
                let text = String::from_utf8_lossy(&body[*position..*position + length]).into_owned();
                *position += length;
                PropertyValue::Text(text)
            }
            0x09 | 0x16 => {
                let length = usize::from(read_u16(position));
                let data = body[*position..*position + length].to_vec();
                *position += length;
                PropertyValue::Binary(data)
            }
            0x26 => {
                let key_length = usize::from(read_u16(position));
                let key = String::from_utf8_lossy(&body[*position..*position + key_length]).into_owned();
                *position += key_length;
                let value_length = usize::from(read_u16(position));
                let value = String::from_utf8_lossy(&body[*position..*position + value_length]).into_owned();
                *position += value_length;
                PropertyValue::Pair(key, value)
            }
            other => panic!("unknown MQTT 5.0 property identifier {other:#04x} in {body:02x?}"),
        };
        properties.push((id, value));
    }
    properties
}

/// Why [`RawClient::read_packet`] returned no packet.
#[derive(Debug)]
pub enum ReadError {
    Timeout,
    /// The broker closed the connection (end of file or reset).
    Closed,
    Io(io::Error),
}

/// A TCP connection speaking MQTT through hand-made packets.
pub struct RawClient {
    stream: TcpStream,
    /// Protocol level used to encode and decode packets.
    pub level: u8,
    buffer: Vec<u8>,
    /// PUBLISH packets that arrived while waiting for another packet.
    pending: VecDeque<Publish>,
    next_packet_id: u16,
}

impl RawClient {
    /// Opens a TCP connection without sending anything.
    pub fn open(addr: SocketAddr, level: u8) -> RawClient {
        let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)
            .unwrap_or_else(|error| panic!("TCP connect to {addr} failed: {error}"));
        stream.set_nodelay(true).unwrap();
        RawClient { stream, level, buffer: Vec::new(), pending: VecDeque::new(), next_packet_id: 0 }
    }

    /// Opens a connection, sends CONNECT and returns the CONNACK, whatever its code.
    pub fn connect(addr: SocketAddr, options: &ConnectOptions) -> (RawClient, Connack) {
        let mut client = RawClient::open(addr, options.level);
        client.send(&options.encode());
        let packet = client
            .read_packet(REPLY_TIMEOUT)
            .unwrap_or_else(|error| panic!("no CONNACK for client id {:?}: {error:?}", options.client_id));
        let connack = packet.connack(options.level);
        (client, connack)
    }

    /// Connects and asserts that the broker accepted the connection.
    pub fn login(addr: SocketAddr, options: &ConnectOptions) -> RawClient {
        let (client, connack) = RawClient::connect(addr, options);
        assert_eq!(connack.code, 0, "CONNACK for client id {:?} refused the connection: {connack:?}", options.client_id);
        client
    }

    /// Connects as admin with a clean session and asserts success.
    pub fn login_admin(addr: SocketAddr, level: u8, client_id: &str) -> RawClient {
        RawClient::login(addr, &ConnectOptions::admin(level, client_id))
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Returns a second handle to the socket, so that one thread can write while another reads.
    pub fn clone_stream(&self) -> TcpStream {
        self.stream.try_clone().expect("failed to clone the TCP stream")
    }

    /// Writes `bytes`, panicking on error.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap_or_else(|error| panic!("write to the broker failed: {error}"));
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        self.stream.write_all(bytes)
    }

    fn take_packet_id(&mut self) -> u16 {
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        self.next_packet_id
    }

    /// Reads the next packet, waiting at most `timeout`.
    pub fn read_packet(&mut self, timeout: Duration) -> Result<Packet, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(packet) = self.parse_buffered() {
                return Ok(packet);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadError::Timeout);
            }
            self.stream.set_read_timeout(Some(deadline - now)).map_err(ReadError::Io)?;
            let mut chunk = [0u8; 16 * 1024];
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

    fn parse_buffered(&mut self) -> Option<Packet> {
        let first = *self.buffer.first()?;
        let mut position = 1;
        let length = get_varint(&self.buffer, &mut position)?;
        if self.buffer.len() < position + length {
            return None;
        }
        let body = self.buffer[position..position + length].to_vec();
        self.buffer.drain(..position + length);
        Some(Packet { kind: first >> 4, flags: first & 0x0F, body })
    }

    /// Reads packets until `wanted` matches one; PUBLISH packets met on the way are
    /// acknowledged and kept for [`RawClient::next_publish`]. Panics on timeout or close.
    fn read_until(&mut self, what: &str, timeout: Duration, wanted: impl Fn(&Packet) -> bool) -> Packet {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let packet = self
                .read_packet(remaining)
                .unwrap_or_else(|error| panic!("waiting for {what}: {error:?}"));
            if wanted(&packet) {
                return packet;
            }
            if let Some(publish) = self.handle_incoming(&packet) {
                self.pending.push_back(publish);
            }
        }
    }

    /// Acknowledges an incoming PUBLISH or PUBREL; returns the PUBLISH, if it was one.
    fn handle_incoming(&mut self, packet: &Packet) -> Option<Publish> {
        match packet.kind {
            PUBLISH => {
                let publish = packet.publish(self.level);
                match publish.qos {
                    1 => self.send(&encode_ack(PUBACK, publish.packet_id)),
                    2 => self.send(&encode_ack(PUBREC, publish.packet_id)),
                    _ => {}
                }
                Some(publish)
            }
            PUBREL => {
                self.send(&encode_ack(PUBCOMP, packet.packet_id()));
                None
            }
            _ => None,
        }
    }

    /// Subscribes and returns the SUBACK return codes.
    pub fn subscribe(&mut self, filters: &[(&str, u8)]) -> Vec<u8> {
        let packet_id = self.take_packet_id();
        let packet = encode_subscribe(self.level, packet_id, filters);
        self.send(&packet);
        let suback = self.read_until("SUBACK", REPLY_TIMEOUT, |packet| packet.kind == SUBACK);
        assert_eq!(suback.packet_id(), packet_id, "SUBACK for the wrong packet id");
        suback.suback_codes(self.level)
    }

    /// Subscribes and asserts that every filter was granted the requested QoS.
    pub fn subscribe_ok(&mut self, filters: &[(&str, u8)]) {
        let codes = self.subscribe(filters);
        let expected: Vec<u8> = filters.iter().map(|(_, qos)| *qos).collect();
        assert_eq!(codes, expected, "SUBACK codes for {filters:?}");
    }

    /// Publishes and completes the QoS 1 or QoS 2 exchange.
    pub fn publish(&mut self, topic: &str, qos: u8, retain: bool, payload: &[u8]) {
        let packet_id = if qos > 0 { self.take_packet_id() } else { 0 };
        self.send(&encode_publish(self.level, topic, qos, retain, packet_id, payload));
        match qos {
            1 => {
                self.read_until("PUBACK", REPLY_TIMEOUT, |packet| packet.kind == PUBACK && packet.packet_id() == packet_id);
            }
            2 => {
                self.read_until("PUBREC", REPLY_TIMEOUT, |packet| packet.kind == PUBREC && packet.packet_id() == packet_id);
                self.send(&encode_ack(PUBREL, packet_id));
                self.read_until("PUBCOMP", REPLY_TIMEOUT, |packet| packet.kind == PUBCOMP && packet.packet_id() == packet_id);
            }
            _ => {}
        }
    }

    /// Waits for the next PUBLISH, acknowledging it; `None` after `timeout`. Panics when
    /// the broker closes the connection.
    pub fn next_publish(&mut self, timeout: Duration) -> Option<Publish> {
        if let Some(publish) = self.pending.pop_front() {
            return Some(publish);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.read_packet(remaining) {
                Ok(packet) => {
                    if let Some(publish) = self.handle_incoming(&packet) {
                        return Some(publish);
                    }
                }
                Err(ReadError::Timeout) => return None,
                Err(error) => panic!("connection failed while waiting for PUBLISH: {error:?}"),
            }
        }
    }

    /// Waits for exactly `count` PUBLISH packets; panics with what arrived after `timeout`.
    pub fn expect_publishes(&mut self, count: usize, timeout: Duration) -> Vec<Publish> {
        let deadline = Instant::now() + timeout;
        let mut received = Vec::new();
        while received.len() < count {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.next_publish(remaining) {
                Some(publish) => received.push(publish),
                None => panic!("received {} of {count} PUBLISH packets within {timeout:?}: {received:?}", received.len()),
            }
        }
        received
    }

    /// Collects PUBLISH packets until none arrives for `quiet`.
    pub fn drain_publishes(&mut self, quiet: Duration) -> Vec<Publish> {
        let mut received = Vec::new();
        while let Some(publish) = self.next_publish(quiet) {
            received.push(publish);
        }
        received
    }

    /// Sends PINGREQ and returns whether PINGRESP came back.
    pub fn ping(&mut self) -> bool {
        if self.try_send(&encode_pingreq()).is_err() {
            return false;
        }
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.read_packet(remaining) {
                Ok(packet) if packet.kind == PINGRESP => return true,
                Ok(packet) => {
                    if let Some(publish) = self.handle_incoming(&packet) {
                        self.pending.push_back(publish);
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Waits until the broker closes the connection; returns the packets that came first,
    /// or `Err` with them when the connection is still open after `timeout`.
    pub fn wait_for_close(&mut self, timeout: Duration) -> Result<Vec<Packet>, Vec<Packet>> {
        let deadline = Instant::now() + timeout;
        let mut packets = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.read_packet(remaining) {
                Ok(packet) => packets.push(packet),
                Err(ReadError::Closed) => return Ok(packets),
                Err(ReadError::Timeout) => return Err(packets),
                Err(ReadError::Io(error)) => panic!("read failed while waiting for the broker to close: {error}"),
            }
        }
    }

    /// Sends DISCONNECT and closes the socket.
    pub fn disconnect(mut self) {
        let _ = self.try_send(&encode_disconnect());
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Closes the socket without DISCONNECT, as a client that loses power would.
    pub fn drop_connection(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
