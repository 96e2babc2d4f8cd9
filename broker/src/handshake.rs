//! The first packet of a connection: reading CONNECT, the MQTT 3.1 shim, and the fields the
//! broker acts on.
//!
//! The first packet is read here rather than by the codec so that nothing is allocated for
//! what a client merely announces: a first byte other than CONNECT, or a Remaining Length
//! over the packet size limit, closes the connection before its body is read.

use std::time::{Duration, Instant};

use mqtt_protocol_core::mqtt::packet::{v3_1_1, v5_0, Property};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::message::Message;
use crate::will::Will;

/// Protocol level of a connection, as detected from CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolVersion {
    /// MQTT 3.1 (protocol name `MQIsdp`, level 3).
    V3_1,
    /// MQTT 3.1.1 (level 4).
    V3_1_1,
    /// MQTT 5.0 (level 5).
    V5,
}

impl ProtocolVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "3.1",
            ProtocolVersion::V3_1_1 => "3.1.1",
            ProtocolVersion::V5 => "5.0",
        }
    }
}

/// Error of reading the first packet.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no CONNECT within {0:?}")]
    Timeout(Duration),
    #[error("connection closed before CONNECT was complete")]
    Closed,
    #[error("first packet is not CONNECT (first byte 0x{0:02x})")]
    NotConnect(u8),
    #[error("malformed remaining length in CONNECT")]
    MalformedLength,
    #[error("CONNECT of {size} bytes is over the maximum packet size {max}")]
    TooLarge { size: usize, max: usize },
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The complete first packet, ready for the codec, plus any bytes that followed it.
#[derive(Debug)]
pub struct FirstPacket {
    pub connect: Vec<u8>,
    pub rest: Vec<u8>,
    /// Set when the client spoke MQTT 3.1 and `connect` was rewritten as 3.1.1.
    pub is_mqtt31: bool,
}

/// Largest CONNECT read, whatever the packet size limit. Its fields (client id, will topic
/// and payload, username, password) contain at most 64 KiB each, and a client that has not
/// yet authenticated must not make the broker buffer more than this.
pub const MAX_CONNECT_SIZE: usize = 1 << 20;

/// Reads bytes until one whole CONNECT has arrived, within `timeout`.
pub async fn read_first_packet<R>(
    reader: &mut R,
    timeout: Duration,
    max_packet_size: usize,
) -> Result<FirstPacket, HandshakeError>
where
    R: AsyncRead + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let max_packet_size = max_packet_size.min(MAX_CONNECT_SIZE);
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    loop {
        if let Some(total) = complete_length(&buf, max_packet_size)? {
            let rest = buf.split_off(total);
            let (connect, is_mqtt31) = match rewrite_mqtt31_connect(&buf) {
                Some(rewritten) => (rewritten, true),
                None => (buf, false),
            };
            return Ok(FirstPacket { connect, rest, is_mqtt31 });
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline, reader.read(&mut chunk))
            .await
            .map_err(|_| HandshakeError::Timeout(timeout))?
            .map_err(|error| match error.kind() {
                // TLS reports a peer that closed without close_notify this way.
                std::io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
                _ => HandshakeError::Io(error),
            })?;
        if read == 0 {
            return Err(HandshakeError::Closed);
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

/// Returns the total length of the first packet once all of it is in `buf`.
fn complete_length(buf: &[u8], max_packet_size: usize) -> Result<Option<usize>, HandshakeError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    if first != 0x10 {
        return Err(HandshakeError::NotConnect(first));
    }
    let Some((remaining, header_len)) = decode_remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + header_len + remaining;
    if total > max_packet_size {
        return Err(HandshakeError::TooLarge { size: total, max: max_packet_size });
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Decodes a Remaining Length; returns (value, bytes used), or None if more bytes are needed.
fn decode_remaining_length(bytes: &[u8]) -> Result<Option<(usize, usize)>, HandshakeError> {
    crate::wire::decode_remaining_length(bytes).map_err(|_| HandshakeError::MalformedLength)
}

/// Rewrites an MQTT 3.1 CONNECT (`MQIsdp`, level 3) as the equivalent 3.1.1 CONNECT, which
/// the codec understands; returns None for any other CONNECT.
///
/// The two differ only in protocol name and level; the flags, keep alive and payload have
/// the same layout.
fn rewrite_mqtt31_connect(packet: &[u8]) -> Option<Vec<u8>> {
    const MQTT31_HEADER: &[u8] = b"\x00\x06MQIsdp\x03";
    const MQTT311_HEADER: &[u8] = b"\x00\x04MQTT\x04";
    let (_, header_len) = decode_remaining_length(&packet[1..]).ok()??;
    let body = &packet[1 + header_len..];
    let tail = body.strip_prefix(MQTT31_HEADER)?;
    let mut out = Vec::with_capacity(packet.len());
    out.push(packet[0]);
    crate::wire::encode_variable_integer(MQTT311_HEADER.len() + tail.len(), &mut out);
    out.extend_from_slice(MQTT311_HEADER);
    out.extend_from_slice(tail);
    Some(out)
}

/// The fields of CONNECT the broker acts on.
#[derive(Debug)]
pub struct ConnectRequest {
    pub version: ProtocolVersion,
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub will: Option<Will>,
    /// v5 Session Expiry Interval in seconds (0 when absent and for 3.1.1).
    pub session_expiry: u32,
    /// v5 Receive Maximum: QoS 1/2 messages the client accepts at once.
    pub receive_maximum: u16,
    /// v5 Request Problem Information.
    pub request_problem_information: bool,
}

impl ConnectRequest {
    pub fn from_v3(packet: &v3_1_1::Connect, is_mqtt31: bool) -> Self {
        let will = packet.will_topic().map(|topic| Will {
            message: Message {
                topic: topic.into(),
                payload: packet.will_payload().unwrap_or_default().to_vec().into_payload(),
                qos: packet.will_qos(),
                retain: packet.will_retain(),
                properties: Vec::new(),
                expires_at: None,
                origin: 0,
            },
            delay: Duration::ZERO,
        });
        ConnectRequest {
            version: if is_mqtt31 { ProtocolVersion::V3_1 } else { ProtocolVersion::V3_1_1 },
            client_id: packet.client_id().to_owned(),
            clean_start: packet.clean_session(),
            keep_alive: packet.keep_alive(),
            username: packet.user_name().map(str::to_owned),
            password: packet.password().map(<[u8]>::to_vec),
            will,
            session_expiry: 0,
            receive_maximum: u16::MAX,
            request_problem_information: true,
        }
    }

    pub fn from_v5(packet: &v5_0::Connect) -> Self {
        let mut session_expiry = 0;
        let mut receive_maximum = u16::MAX;
        let mut request_problem_information = true;
        for prop in packet.props() {
            match prop {
                Property::SessionExpiryInterval(v) => session_expiry = v.val(),
                Property::ReceiveMaximum(v) => receive_maximum = v.val(),
                Property::RequestProblemInformation(v) => request_problem_information = v.val() != 0,
                _ => {}
            }
        }
        let will = packet.will_topic().map(|topic| {
            let now = Instant::now();
            let mut delay = Duration::ZERO;
            for prop in packet.will_props() {
                if let Property::WillDelayInterval(v) = prop {
                    delay = Duration::from_secs(u64::from(v.val()));
                }
            }
            let will_props: Vec<Property> = packet
                .will_props()
                .iter()
                .filter(|p| !matches!(p, Property::WillDelayInterval(_)))
                .cloned()
                .collect();
            let (properties, expires_at) = Message::forwarded_properties(&will_props, now);
            Will {
                message: Message {
                    topic: topic.into(),
                    payload: packet.will_payload().unwrap_or_default().to_vec().into_payload(),
                    qos: packet.will_qos(),
                    retain: packet.will_retain(),
                    properties,
                    expires_at,
                    origin: 0,
                },
                delay,
            }
        });
        ConnectRequest {
            version: ProtocolVersion::V5,
            client_id: packet.client_id().to_owned(),
            clean_start: packet.clean_start(),
            keep_alive: packet.keep_alive(),
            username: packet.user_name().map(str::to_owned),
            password: packet.password().map(<[u8]>::to_vec),
            will,
            session_expiry,
            receive_maximum,
            request_problem_information,
        }
    }
}

/// Converts owned bytes into the codec's shared payload type.
trait IntoArcPayload {
    fn into_payload(self) -> mqtt_protocol_core::mqtt::ArcPayload;
}

impl IntoArcPayload for Vec<u8> {
    fn into_payload(self) -> mqtt_protocol_core::mqtt::ArcPayload {
        use mqtt_protocol_core::mqtt::IntoPayload;
        IntoPayload::into_payload(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt31_connect_rewritten() {
        // CONNECT, 3.1, clean session, keep alive 60, client id "ab".
        let mut body = b"\x00\x06MQIsdp\x03\x02\x00\x3c".to_vec();
        body.extend_from_slice(b"\x00\x02ab");
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend_from_slice(&body);
        let rewritten = rewrite_mqtt31_connect(&packet).expect("3.1 CONNECT is rewritten");
        assert_eq!(rewritten[1] as usize, body.len() - 2);
        assert_eq!(&rewritten[2..9], b"\x00\x04MQTT\x04");
        assert_eq!(&rewritten[9..], b"\x02\x00\x3c\x00\x02ab");
    }

    #[test]
    fn mqtt311_connect_untouched() {
        let packet = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02ab";
        assert!(rewrite_mqtt31_connect(packet).is_none());
    }

    #[test]
    fn first_packet_checks() {
        assert!(matches!(complete_length(&[0x30, 0x00], 100), Err(HandshakeError::NotConnect(0x30))));
        assert!(matches!(complete_length(&[0x10, 0xff, 0xff, 0xff, 0x7f], 1000), Err(HandshakeError::TooLarge { .. })));
        assert!(matches!(complete_length(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX), Err(HandshakeError::MalformedLength)));
        assert_eq!(complete_length(&[0x10, 0x02, 0x00], 100).unwrap(), None);
        assert_eq!(complete_length(&[0x10, 0x01, 0x00, 0xaa], 100).unwrap(), Some(3));
    }
}
