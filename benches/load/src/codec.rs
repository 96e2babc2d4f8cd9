//! Minimal MQTT 3.1.1 and 5.0 codec: the packets a load generator sends (CONNECT, SUBSCRIBE,
//! PUBLISH, PUBACK, DISCONNECT) and a decoder for what it receives. A broker-side decoder of
//! CONNECT, SUBSCRIBE and PUBLISH serves the `sink` command.
//!
//! Only what the benchmarks use is covered: no will, no QoS 2, and MQTT 5.0 properties are
//! sent empty and skipped on receipt.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Protocol level byte of MQTT 3.1.1.
pub const V311: u8 = 4;
/// Protocol level byte of MQTT 5.0.
pub const V5: u8 = 5;

/// Packet type numbers of the fixed header's high nibble.
pub mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
}

/// Fields of a CONNECT packet.
pub struct Connect<'a> {
    pub level: u8,
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub clean_start: bool,
    pub keep_alive_secs: u16,
    /// MQTT 5.0 Session Expiry Interval, sent only when non-zero.
    pub session_expiry_secs: u32,
}

/// A decoded packet, borrowing nothing: payloads are `Bytes` slices of the read buffer.
#[derive(Debug)]
pub enum Packet {
    ConnAck { return_code: u8 },
    Publish { qos: u8, packet_id: u16, topic: Bytes, payload: Bytes },
    PubAck,
    SubAck { return_codes: Bytes },
    PingResp,
    /// CONNECT as seen by the `sink` command, which needs only the protocol level.
    Connect { level: u8 },
    /// SUBSCRIBE as seen by the `sink` command.
    Subscribe { packet_id: u16, filters: usize },
    PingReq,
    Disconnect,
    /// Any other packet type, ignored by the generator.
    Other,
}

/// Error of a received packet that this codec cannot read.
#[derive(Debug)]
pub struct MalformedPacket(pub &'static str);

impl std::fmt::Display for MalformedPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed packet: {}", self.0)
    }
}

impl std::error::Error for MalformedPacket {}

fn put_remaining_length(out: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(out: &mut BytesMut, value: &[u8]) {
    out.put_u16(value.len() as u16);
    out.put_slice(value);
}

/// Appends a CONNECT packet.
pub fn encode_connect(out: &mut BytesMut, connect: &Connect) {
    let mut body = BytesMut::with_capacity(64);
    put_str(&mut body, b"MQTT");
    body.put_u8(connect.level);

    let mut flags = 0u8;
    if connect.clean_start {
        flags |= 0x02;
    }
    if connect.username.is_some() {
        flags |= 0x80;
    }
    if connect.password.is_some() {
        flags |= 0x40;
    }
    body.put_u8(flags);
    body.put_u16(connect.keep_alive_secs);

    if connect.level == V5 {
        if connect.session_expiry_secs > 0 {
            // Property 0x11 Session Expiry Interval, four bytes.
            body.put_u8(5);
            body.put_u8(0x11);
            body.put_u32(connect.session_expiry_secs);
        } else {
            body.put_u8(0);
        }
    }

    put_str(&mut body, connect.client_id.as_bytes());
    if let Some(username) = connect.username {
        put_str(&mut body, username.as_bytes());
    }
    if let Some(password) = connect.password {
        put_str(&mut body, password.as_bytes());
    }

    out.put_u8(kind::CONNECT << 4);
    put_remaining_length(out, body.len());
    out.put_slice(&body);
}

/// Appends a SUBSCRIBE packet for one topic filter at `qos`.
pub fn encode_subscribe(out: &mut BytesMut, level: u8, packet_id: u16, filter: &str, qos: u8) {
    let properties_len = if level == V5 { 1 } else { 0 };
    out.put_u8((kind::SUBSCRIBE << 4) | 0x02);
    put_remaining_length(out, 2 + properties_len + 2 + filter.len() + 1);
    out.put_u16(packet_id);
    if level == V5 {
        out.put_u8(0);
    }
    put_str(out, filter.as_bytes());
    out.put_u8(qos);
}

/// Appends a PUBLISH packet. `packet_id` is ignored at QoS 0.
pub fn encode_publish(out: &mut BytesMut, level: u8, topic: &[u8], qos: u8, packet_id: u16, payload: &[u8]) {
    let id_len = if qos > 0 { 2 } else { 0 };
    let properties_len = if level == V5 { 1 } else { 0 };
    out.put_u8((kind::PUBLISH << 4) | (qos << 1));
    put_remaining_length(out, 2 + topic.len() + id_len + properties_len + payload.len());
    put_str(out, topic);
    if qos > 0 {
        out.put_u16(packet_id);
    }
    if level == V5 {
        out.put_u8(0);
    }
    out.put_slice(payload);
}

/// Appends a PUBACK. The two-byte form is valid in 3.1.1 and, with reason Success, in 5.0.
pub fn encode_puback(out: &mut BytesMut, packet_id: u16) {
    out.put_u8(kind::PUBACK << 4);
    out.put_u8(2);
    out.put_u16(packet_id);
}

/// Appends a DISCONNECT (normal disconnection in both versions).
pub fn encode_disconnect(out: &mut BytesMut) {
    out.put_u8(kind::DISCONNECT << 4);
    out.put_u8(0);
}

/// Appends a CONNACK accepting the connection, for the `sink` command.
pub fn encode_connack(out: &mut BytesMut, level: u8) {
    out.put_u8(kind::CONNACK << 4);
    if level == V5 {
        out.put_slice(&[3, 0, 0, 0]);
    } else {
        out.put_slice(&[2, 0, 0]);
    }
}

/// Appends a SUBACK granting QoS 1 to each of `filters` topic filters, for the `sink` command.
pub fn encode_suback(out: &mut BytesMut, level: u8, packet_id: u16, filters: usize) {
    let properties_len = if level == V5 { 1 } else { 0 };
    out.put_u8(kind::SUBACK << 4);
    put_remaining_length(out, 2 + properties_len + filters);
    out.put_u16(packet_id);
    if level == V5 {
        out.put_u8(0);
    }
    for _ in 0..filters {
        out.put_u8(1);
    }
}

/// Appends a PINGRESP, for the `sink` command.
pub fn encode_pingresp(out: &mut BytesMut) {
    out.put_u8(kind::PINGRESP << 4);
    out.put_u8(0);
}

/// Reads the variable-length Remaining Length at the start of `buf`: its value and byte count,
/// or `None` when more bytes are needed.
fn read_remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, MalformedPacket> {
    let mut value = 0usize;
    for (index, byte) in buf.iter().enumerate().take(4) {
        value |= ((byte & 0x7f) as usize) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((value, index + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(MalformedPacket("remaining length longer than four bytes"));
    }
    Ok(None)
}

fn read_u16(body: &mut Bytes) -> Result<u16, MalformedPacket> {
    if body.len() < 2 {
        return Err(MalformedPacket("truncated two-byte integer"));
    }
    Ok(body.get_u16())
}

fn read_str(body: &mut Bytes) -> Result<Bytes, MalformedPacket> {
    let len = read_u16(body)? as usize;
    if body.len() < len {
        return Err(MalformedPacket("truncated string"));
    }
    Ok(body.split_to(len))
}

fn skip_properties(body: &mut Bytes) -> Result<(), MalformedPacket> {
    let Some((len, header)) = read_remaining_length(body)? else {
        return Err(MalformedPacket("truncated property length"));
    };
    if body.len() < header + len {
        return Err(MalformedPacket("truncated properties"));
    }
    body.advance(header + len);
    Ok(())
}

/// Takes one complete packet off the front of `buf`, or returns `None` when it is not all there.
pub fn decode(buf: &mut BytesMut, level: u8) -> Result<Option<Packet>, MalformedPacket> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let Some((remaining, length_bytes)) = read_remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + length_bytes + remaining;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut packet = buf.split_to(total).freeze();
    let first = packet[0];
    packet.advance(1 + length_bytes);
    let mut body = packet;
    let packet_type = first >> 4;
    let decoded = match packet_type {
        kind::CONNACK => {
            if body.len() < 2 {
                return Err(MalformedPacket("CONNACK shorter than two bytes"));
            }
            Packet::ConnAck { return_code: body[1] }
        }
        kind::PUBLISH => {
            let qos = (first >> 1) & 0x03;
            let topic = read_str(&mut body)?;
            let packet_id = if qos > 0 { read_u16(&mut body)? } else { 0 };
            if level == V5 {
                skip_properties(&mut body)?;
            }
            Packet::Publish { qos, packet_id, topic, payload: body }
        }
        kind::PUBACK => {
            read_u16(&mut body)?;
            Packet::PubAck
        }
        kind::SUBACK => {
            read_u16(&mut body)?;
            if level == V5 {
                skip_properties(&mut body)?;
            }
            Packet::SubAck { return_codes: body }
        }
        kind::PINGRESP => Packet::PingResp,
        kind::CONNECT => {
            let _protocol_name = read_str(&mut body)?;
            if body.is_empty() {
                return Err(MalformedPacket("CONNECT without protocol level"));
            }
            Packet::Connect { level: body[0] }
        }
        kind::SUBSCRIBE => {
            let packet_id = read_u16(&mut body)?;
            if level == V5 {
                skip_properties(&mut body)?;
            }
            let mut filters = 0;
            while !body.is_empty() {
                read_str(&mut body)?;
                if body.is_empty() {
                    return Err(MalformedPacket("SUBSCRIBE filter without options byte"));
                }
                body.advance(1);
                filters += 1;
            }
            Packet::Subscribe { packet_id, filters }
        }
        kind::PINGREQ => Packet::PingReq,
        kind::DISCONNECT => Packet::Disconnect,
        _ => Packet::Other,
    };
    Ok(Some(decoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trip_both_versions() {
        for level in [V311, V5] {
            for qos in [0u8, 1] {
                let mut buf = BytesMut::new();
                encode_publish(&mut buf, level, b"a/b", qos, 7, &[1, 2, 3]);
                let packet = decode(&mut buf, level).unwrap().unwrap();
                let Packet::Publish { qos: got_qos, packet_id, topic, payload } = packet else {
                    panic!("expected PUBLISH, decoded {packet:?}");
                };
                assert_eq!(got_qos, qos);
                assert_eq!(packet_id, if qos > 0 { 7 } else { 0 });
                assert_eq!(&topic[..], b"a/b");
                assert_eq!(&payload[..], &[1, 2, 3]);
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn partial_packet_waits_for_rest() {
        let mut full = BytesMut::new();
        encode_publish(&mut full, V311, b"t", 0, 0, &[0u8; 300]);
        let mut partial = BytesMut::from(&full[..10]);
        assert!(decode(&mut partial, V311).unwrap().is_none());
        partial.extend_from_slice(&full[10..]);
        assert!(matches!(decode(&mut partial, V311).unwrap(), Some(Packet::Publish { .. })));
    }

    #[test]
    fn remaining_length_multi_byte() {
        let mut out = BytesMut::new();
        put_remaining_length(&mut out, 321);
        assert_eq!(&out[..], &[0xC1, 0x02]);
        assert_eq!(read_remaining_length(&out).unwrap(), Some((321, 2)));
    }

    #[test]
    fn subscribe_decodes_filter_count() {
        for level in [V311, V5] {
            let mut buf = BytesMut::new();
            encode_subscribe(&mut buf, level, 9, "x/#", 1);
            let packet = decode(&mut buf, level).unwrap().unwrap();
            assert!(matches!(packet, Packet::Subscribe { packet_id: 9, filters: 1 }), "{packet:?}");
        }
    }
}
