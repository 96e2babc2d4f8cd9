//! Checks on the bytes of each packet that the codec does not make. They run before the
//! codec decodes the packet and cover packet types only a server sends, reserved flag bits,
//! string encoding, which property may appear in which packet, subscription options, and
//! topic aliases.
//!
//! A failed check is a [`Violation`], which names the MQTT 5.0 reason code of the
//! DISCONNECT (or CONNACK) sent before the close. MQTT 3.1.1 has no such codes: there the
//! connection closes without a reply (MQTT-4.8.0-1).

use std::fmt;

use mqtt_protocol_core::mqtt::result_code::DisconnectReasonCode;

/// Longest Remaining Length field, in bytes (MQTT 3.1.1 section 2.2.3).
const MAX_LENGTH_BYTES: usize = 4;

/// Largest Remaining Length those 4 bytes encode.
pub const MAX_REMAINING_LENGTH: u32 = 268_435_455;

/// Packet types, from the high nibble of the first byte.
mod kind {
    pub const RESERVED: u8 = 0;
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
    pub const AUTH: u8 = 15;
}

/// What makes a packet unacceptable, which decides the reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// The bytes do not follow the packet format: reason 0x81.
    Malformed,
    /// Well formed, but forbidden at this point or with these values: reason 0x82.
    ProtocolError,
    /// Topic Alias 0 or above the maximum the broker announced: reason 0x94.
    TopicAliasInvalid,
    /// Larger than the maximum packet size: reason 0x95.
    PacketTooLarge,
    /// CONNECT names an Authentication Method the broker does not support: reason 0x8C.
    BadAuthenticationMethod,
    /// CONNECT requests a protocol level the broker does not speak: return code 0x01.
    UnsupportedProtocolVersion,
}

/// A packet that ends the connection, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub detail: String,
}

impl Violation {
    fn malformed(detail: impl Into<String>) -> Violation {
        Violation { kind: ViolationKind::Malformed, detail: detail.into() }
    }

    fn protocol(detail: impl Into<String>) -> Violation {
        Violation { kind: ViolationKind::ProtocolError, detail: detail.into() }
    }

    /// Reason code of the DISCONNECT an MQTT 5.0 client gets for this violation.
    pub fn disconnect_reason(&self) -> DisconnectReasonCode {
        match self.kind {
            ViolationKind::Malformed => DisconnectReasonCode::MalformedPacket,
            ViolationKind::ProtocolError
            | ViolationKind::BadAuthenticationMethod
            | ViolationKind::UnsupportedProtocolVersion => DisconnectReasonCode::ProtocolError,
            ViolationKind::TopicAliasInvalid => DisconnectReasonCode::TopicAliasInvalid,
            ViolationKind::PacketTooLarge => DisconnectReasonCode::PacketTooLarge,
        }
    }

    /// Reason code of the CONNACK an MQTT 5.0 client gets when its CONNECT has this violation.
    pub fn connack_reason(&self) -> u8 {
        match self.kind {
            ViolationKind::Malformed => 0x81,
            ViolationKind::ProtocolError => 0x82,
            ViolationKind::UnsupportedProtocolVersion => 0x84,
            ViolationKind::BadAuthenticationMethod => 0x8C,
            ViolationKind::PacketTooLarge => 0x95,
            ViolationKind::TopicAliasInvalid => 0x82,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ViolationKind::Malformed => "malformed packet",
            ViolationKind::ProtocolError => "protocol error",
            ViolationKind::TopicAliasInvalid => "invalid topic alias",
            ViolationKind::PacketTooLarge => "packet too large",
            ViolationKind::BadAuthenticationMethod => "unsupported authentication method",
            ViolationKind::UnsupportedProtocolVersion => "unsupported protocol version",
        };
        write!(f, "{kind}: {}", self.detail)
    }
}

/// Decodes a Remaining Length at the start of `bytes`; returns (value, bytes used), or None
/// while more bytes are needed.
pub fn decode_remaining_length(bytes: &[u8]) -> Result<Option<(usize, usize)>, Violation> {
    let mut value = 0usize;
    for (index, byte) in bytes.iter().take(MAX_LENGTH_BYTES).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((value, index + 1)));
        }
    }
    if bytes.len() >= MAX_LENGTH_BYTES {
        return Err(Violation::malformed("Remaining Length longer than 4 bytes"));
    }
    Ok(None)
}

/// Returns the total length of the packet at the start of `buf` once all of it is there.
/// A packet announced larger than `max_packet_size` is refused before its body arrives.
pub fn frame_length(buf: &[u8], max_packet_size: usize) -> Result<Option<usize>, Violation> {
    if buf.is_empty() {
        return Ok(None);
    }
    let Some((remaining, length_bytes)) = decode_remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + length_bytes + remaining;
    if total > max_packet_size {
        return Err(Violation {
            kind: ViolationKind::PacketTooLarge,
            detail: format!("packet of {total} bytes is over the maximum packet size {max_packet_size}"),
        });
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Reads the fields of one packet body, failing with a malformed-packet violation on
/// truncation.
struct Reader<'a> {
    bytes: &'a [u8],
    packet: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], packet: &'static str) -> Reader<'a> {
        Reader { bytes, packet }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, count: usize, field: &str) -> Result<&'a [u8], Violation> {
        if self.bytes.len() < count {
            return Err(Violation::malformed(format!("{} ends inside its {field}", self.packet)));
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &str) -> Result<u8, Violation> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &str) -> Result<u16, Violation> {
        let bytes = self.take(2, field)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self, field: &str) -> Result<u32, Violation> {
        let bytes = self.take(4, field)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn varint(&mut self, field: &str) -> Result<u32, Violation> {
        match decode_remaining_length(self.bytes) {
            Ok(Some((value, used))) => {
                self.bytes = &self.bytes[used..];
                Ok(value as u32)
            }
            Ok(None) | Err(_) => Err(Violation::malformed(format!("{} has an invalid variable byte integer in its {field}", self.packet))),
        }
    }

    fn binary(&mut self, field: &str) -> Result<&'a [u8], Violation> {
        let length = self.u16(field)?;
        self.take(usize::from(length), field)
    }

    /// Reads a UTF-8 string: well formed (MQTT-1.5.3-1, MQTT-1.5.4-1) and without U+0000
    /// (MQTT-1.5.3-2, MQTT-1.5.4-2).
    fn string(&mut self, field: &str) -> Result<&'a str, Violation> {
        let bytes = self.binary(field)?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Violation::malformed(format!("{} {field} is not well-formed UTF-8", self.packet)))?;
        if text.contains('\0') {
            return Err(Violation::malformed(format!("{} {field} contains U+0000", self.packet)));
        }
        Ok(text)
    }
}

/// Where a property list sits, which decides the properties allowed in it
/// (MQTT 5.0 section 2.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Connect,
    Will,
    Publish,
    /// PUBACK, PUBREC, PUBREL or PUBCOMP.
    Acknowledgement,
    Subscribe,
    Unsubscribe,
    Disconnect,
}

/// Encoding of a property value.
#[derive(Debug, Clone, Copy)]
enum ValueType {
    Byte,
    TwoBytes,
    FourBytes,
    VarInt,
    Text,
    Binary,
    TextPair,
}

/// Property identifiers the checks act on.
mod prop {
    pub const PAYLOAD_FORMAT_INDICATOR: u32 = 0x01;
    pub const RESPONSE_TOPIC: u32 = 0x08;
    pub const SUBSCRIPTION_IDENTIFIER: u32 = 0x0B;
    pub const AUTHENTICATION_METHOD: u32 = 0x15;
    pub const AUTHENTICATION_DATA: u32 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u32 = 0x17;
    pub const REQUEST_RESPONSE_INFORMATION: u32 = 0x19;
    pub const RECEIVE_MAXIMUM: u32 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u32 = 0x22;
    pub const TOPIC_ALIAS: u32 = 0x23;
    pub const USER_PROPERTY: u32 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u32 = 0x27;
}

/// Returns the name, value type and allowed places of a property a client may send.
/// Properties only a server sends are unknown here, so a client that sends one sends a
/// property that is not valid for its packet.
fn property_spec(id: u32) -> Option<(&'static str, ValueType, &'static [Place])> {
    use Place::*;
    use ValueType::*;
    let spec: (&'static str, ValueType, &'static [Place]) = match id {
        0x01 => ("Payload Format Indicator", Byte, &[Will, Publish]),
        0x02 => ("Message Expiry Interval", FourBytes, &[Will, Publish]),
        0x03 => ("Content Type", Text, &[Will, Publish]),
        0x08 => ("Response Topic", Text, &[Will, Publish]),
        0x09 => ("Correlation Data", Binary, &[Will, Publish]),
        0x0B => ("Subscription Identifier", VarInt, &[Publish, Subscribe]),
        0x11 => ("Session Expiry Interval", FourBytes, &[Connect, Disconnect]),
        0x15 => ("Authentication Method", Text, &[Connect]),
        0x16 => ("Authentication Data", Binary, &[Connect]),
        0x17 => ("Request Problem Information", Byte, &[Connect]),
        0x18 => ("Will Delay Interval", FourBytes, &[Will]),
        0x19 => ("Request Response Information", Byte, &[Connect]),
        0x1C => ("Server Reference", Text, &[Disconnect]),
        0x1F => ("Reason String", Text, &[Acknowledgement, Disconnect]),
        0x21 => ("Receive Maximum", TwoBytes, &[Connect]),
        0x22 => ("Topic Alias Maximum", TwoBytes, &[Connect]),
        0x23 => ("Topic Alias", TwoBytes, &[Publish]),
        0x26 => ("User Property", TextPair, &[Connect, Will, Publish, Acknowledgement, Subscribe, Unsubscribe, Disconnect]),
        0x27 => ("Maximum Packet Size", FourBytes, &[Connect]),
        _ => return None,
    };
    Some(spec)
}

/// Property values the callers act on.
#[derive(Debug, Default)]
struct PropertyFacts<'a> {
    topic_alias: Option<u16>,
    /// The bytes of a Topic Alias Maximum property of value 0 (CONNECT only).
    zero_topic_alias_maximum: Option<&'a [u8]>,
    /// The property list, after its length field.
    list: &'a [u8],
    authentication_method: Option<String>,
    authentication_data: bool,
}

/// Checks a property list: each property known and allowed at `place`, none repeated
/// except User Property, and values in range.
fn check_properties<'a>(reader: &mut Reader<'a>, place: Place) -> Result<PropertyFacts<'a>, Violation> {
    let packet = reader.packet;
    let length = reader.varint("property length")? as usize;
    let list = reader.take(length, "properties")?;
    let mut props = Reader::new(list, packet);
    let mut facts = PropertyFacts { list, ..PropertyFacts::default() };
    let mut seen: u64 = 0;
    while !props.is_empty() {
        let property_start = props.bytes;
        let id = props.varint("property identifier")?;
        let Some((name, value_type, places)) = property_spec(id) else {
            return Err(Violation::malformed(format!("{packet} carries unknown property 0x{id:02x}")));
        };
        if !places.contains(&place) {
            let where_ = if place == Place::Will { "will properties" } else { "its properties" };
            return Err(Violation::malformed(format!("{packet} carries {name} in {where_}, where MQTT 5.0 does not allow it")));
        }
        if id != prop::USER_PROPERTY {
            let bit = 1u64 << id;
            if seen & bit != 0 {
                return Err(Violation::protocol(format!("{packet} carries {name} twice")));
            }
            seen |= bit;
        }
        let numeric = match value_type {
            ValueType::Byte => u32::from(props.u8(name)?),
            ValueType::TwoBytes => u32::from(props.u16(name)?),
            ValueType::FourBytes => props.u32(name)?,
            ValueType::VarInt => props.varint(name)?,
            ValueType::Binary => {
                props.binary(name)?;
                0
            }
            ValueType::TextPair => {
                props.string(name)?;
                props.string(name)?;
                0
            }
            ValueType::Text => {
                let text = props.string(name)?;
                match id {
                    prop::RESPONSE_TOPIC if text.is_empty() || text.contains(['+', '#']) => {
                        return Err(Violation::protocol(format!("{packet} Response Topic {text:?} is not a valid topic name")));
                    }
                    prop::AUTHENTICATION_METHOD => facts.authentication_method = Some(text.to_owned()),
                    _ => {}
                }
                0
            }
        };
        match id {
            prop::PAYLOAD_FORMAT_INDICATOR | prop::REQUEST_PROBLEM_INFORMATION | prop::REQUEST_RESPONSE_INFORMATION
                if numeric > 1 =>
            {
                return Err(Violation::protocol(format!("{packet} {name} is {numeric}; it must be 0 or 1")));
            }
            prop::RECEIVE_MAXIMUM | prop::MAXIMUM_PACKET_SIZE if numeric == 0 => {
                return Err(Violation::protocol(format!("{packet} {name} is 0")));
            }
            prop::SUBSCRIPTION_IDENTIFIER if place == Place::Publish => {
                return Err(Violation::protocol(format!("{packet} from a client carries a Subscription Identifier (MQTT-3.3.4-6)")));
            }
            prop::SUBSCRIPTION_IDENTIFIER if numeric == 0 => {
                return Err(Violation::protocol(format!("{packet} Subscription Identifier is 0")));
            }
            prop::TOPIC_ALIAS => facts.topic_alias = Some(numeric as u16),
            prop::TOPIC_ALIAS_MAXIMUM if numeric == 0 => {
                let used = property_start.len() - props.bytes.len();
                facts.zero_topic_alias_maximum = Some(&property_start[..used]);
            }
            prop::AUTHENTICATION_DATA => facts.authentication_data = true,
            _ => {}
        }
    }
    Ok(facts)
}

/// Facts from a CONNECT that passed [`check_connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFacts {
    /// Protocol level: 4 (3.1.1, also for 3.1 rewritten as 3.1.1) or 5.
    pub level: u8,
    /// For an MQTT 5.0 CONNECT with a password and no username: the byte range of the
    /// password field (length prefix included) in the packet.
    pub password_without_username: Option<std::ops::Range<usize>>,
    /// For an MQTT 5.0 CONNECT with Topic Alias Maximum 0: the byte range of that property,
    /// and the range of the property length field before it.
    pub zero_topic_alias_maximum: Option<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl ConnectFacts {
    /// Returns whether [`sanitize_connect`] must rewrite the packet before the codec reads it.
    pub fn needs_rewrite(&self) -> bool {
        self.password_without_username.is_some() || self.zero_topic_alias_maximum.is_some()
    }
}

/// Checks a whole CONNECT packet, fixed header included.
pub fn check_connect(frame: &[u8]) -> Result<ConnectFacts, Violation> {
    let header_len = match decode_remaining_length(&frame[1..]) {
        Ok(Some((_, used))) => 1 + used,
        _ => return Err(Violation::malformed("CONNECT has an invalid Remaining Length")),
    };
    if frame[0] != 0x10 {
        return Err(Violation::malformed(format!("CONNECT has flags {:04b}; MQTT requires 0000", frame[0] & 0x0f)));
    }

    let mut r = Reader::new(&frame[header_len..], "CONNECT");
    let name = r.binary("protocol name")?;
    if name != b"MQTT" && name != b"MQIsdp" {
        return Err(Violation::protocol(format!("CONNECT protocol name {:?} is neither MQTT nor MQIsdp", String::from_utf8_lossy(name))));
    }
    let level = r.u8("protocol level")?;
    let expected_level = if name == b"MQIsdp" { [3, 3] } else { [4, 5] };
    if !expected_level.contains(&level) {
        return Err(Violation {
            kind: ViolationKind::UnsupportedProtocolVersion,
            detail: format!(
                "CONNECT protocol level {level} with name {}; this broker speaks 3 (MQIsdp), 4 and 5 (MQTT)",
                String::from_utf8_lossy(name)
            ),
        });
    }

    let flags = r.u8("connect flags")?;
    if flags & 0x01 != 0 {
        return Err(Violation::malformed("CONNECT reserved flag bit 0 is set (MQTT-3.1.2-3)"));
    }
    let will = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    if will_qos == 3 {
        return Err(Violation::malformed("CONNECT Will QoS is 3 (MQTT-3.1.2-14)"));
    }
    if !will && (will_qos != 0 || will_retain) {
        return Err(Violation::malformed("CONNECT sets Will QoS or Will Retain without the Will Flag (MQTT-3.1.2-13, MQTT-3.1.2-15)"));
    }
    let has_username = flags & 0x80 != 0;
    let has_password = flags & 0x40 != 0;
    let v5 = level == 5;
    if has_password && !has_username && !v5 {
        return Err(Violation::protocol("CONNECT has a password but no username (MQTT-3.1.2-22)"));
    }

    r.u16("keep alive")?;
    let length_field_start = frame.len() - r.bytes.len();
    let facts = if v5 { check_properties(&mut r, Place::Connect)? } else { PropertyFacts::default() };
    let zero_topic_alias_maximum = facts.zero_topic_alias_maximum.map(|property| {
        let start = property.as_ptr() as usize - frame.as_ptr() as usize;
        let list_start = facts.list.as_ptr() as usize - frame.as_ptr() as usize;
        (start..start + property.len(), length_field_start..list_start)
    });

    r.string("client id")?;
    if will {
        if v5 {
            check_properties(&mut r, Place::Will)?;
        }
        r.string("will topic")?;
        r.binary("will payload")?;
    }
    if has_username {
        r.string("username")?;
    }

    let mut password_without_username = None;
    if has_password {
        let start = frame.len() - r.bytes.len();
        r.binary("password")?;
        if !has_username {
            password_without_username = Some(start..frame.len() - r.bytes.len());
        }
    }
    if !r.is_empty() {
        return Err(Violation::malformed(format!("CONNECT has {} bytes after its last field", r.bytes.len())));
    }

    if let Some(method) = facts.authentication_method {
        return Err(Violation {
            kind: ViolationKind::BadAuthenticationMethod,
            detail: format!("CONNECT requests Authentication Method {method:?}; this broker supports none (username and password only)"),
        });
    }
    if facts.authentication_data {
        return Err(Violation::protocol("CONNECT has Authentication Data without an Authentication Method"));
    }
    Ok(ConnectFacts { level, password_without_username, zero_topic_alias_maximum })
}

/// Returns the protocol level byte of a CONNECT, if the packet is long enough to hold it.
pub fn connect_level(frame: &[u8]) -> Option<u8> {
    let (_, used) = decode_remaining_length(frame.get(1..)?).ok()??;
    let body = frame.get(1 + used..)?;
    let name_length = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    body.get(2 + name_length).copied()
}

/// Returns a copy of an MQTT 5.0 CONNECT that the codec accepts, for the two cases MQTT 5.0
/// allows and the codec does not:
/// - a password without a username: the password is removed, since it authenticates no one;
/// - Topic Alias Maximum 0: the property is removed, since its absence means 0 too (the
///   codec panics on 0).
pub fn sanitize_connect(frame: &[u8], facts: &ConnectFacts) -> Vec<u8> {
    let header_len = match decode_remaining_length(&frame[1..]) {
        Ok(Some((_, used))) => 1 + used,
        _ => return frame.to_vec(),
    };
    let mut body = Vec::with_capacity(frame.len());
    let mut position = header_len;
    if let Some((property, length_field)) = &facts.zero_topic_alias_maximum {
        let Ok(Some((old_length, _))) = decode_remaining_length(&frame[length_field.clone()]) else {
            return frame.to_vec();
        };
        body.extend_from_slice(&frame[position..length_field.start]);
        encode_variable_integer(old_length - property.len(), &mut body);
        body.extend_from_slice(&frame[length_field.end..property.start]);
        position = property.end;
    }
    match &facts.password_without_username {
        Some(password) => {
            body.extend_from_slice(&frame[position..password.start]);
            body.extend_from_slice(&frame[password.end..]);
            // The Connect Flags follow the protocol name (2 + 4 bytes) and the level (1 byte).
            body[7] &= !0x40;
        }
        None => body.extend_from_slice(&frame[position..]),
    }
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(frame[0]);
    encode_variable_integer(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// Appends `value` as a Variable Byte Integer, the encoding of Remaining Length.
pub(crate) fn encode_variable_integer(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            return;
        }
    }
}

/// Checks each packet of one connection after CONNECT. It remembers the topic aliases the
/// client has set, so that an alias used before it is set is refused.
#[derive(Debug)]
pub struct PacketChecker {
    v5: bool,
    topic_alias_maximum: u16,
    /// Index i is set once the client has mapped alias i to a topic.
    aliases_set: Vec<bool>,
}

impl PacketChecker {
    /// `topic_alias_maximum` is the Topic Alias Maximum the broker announced in CONNACK.
    pub fn new(v5: bool, topic_alias_maximum: u16) -> PacketChecker {
        PacketChecker { v5, topic_alias_maximum, aliases_set: Vec::new() }
    }

    /// Checks one whole packet, fixed header included, as [`frame_length`] delimited it.
    pub fn check(&mut self, frame: &[u8]) -> Result<(), Violation> {
        let first = frame[0];
        let flags = first & 0x0f;
        let header_len = match decode_remaining_length(&frame[1..]) {
            Ok(Some((_, used))) => 1 + used,
            _ => return Err(Violation::malformed("invalid Remaining Length")),
        };
        let body = &frame[header_len..];
        match first >> 4 {
            kind::PUBLISH => self.check_publish(flags, body),
            kind::PUBACK => self.check_acknowledgement("PUBACK", flags, 0, body),
            kind::PUBREC => self.check_acknowledgement("PUBREC", flags, 0, body),
            kind::PUBREL => self.check_acknowledgement("PUBREL", flags, 2, body),
            kind::PUBCOMP => self.check_acknowledgement("PUBCOMP", flags, 0, body),
            kind::SUBSCRIBE => self.check_subscribe(flags, body),
            kind::UNSUBSCRIBE => self.check_unsubscribe(flags, body),
            kind::PINGREQ => {
                expect_flags("PINGREQ", flags, 0)?;
                if !body.is_empty() {
                    return Err(Violation::malformed("PINGREQ has a body"));
                }
                Ok(())
            }
            kind::DISCONNECT => self.check_disconnect(flags, body),
            kind::CONNECT => Err(Violation::protocol("second CONNECT on one connection (MQTT-3.1.0-2)")),
            kind::CONNACK | kind::SUBACK | kind::UNSUBACK | kind::PINGRESP => {
                let name = ["", "", "CONNACK", "", "", "", "", "", "", "SUBACK", "", "UNSUBACK", "", "PINGRESP"][usize::from(first >> 4)];
                Err(Violation::protocol(format!("client sent {name}, which only a server sends")))
            }
            kind::AUTH if self.v5 => {
                expect_flags("AUTH", flags, 0)?;
                Err(Violation::protocol("AUTH from a client whose CONNECT had no Authentication Method"))
            }
            kind::AUTH => Err(Violation::malformed("packet type 15 (AUTH) does not exist before MQTT 5.0")),
            kind::RESERVED if self.v5 => Err(Violation::protocol("packet type 0 is reserved")),
            _ => Err(Violation::malformed("packet type 0 is reserved")),
        }
    }

    fn check_publish(&mut self, flags: u8, body: &[u8]) -> Result<(), Violation> {
        let qos = (flags >> 1) & 0x03;
        if qos == 3 {
            return Err(Violation::malformed("PUBLISH with QoS 3 (MQTT-3.3.1-4)"));
        }
        if qos == 0 && flags & 0x08 != 0 {
            return Err(Violation::malformed("PUBLISH at QoS 0 with DUP set (MQTT-3.3.1-2)"));
        }
        let mut r = Reader::new(body, "PUBLISH");
        let topic = r.string("topic name")?;
        if qos > 0 && r.u16("packet identifier")? == 0 {
            return Err(Violation::protocol("PUBLISH with packet identifier 0 (MQTT-2.3.1-1)"));
        }
        if topic.contains(['+', '#']) {
            return Err(Violation::protocol(format!("PUBLISH topic {topic:?} contains a wildcard (MQTT-3.3.2-2)")));
        }
        if !self.v5 {
            if topic.is_empty() {
                return Err(Violation::protocol("PUBLISH with an empty topic name (MQTT-4.7.3-1)"));
            }
            return Ok(());
        }
        let facts = check_properties(&mut r, Place::Publish)?;
        match facts.topic_alias {
            None if topic.is_empty() => Err(Violation::protocol("PUBLISH with an empty topic name and no Topic Alias")),
            None => Ok(()),
            Some(alias) if alias == 0 || alias > self.topic_alias_maximum => Err(Violation {
                kind: ViolationKind::TopicAliasInvalid,
                detail: format!("PUBLISH Topic Alias {alias}; the broker allows 1 to {}", self.topic_alias_maximum),
            }),
            Some(alias) => {
                let index = usize::from(alias);
                if topic.is_empty() {
                    if !self.aliases_set.get(index).copied().unwrap_or(false) {
                        return Err(Violation::protocol(format!("PUBLISH uses Topic Alias {alias} before setting it")));
                    }
                } else {
                    if self.aliases_set.len() <= index {
                        self.aliases_set.resize(index + 1, false);
                    }
                    self.aliases_set[index] = true;
                }
                Ok(())
            }
        }
    }

    fn check_acknowledgement(&self, name: &'static str, flags: u8, expected_flags: u8, body: &[u8]) -> Result<(), Violation> {
        expect_flags(name, flags, expected_flags)?;
        let mut r = Reader::new(body, name);
        r.u16("packet identifier")?;
        if !self.v5 {
            if !r.is_empty() {
                return Err(Violation::malformed(format!("{name} is longer than its packet identifier")));
            }
            return Ok(());
        }
        if !r.is_empty() {
            r.u8("reason code")?;
            if !r.is_empty() {
                check_properties(&mut r, Place::Acknowledgement)?;
            }
        }
        if !r.is_empty() {
            return Err(Violation::malformed(format!("{name} has bytes after its properties")));
        }
        Ok(())
    }

    fn check_subscribe(&self, flags: u8, body: &[u8]) -> Result<(), Violation> {
        expect_flags("SUBSCRIBE", flags, 2)?;
        let mut r = Reader::new(body, "SUBSCRIBE");
        if r.u16("packet identifier")? == 0 {
            return Err(Violation::protocol("SUBSCRIBE with packet identifier 0 (MQTT-2.3.1-1)"));
        }
        if self.v5 {
            check_properties(&mut r, Place::Subscribe)?;
        }
        if r.is_empty() {
            return Err(Violation::protocol("SUBSCRIBE with no topic filter (MQTT-3.8.3-3)"));
        }
        while !r.is_empty() {
            let filter = r.string("topic filter")?;
            let options = r.u8("subscription options")?;
            let qos = options & 0x03;
            if !self.v5 {
                if options & 0xfc != 0 || qos == 3 {
                    return Err(Violation::malformed(format!("SUBSCRIBE requested QoS byte 0x{options:02x} for {filter:?} (MQTT-3-8.3-4)")));
                }
                continue;
            }
            if options & 0xc0 != 0 {
                return Err(Violation::malformed(format!("SUBSCRIBE options 0x{options:02x} for {filter:?} set reserved bits (MQTT-3.8.3-5)")));
            }
            if qos == 3 {
                return Err(Violation::protocol(format!("SUBSCRIBE Maximum QoS 3 for {filter:?}")));
            }
            if (options >> 4) & 0x03 == 3 {
                return Err(Violation::protocol(format!("SUBSCRIBE Retain Handling 3 for {filter:?}")));
            }
            if options & 0x04 != 0 && filter.starts_with("$share/") {
                return Err(Violation::protocol(format!("SUBSCRIBE No Local on shared subscription {filter:?} (MQTT-3.8.3-4)")));
            }
        }
        Ok(())
    }

    fn check_unsubscribe(&self, flags: u8, body: &[u8]) -> Result<(), Violation> {
        expect_flags("UNSUBSCRIBE", flags, 2)?;
        let mut r = Reader::new(body, "UNSUBSCRIBE");
        if r.u16("packet identifier")? == 0 {
            return Err(Violation::protocol("UNSUBSCRIBE with packet identifier 0 (MQTT-2.3.1-1)"));
        }
        if self.v5 {
            check_properties(&mut r, Place::Unsubscribe)?;
        }
        if r.is_empty() {
            return Err(Violation::protocol("UNSUBSCRIBE with no topic filter (MQTT-3.10.3-2)"));
        }
        while !r.is_empty() {
            r.string("topic filter")?;
        }
        Ok(())
    }

    fn check_disconnect(&self, flags: u8, body: &[u8]) -> Result<(), Violation> {
        expect_flags("DISCONNECT", flags, 0)?;
        if !self.v5 {
            if !body.is_empty() {
                return Err(Violation::malformed("DISCONNECT has a body"));
            }
            return Ok(());
        }
        let mut r = Reader::new(body, "DISCONNECT");
        if !r.is_empty() {
            r.u8("reason code")?;
            if !r.is_empty() {
                check_properties(&mut r, Place::Disconnect)?;
            }
        }
        if !r.is_empty() {
            return Err(Violation::malformed("DISCONNECT has bytes after its properties"));
        }
        Ok(())
    }
}

fn expect_flags(name: &str, flags: u8, expected: u8) -> Result<(), Violation> {
    if flags == expected {
        return Ok(());
    }
    Err(Violation::malformed(format!("{name} has flags {flags:04b}; MQTT requires {expected:04b} (MQTT-2.2.2-2)")))
}

/// Returns the packet identifier of a PUBACK, PUBREC or PUBCOMP frame that passed
/// [`PacketChecker::check`], or None for any other packet.
pub fn acknowledged_packet_id(frame: &[u8]) -> Option<u16> {
    if !matches!(frame[0] >> 4, kind::PUBACK | kind::PUBREC | kind::PUBCOMP) {
        return None;
    }
    let (_, used) = decode_remaining_length(&frame[1..]).ok()??;
    let id = frame.get(1 + used..3 + used)?;
    Some(u16::from_be_bytes([id[0], id[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v5() -> PacketChecker {
        PacketChecker::new(true, 10)
    }

    #[test]
    fn remaining_length_limits() {
        assert_eq!(decode_remaining_length(&[0x00]).unwrap(), Some((0, 1)));
        assert_eq!(decode_remaining_length(&[0xff, 0xff, 0xff, 0x7f]).unwrap(), Some((268_435_455, 4)));
        assert_eq!(decode_remaining_length(&[0x80, 0x80]).unwrap(), None);
        assert_eq!(decode_remaining_length(&[0x80, 0x80, 0x80, 0x80, 0x01]).unwrap_err().kind, ViolationKind::Malformed);
        assert_eq!(frame_length(&[0x30, 0x80, 0x01], 100).unwrap_err().kind, ViolationKind::PacketTooLarge);
        assert_eq!(frame_length(&[0xc0, 0x00, 0xc0], 100).unwrap(), Some(2));
    }

    #[test]
    fn alias_must_be_set_before_use() {
        let mut checker = v5();
        // Topic "" with alias 3: unmapped.
        let unmapped = [0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x03];
        assert_eq!(checker.check(&unmapped).unwrap_err().kind, ViolationKind::ProtocolError);
        let set = [0x30, 0x07, 0x00, 0x01, b'a', 0x03, 0x23, 0x00, 0x03];
        checker.check(&set).unwrap();
        checker.check(&unmapped).unwrap();
        let zero = [0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x00];
        assert_eq!(checker.check(&zero).unwrap_err().kind, ViolationKind::TopicAliasInvalid);
    }

    #[test]
    fn duplicate_and_misplaced_properties() {
        let mut checker = v5();
        // PUBLISH "a" with Session Expiry Interval: not allowed there.
        let misplaced = [0x30, 0x09, 0x00, 0x01, b'a', 0x05, 0x11, 0, 0, 0, 1];
        assert_eq!(checker.check(&misplaced).unwrap_err().kind, ViolationKind::Malformed);
        // SUBSCRIBE with two Subscription Identifiers.
        let twice = [0x82, 0x0a, 0x00, 0x01, 0x04, 0x0b, 0x01, 0x0b, 0x02, 0x00, 0x01, b'a', 0x00];
        assert_eq!(checker.check(&twice[..12]).unwrap_err().kind, ViolationKind::ProtocolError);
    }

    #[test]
    fn connect_password_without_username() {
        let mut v311 = vec![0x10, 0x00, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x42, 0x00, 0x3c, 0x00, 0x01, b'c', 0x00, 0x02, b'p', b'w'];
        v311[1] = (v311.len() - 2) as u8;
        assert_eq!(check_connect(&v311).unwrap_err().kind, ViolationKind::ProtocolError);
        let mut v5 = vec![0x10, 0x00, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x42, 0x00, 0x3c, 0x00, 0x00, 0x01, b'c', 0x00, 0x02, b'p', b'w'];
        v5[1] = (v5.len() - 2) as u8;
        let facts = check_connect(&v5).unwrap();
        assert!(facts.password_without_username.is_some());
        let stripped = sanitize_connect(&v5, &facts);
        assert_eq!(stripped[9], 0x02);
        assert_eq!(usize::from(stripped[1]), stripped.len() - 2);
        assert!(!check_connect(&stripped).unwrap().needs_rewrite());
    }

    #[test]
    fn connect_topic_alias_maximum_zero_removed() {
        // Properties: Receive Maximum 10, Topic Alias Maximum 0, Session Expiry Interval 5.
        let props = [0x21, 0x00, 0x0a, 0x22, 0x00, 0x00, 0x11, 0x00, 0x00, 0x00, 0x05];
        let mut connect = vec![0x10, 0x00, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3c, props.len() as u8];
        connect.extend_from_slice(&props);
        connect.extend_from_slice(&[0x00, 0x01, b'c']);
        connect[1] = (connect.len() - 2) as u8;
        let facts = check_connect(&connect).unwrap();
        assert!(facts.zero_topic_alias_maximum.is_some());
        let rewritten = sanitize_connect(&connect, &facts);
        let mut expected = connect.clone();
        expected.drain(16..19);
        expected[1] -= 3;
        expected[12] -= 3;
        assert_eq!(rewritten, expected);
        assert!(!check_connect(&rewritten).unwrap().needs_rewrite());
    }
}
