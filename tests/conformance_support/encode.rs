//! Packet encoders that write whatever bytes a test gives, including what
//! the specification forbids: invalid UTF-8, reserved flag bits, duplicated properties.
//!
//! Layouts follow MQTT 3.1.1 (OASIS, 2014) and MQTT 5.0 (OASIS, 2019), sections 2 and 3.

/// First bytes (packet type and flags) of well-formed packets.
pub mod first {
    pub const CONNECT: u8 = 0x10;
    pub const CONNACK: u8 = 0x20;
    pub const PUBLISH: u8 = 0x30;
    pub const PUBACK: u8 = 0x40;
    pub const PUBREC: u8 = 0x50;
    pub const PUBREL: u8 = 0x62;
    pub const PUBCOMP: u8 = 0x70;
    pub const SUBSCRIBE: u8 = 0x82;
    pub const SUBACK: u8 = 0x90;
    pub const UNSUBSCRIBE: u8 = 0xA2;
    pub const UNSUBACK: u8 = 0xB0;
    pub const PINGREQ: u8 = 0xC0;
    pub const PINGRESP: u8 = 0xD0;
    pub const DISCONNECT: u8 = 0xE0;
    pub const AUTH: u8 = 0xF0;
}

/// MQTT 5.0 property identifiers (section 2.2.2.2).
pub mod prop {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// MQTT 5.0 reason codes the tests expect (section 2.4).
pub mod reason {
    pub const SUCCESS: u8 = 0x00;
    pub const GRANTED_QOS_1: u8 = 0x01;
    pub const GRANTED_QOS_2: u8 = 0x02;
    pub const DISCONNECT_WITH_WILL: u8 = 0x04;
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const UNSPECIFIED_ERROR: u8 = 0x80;
    pub const MALFORMED_PACKET: u8 = 0x81;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    pub const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
    pub const BAD_USERNAME_OR_PASSWORD: u8 = 0x86;
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
}

/// Encodes a Variable Byte Integer (section 1.5.5 of MQTT 5.0, 2.2.3 of 3.1.1).
pub fn varint(mut value: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4);
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            return out;
        }
    }
}

/// Frames `body` behind `first_byte` and its Remaining Length.
pub fn packet(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// The variable header and payload of a packet, built field by field.
#[derive(Clone, Debug, Default)]
pub struct Body {
    pub bytes: Vec<u8>,
}

impl Body {
    pub fn new() -> Body {
        Body::default()
    }

    pub fn u8(mut self, value: u8) -> Body {
        self.bytes.push(value);
        self
    }

    pub fn u16(mut self, value: u16) -> Body {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// Appends a length-prefixed field; `bytes` may be invalid UTF-8 on purpose.
    pub fn string(mut self, bytes: &[u8]) -> Body {
        let length = u16::try_from(bytes.len()).expect("field longer than 65535 bytes");
        self.bytes.extend_from_slice(&length.to_be_bytes());
        self.bytes.extend_from_slice(bytes);
        self
    }

    pub fn str(self, text: &str) -> Body {
        self.string(text.as_bytes())
    }

    /// Appends a property block: its length, then the properties.
    pub fn props(mut self, props: &Props) -> Body {
        self.bytes.extend(varint(props.bytes.len()));
        self.bytes.extend_from_slice(&props.bytes);
        self
    }

    pub fn raw(mut self, bytes: &[u8]) -> Body {
        self.bytes.extend_from_slice(bytes);
        self
    }

    pub fn packet(&self, first_byte: u8) -> Vec<u8> {
        packet(first_byte, &self.bytes)
    }
}

/// MQTT 5.0 properties in the order they are added, duplicates included.
#[derive(Clone, Debug, Default)]
pub struct Props {
    pub bytes: Vec<u8>,
}

impl Props {
    pub fn new() -> Props {
        Props::default()
    }

    pub fn byte(mut self, id: u8, value: u8) -> Props {
        self.bytes.extend_from_slice(&[id, value]);
        self
    }

    pub fn two(mut self, id: u8, value: u16) -> Props {
        self.bytes.push(id);
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn four(mut self, id: u8, value: u32) -> Props {
        self.bytes.push(id);
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn varint(mut self, id: u8, value: usize) -> Props {
        self.bytes.push(id);
        self.bytes.extend(varint(value));
        self
    }

    pub fn string(mut self, id: u8, bytes: &[u8]) -> Props {
        self.bytes.push(id);
        self.bytes = Body { bytes: self.bytes }.string(bytes).bytes;
        self
    }

    pub fn str(self, id: u8, text: &str) -> Props {
        self.string(id, text.as_bytes())
    }

    pub fn user(mut self, key: &str, value: &str) -> Props {
        self.bytes.push(prop::USER_PROPERTY);
        self.bytes = Body { bytes: self.bytes }.str(key).str(value).bytes;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Will message of a [`Connect`].
#[derive(Clone, Debug)]
pub struct WillSpec {
    pub topic: Vec<u8>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5.0 will properties.
    pub props: Props,
}

/// A CONNECT whose every field, flag and property a test can set.
#[derive(Clone, Debug)]
pub struct Connect {
    pub protocol_name: Vec<u8>,
    pub level: u8,
    pub clean: bool,
    pub keep_alive: u16,
    /// MQTT 5.0 CONNECT properties.
    pub props: Props,
    pub client_id: Vec<u8>,
    pub will: Option<WillSpec>,
    pub username: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
    /// Sets the Connect Flags byte as given instead of deriving it from the fields.
    pub flags_override: Option<u8>,
}

impl Connect {
    /// MQTT 3.1.1 CONNECT, clean session, keep alive 60 s, no credentials.
    pub fn v311(client_id: &str) -> Connect {
        Connect {
            protocol_name: b"MQTT".to_vec(),
            level: 4,
            clean: true,
            keep_alive: 60,
            props: Props::new(),
            client_id: client_id.as_bytes().to_vec(),
            will: None,
            username: None,
            password: None,
            flags_override: None,
        }
    }

    /// MQTT 5.0 CONNECT, clean start, keep alive 60 s, no properties, no credentials.
    pub fn v5(client_id: &str) -> Connect {
        Connect { level: 5, ..Connect::v311(client_id) }
    }

    pub fn for_level(level: u8, client_id: &str) -> Connect {
        match level {
            5 => Connect::v5(client_id),
            _ => Connect::v311(client_id),
        }
    }

    pub fn clean(mut self, clean: bool) -> Connect {
        self.clean = clean;
        self
    }

    pub fn keep_alive(mut self, seconds: u16) -> Connect {
        self.keep_alive = seconds;
        self
    }

    pub fn props(mut self, props: Props) -> Connect {
        self.props = props;
        self
    }

    pub fn will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Connect {
        self.will = Some(WillSpec {
            topic: topic.as_bytes().to_vec(),
            payload: payload.to_vec(),
            qos,
            retain,
            props: Props::new(),
        });
        self
    }

    pub fn will_props(mut self, props: Props) -> Connect {
        self.will.as_mut().expect("will() before will_props()").props = props;
        self
    }

    pub fn username(mut self, username: &str) -> Connect {
        self.username = Some(username.as_bytes().to_vec());
        self
    }

    pub fn password(mut self, password: &[u8]) -> Connect {
        self.password = Some(password.to_vec());
        self
    }

    pub fn flags(mut self, flags: u8) -> Connect {
        self.flags_override = Some(flags);
        self
    }

    fn derived_flags(&self) -> u8 {
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
        flags
    }

    pub fn encode(&self) -> Vec<u8> {
        let flags = self.flags_override.unwrap_or_else(|| self.derived_flags());
        let mut body = Body::new().string(&self.protocol_name).u8(self.level).u8(flags).u16(self.keep_alive);
        if self.level == 5 {
            body = body.props(&self.props);
        }
        body = body.string(&self.client_id);
        if let Some(will) = &self.will {
            if self.level == 5 {
                body = body.props(&will.props);
            }
            body = body.string(&will.topic).string(&will.payload);
        }
        if let Some(username) = &self.username {
            body = body.string(username);
        }
        if let Some(password) = &self.password {
            body = body.string(password);
        }
        body.packet(first::CONNECT)
    }
}

/// Encodes a PUBLISH; `packet_id` is written only for QoS 1 and 2, `props` only for 5.0.
pub fn publish(level: u8, topic: &[u8], qos: u8, retain: bool, packet_id: u16, props: &Props, payload: &[u8]) -> Vec<u8> {
    let mut body = Body::new().string(topic);
    if qos > 0 {
        body = body.u16(packet_id);
    }
    if level == 5 {
        body = body.props(props);
    }
    body = body.raw(payload);
    body.packet(first::PUBLISH | (qos << 1) | u8::from(retain))
}

/// Encodes a SUBSCRIBE with one `(topic filter, subscription options byte)` per entry.
pub fn subscribe(level: u8, packet_id: u16, props: &Props, entries: &[(&str, u8)]) -> Vec<u8> {
    let mut body = Body::new().u16(packet_id);
    if level == 5 {
        body = body.props(props);
    }
    for (filter, options) in entries {
        body = body.str(filter).u8(*options);
    }
    body.packet(first::SUBSCRIBE)
}

/// Encodes an UNSUBSCRIBE of `filters`.
pub fn unsubscribe(level: u8, packet_id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = Body::new().u16(packet_id);
    if level == 5 {
        body = body.props(&Props::new());
    }
    for filter in filters {
        body = body.str(filter);
    }
    body.packet(first::UNSUBSCRIBE)
}

/// Encodes PUBACK, PUBREC, PUBREL or PUBCOMP with only a packet id (reason code 0 in 5.0).
pub fn ack(first_byte: u8, packet_id: u16) -> Vec<u8> {
    packet(first_byte, &packet_id.to_be_bytes())
}

/// Subscription options byte of MQTT 5.0 (section 3.8.3.1).
pub fn options(qos: u8, no_local: bool, retain_as_published: bool, retain_handling: u8) -> u8 {
    qos | (u8::from(no_local) << 2) | (u8::from(retain_as_published) << 3) | (retain_handling << 4)
}

/// Formats bytes as space-separated hex, for assertion messages.
pub fn hex(bytes: &[u8]) -> String {
    const SHOWN: usize = 64;
    let mut text: Vec<String> = bytes.iter().take(SHOWN).map(|byte| format!("{byte:02x}")).collect();
    if bytes.len() > SHOWN {
        text.push(format!("... ({} bytes)", bytes.len()));
    }
    text.join(" ")
}
