//! Decoding of the packets the broker sends, strict enough to catch a broker that encodes
//! them wrongly: properties must be well formed and their strings valid UTF-8.

use std::fmt;

use super::encode::{hex, prop};

/// One whole packet as received, header included.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    /// Length of the fixed header (first byte and Remaining Length).
    pub header_len: usize,
}

impl fmt::Debug for Frame {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "[{}]", hex(&self.bytes))
    }
}

/// A property value of MQTT 5.0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Byte(u8),
    Two(u16),
    Four(u32),
    Varint(u32),
    Text(String),
    Binary(Vec<u8>),
    Pair(String, String),
}

pub type Property = (u8, Value);

/// Returns the first value of property `id`.
pub fn find(props: &[Property], id: u8) -> Option<&Value> {
    props.iter().find(|(key, _)| *key == id).map(|(_, value)| value)
}

/// Returns every value of property `id`, in order.
pub fn find_all(props: &[Property], id: u8) -> Vec<&Value> {
    props.iter().filter(|(key, _)| *key == id).map(|(_, value)| value).collect()
}

/// Reads a Variable Byte Integer at `*position`.
pub fn read_varint(bytes: &[u8], position: &mut usize) -> Result<usize, String> {
    let mut value = 0usize;
    for index in 0..4 {
        let byte = *bytes.get(*position).ok_or("truncated Variable Byte Integer")?;
        *position += 1;
        value |= usize::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("Variable Byte Integer longer than 4 bytes".into())
}

fn take<'a>(bytes: &'a [u8], position: &mut usize, count: usize) -> Result<&'a [u8], String> {
    let end = *position + count;
    let slice = bytes.get(*position..end).ok_or_else(|| format!("truncated field at byte {position}"))?;
    *position = end;
    Ok(slice)
}

fn read_u16(bytes: &[u8], position: &mut usize) -> Result<u16, String> {
    let slice = take(bytes, position, 2)?;
    Ok(u16::from_be_bytes([slice[0], slice[1]]))
}

/// Reads a length-prefixed UTF-8 string; U+0000 is refused as MQTT-1.5.4-2 forbids it.
fn read_text(bytes: &[u8], position: &mut usize) -> Result<String, String> {
    let length = usize::from(read_u16(bytes, position)?);
    let slice = take(bytes, position, length)?;
    let text = std::str::from_utf8(slice).map_err(|error| format!("invalid UTF-8 in a string the broker sent: {error}"))?;
    if text.contains('\0') {
        return Err("U+0000 in a string the broker sent".into());
    }
    Ok(text.to_owned())
}

/// Reads a property block (its length, then the properties) at `*position`.
pub fn read_props(bytes: &[u8], position: &mut usize) -> Result<Vec<Property>, String> {
    let length = read_varint(bytes, position)?;
    let end = *position + length;
    if end > bytes.len() {
        return Err(format!("property length {length} runs past the packet"));
    }
    let block = &bytes[..end];
    let mut props = Vec::new();
    while *position < end {
        let id = block[*position];
        *position += 1;
        let value = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => Value::Byte(take(block, position, 1)?[0]),
            0x13 | 0x21 | 0x22 | 0x23 => Value::Two(read_u16(block, position)?),
            0x02 | 0x11 | 0x18 | 0x27 => {
                let slice = take(block, position, 4)?;
                Value::Four(u32::from_be_bytes(slice.try_into().unwrap()))
            }
            0x0B => Value::Varint(read_varint(block, position)? as u32),
            0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => Value::Text(read_text(block, position)?),
            0x09 | 0x16 => {
                let length = usize::from(read_u16(block, position)?);
                Value::Binary(take(block, position, length)?.to_vec())
            }
            0x26 => {
                let key = read_text(block, position)?;
                let value = read_text(block, position)?;
                Value::Pair(key, value)
            }
            other => return Err(format!("unknown property identifier {other:#04x}")),
        };
        props.push((id, value));
    }
    Ok(props)
}

/// A decoded CONNACK.
#[derive(Clone, Debug)]
pub struct Connack {
    pub session_present: bool,
    pub code: u8,
    pub props: Vec<Property>,
}

/// A decoded PUBLISH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: u16,
    pub props: Vec<Property>,
    pub payload: Vec<u8>,
}

impl Publish {
    pub fn property(&self, id: u8) -> Option<&Value> {
        find(&self.props, id)
    }

    pub fn subscription_ids(&self) -> Vec<u32> {
        find_all(&self.props, prop::SUBSCRIPTION_IDENTIFIER)
            .into_iter()
            .map(|value| match value {
                Value::Varint(id) => *id,
                other => panic!("Subscription Identifier of unexpected type: {other:?}"),
            })
            .collect()
    }
}

/// A decoded acknowledgement or DISCONNECT of MQTT 5.0: packet id (when the type has one),
/// reason code (0 when omitted) and properties.
#[derive(Clone, Debug)]
pub struct Reply {
    pub packet_id: Option<u16>,
    pub code: u8,
    pub props: Vec<Property>,
}

impl Frame {
    pub fn kind(&self) -> u8 {
        self.bytes[0] >> 4
    }

    pub fn flags(&self) -> u8 {
        self.bytes[0] & 0x0F
    }

    pub fn body(&self) -> &[u8] {
        &self.bytes[self.header_len..]
    }

    /// Decodes a CONNACK; `level` 5 reads the properties.
    pub fn connack(&self, level: u8) -> Result<Connack, String> {
        self.expect_first_byte(0x20, "CONNACK")?;
        let body = self.body();
        if body.len() < 2 {
            return Err(format!("CONNACK shorter than 2 bytes: {self:?}"));
        }
        if body[0] & 0xFE != 0 {
            return Err(format!("CONNACK acknowledge flags have reserved bits set: {self:?}"));
        }
        let mut props = Vec::new();
        if level == 5 {
            let mut position = 2;
            props = read_props(body, &mut position)?;
            if position != body.len() {
                return Err(format!("CONNACK has bytes after its properties: {self:?}"));
            }
        } else if body.len() != 2 {
            return Err(format!("MQTT 3.1.1 CONNACK must have a Remaining Length of 2: {self:?}"));
        }
        Ok(Connack { session_present: body[0] & 1 == 1, code: body[1], props })
    }

    /// Decodes a PUBLISH; `level` 5 reads the properties.
    pub fn publish(&self, level: u8) -> Result<Publish, String> {
        if self.kind() != 3 {
            return Err(format!("expected PUBLISH, got {self:?}"));
        }
        let qos = (self.flags() >> 1) & 3;
        if qos == 3 {
            return Err(format!("PUBLISH with QoS 3: {self:?}"));
        }
        let body = self.body();
        let mut position = 0;
        let topic = read_text(body, &mut position)?;
        let packet_id = if qos > 0 { read_u16(body, &mut position)? } else { 0 };
        let props = if level == 5 { read_props(body, &mut position)? } else { Vec::new() };
        Ok(Publish {
            topic,
            qos,
            retain: self.flags() & 1 == 1,
            dup: self.flags() & 8 != 0,
            packet_id,
            props,
            payload: body[position..].to_vec(),
        })
    }

    /// Decodes a SUBACK or UNSUBACK: packet id, properties (5.0) and the codes.
    pub fn sub_reply(&self, level: u8) -> Result<(u16, Vec<Property>, Vec<u8>), String> {
        if self.bytes[0] != 0x90 && self.bytes[0] != 0xB0 {
            return Err(format!("expected SUBACK or UNSUBACK, got {self:?}"));
        }
        let body = self.body();
        let mut position = 0;
        let packet_id = read_u16(body, &mut position)?;
        let props = if level == 5 { read_props(body, &mut position)? } else { Vec::new() };
        Ok((packet_id, props, body[position..].to_vec()))
    }

    /// Decodes an MQTT 5.0 PUBACK, PUBREC, PUBREL, PUBCOMP (with packet id) or DISCONNECT.
    pub fn reply(&self) -> Result<Reply, String> {
        let body = self.body();
        let mut position = 0;
        let packet_id = match self.kind() {
            4..=7 => Some(read_u16(body, &mut position)?),
            14 | 15 => None,
            _ => return Err(format!("not an acknowledgement or DISCONNECT: {self:?}")),
        };
        let code = body.get(position).copied().unwrap_or(0);
        position += 1;
        let props = if position < body.len() { read_props(body, &mut position)? } else { Vec::new() };
        if position < body.len() {
            return Err(format!("bytes after the properties: {self:?}"));
        }
        Ok(Reply { packet_id, code, props })
    }

    fn expect_first_byte(&self, first_byte: u8, name: &str) -> Result<(), String> {
        if self.bytes[0] != first_byte {
            return Err(format!("expected {name} (first byte {first_byte:#04x}), got {self:?}"));
        }
        Ok(())
    }
}
