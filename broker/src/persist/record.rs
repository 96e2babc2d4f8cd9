//! Byte layout of the records in the store: messages, queue entries and sessions.
//!
//! A message is stored as the MQTT 5.0 PUBLISH that carries it (at QoS 0, so without a
//! packet id), which keeps every property without a format of our own, behind a small header
//! with its real QoS, RETAIN flag and expiry time. Every record starts with a format version
//! byte, so a later release can read what an earlier one wrote.
//!
//! Times are stored as Unix milliseconds, because `Instant` means nothing after a restart.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mqtt_protocol_core::mqtt::packet::{v5_0, Qos};

use crate::message::{qos_from_u8, Delivery, Message};
use crate::router::SubscriptionOptions;
use crate::session::{OutgoingStage, SessionExpiry};
use crate::topic::SubscriptionFilter;

const FORMAT_VERSION: u8 = 1;

/// Error of decoding a stored record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt {kind} record: {reason}")]
pub struct RecordError {
    pub kind: &'static str,
    pub reason: String,
}

fn corrupt(kind: &'static str, reason: impl Into<String>) -> RecordError {
    RecordError { kind, reason: reason.into() }
}

/// Converts between `Instant` and Unix milliseconds around one reading of both clocks.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: Instant,
    unix_ms: u64,
}

impl Clock {
    pub fn now() -> Self {
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Clock { instant: Instant::now(), unix_ms }
    }

    pub fn unix_ms(&self) -> u64 {
        self.unix_ms
    }

    pub fn to_unix_ms(&self, at: Instant) -> u64 {
        if at >= self.instant {
            self.unix_ms + at.duration_since(self.instant).as_millis() as u64
        } else {
            self.unix_ms.saturating_sub(self.instant.duration_since(at).as_millis() as u64)
        }
    }

    pub fn to_instant(&self, unix_ms: u64) -> Instant {
        if unix_ms >= self.unix_ms {
            self.instant + Duration::from_millis(unix_ms - self.unix_ms)
        } else {
            self.instant.checked_sub(Duration::from_millis(self.unix_ms - unix_ms)).unwrap_or(self.instant)
        }
    }
}

/// A cursor over a record's bytes that reports truncation as corruption.
struct Reader<'a> {
    bytes: &'a [u8],
    kind: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], RecordError> {
        if self.bytes.len() < count {
            return Err(corrupt(self.kind, "record is truncated"));
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("two bytes")))
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("eight bytes")))
    }

    fn string(&mut self) -> Result<String, RecordError> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt(self.kind, "string is not UTF-8"))
    }

    fn version(&mut self) -> Result<(), RecordError> {
        match self.u8()? {
            FORMAT_VERSION => Ok(()),
            other => Err(corrupt(self.kind, format!("unknown format version {other}"))),
        }
    }
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Encodes a message: header, then the v5 PUBLISH that carries it.
pub fn encode_message(message: &Message, clock: &Clock) -> Vec<u8> {
    let publish = v5_0::Publish::builder()
        .topic_name(message.topic.as_ref())
        .and_then(|builder| {
            let builder = builder.qos(Qos::AtMostOnce).payload(message.payload.clone());
            if message.properties.is_empty() {
                builder.build()
            } else {
                builder.props(message.properties.clone()).build()
            }
        })
        .expect("a message that was received or made valid encodes again");
    let packet = publish.to_continuous_buffer();
    let mut out = Vec::with_capacity(packet.len() + 12);
    out.push(FORMAT_VERSION);
    out.push(message.qos as u8);
    out.push(u8::from(message.retain));
    out.extend_from_slice(&message.expires_at.map_or(0, |at| clock.to_unix_ms(at)).to_be_bytes());
    out.extend_from_slice(&packet);
    out
}

pub fn decode_message(bytes: &[u8], clock: &Clock) -> Result<Message, RecordError> {
    let mut reader = Reader { bytes, kind: "message" };
    reader.version()?;
    let qos = reader.u8()?;
    if qos > 2 {
        return Err(corrupt("message", format!("QoS {qos}")));
    }
    let retain = reader.u8()? != 0;
    let expires_ms = reader.u64()?;
    let packet = reader.bytes;
    let (flags, body) = split_fixed_header(packet).ok_or_else(|| corrupt("message", "bad PUBLISH header"))?;
    let (publish, _) = v5_0::Publish::parse(flags, Arc::from(body))
        .map_err(|error| corrupt("message", format!("PUBLISH does not parse: {error:?}")))?;
    Ok(Message {
        topic: Arc::from(publish.topic_name()),
        payload: publish.payload().clone(),
        qos: qos_from_u8(qos),
        retain,
        properties: publish.props().clone(),
        expires_at: (expires_ms != 0).then(|| clock.to_instant(expires_ms)),
        origin: 0,
    })
}

/// Splits a packet into its first byte's flags and the bytes after the Remaining Length.
fn split_fixed_header(packet: &[u8]) -> Option<(u8, &[u8])> {
    let flags = packet.first()? & 0x0f;
    let mut length = 0usize;
    for (index, byte) in packet.iter().skip(1).take(4).enumerate() {
        length |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            let body = packet.get(2 + index..)?;
            return (body.len() == length).then_some((flags, body));
        }
    }
    None
}

/// A message in a persistent session's queue, as stored.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    pub delivery: Delivery,
    /// Stage when last written: `None` while queued, else in flight under `packet_id`.
    pub stage: Option<OutgoingStage>,
    pub packet_id: u16,
}

pub fn encode_queue_entry(entry: &QueueEntry, clock: &Clock) -> Vec<u8> {
    let delivery = &entry.delivery;
    let mut out = Vec::with_capacity(64 + delivery.message.payload.len());
    out.push(FORMAT_VERSION);
    out.push(delivery.qos as u8);
    out.push(u8::from(delivery.retain));
    out.push(match entry.stage {
        None => 0,
        Some(OutgoingStage::AwaitingAck) => 1,
        Some(OutgoingStage::AwaitingPubcomp) => 2,
    });
    out.extend_from_slice(&entry.packet_id.to_be_bytes());
    out.push(delivery.subscription_ids.len().min(255) as u8);
    for id in delivery.subscription_ids.iter().take(255) {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(&encode_message(&delivery.message, clock));
    out
}

pub fn decode_queue_entry(bytes: &[u8], clock: &Clock) -> Result<QueueEntry, RecordError> {
    let mut reader = Reader { bytes, kind: "queue entry" };
    reader.version()?;
    let qos = reader.u8()?;
    if qos > 2 {
        return Err(corrupt("queue entry", format!("QoS {qos}")));
    }
    let retain = reader.u8()? != 0;
    let stage = match reader.u8()? {
        0 => None,
        1 => Some(OutgoingStage::AwaitingAck),
        2 => Some(OutgoingStage::AwaitingPubcomp),
        other => return Err(corrupt("queue entry", format!("stage {other}"))),
    };
    let packet_id = reader.u16()?;
    let count = reader.u8()?;
    let mut subscription_ids = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        subscription_ids.push(reader.u32()?);
    }
    let message = decode_message(reader.bytes, clock)?;
    Ok(QueueEntry {
        delivery: Delivery { message: Arc::new(message), qos: qos_from_u8(qos), retain, subscription_ids, seq: 0 },
        stage,
        packet_id,
    })
}

/// A persistent session, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub expiry: SessionExpiry,
    /// When the client disconnected (Unix ms); 0 while it was connected.
    pub disconnected_at_ms: u64,
    pub subscriptions: Vec<(SubscriptionFilter, SubscriptionOptions)>,
}

pub fn encode_session(record: &SessionRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_VERSION);
    match record.expiry {
        SessionExpiry::OnDisconnect => out.extend_from_slice(&[0, 0, 0, 0, 0]),
        SessionExpiry::After(delay) => {
            out.push(1);
            out.extend_from_slice(&(delay.as_secs().min(u64::from(u32::MAX - 1)) as u32).to_be_bytes());
        }
        SessionExpiry::Never => out.extend_from_slice(&[2, 0, 0, 0, 0]),
    }
    out.extend_from_slice(&record.disconnected_at_ms.to_be_bytes());
    out.extend_from_slice(&(record.subscriptions.len() as u32).to_be_bytes());
    for (filter, options) in &record.subscriptions {
        put_string(&mut out, &filter.to_string());
        out.push(options.qos as u8);
        out.push(u8::from(options.no_local));
        out.push(u8::from(options.retain_as_published));
        out.push(options.retain_handling);
        match options.identifier {
            Some(id) => {
                out.push(1);
                out.extend_from_slice(&id.to_be_bytes());
            }
            None => out.extend_from_slice(&[0, 0, 0, 0, 0]),
        }
    }
    out
}

pub fn decode_session(bytes: &[u8]) -> Result<SessionRecord, RecordError> {
    let mut reader = Reader { bytes, kind: "session" };
    reader.version()?;
    let kind = reader.u8()?;
    let secs = reader.u32()?;
    let expiry = match kind {
        0 => SessionExpiry::OnDisconnect,
        1 => SessionExpiry::After(Duration::from_secs(u64::from(secs))),
        2 => SessionExpiry::Never,
        other => return Err(corrupt("session", format!("expiry kind {other}"))),
    };
    let disconnected_at_ms = reader.u64()?;
    let count = reader.u32()?;
    let mut subscriptions = Vec::new();
    for _ in 0..count {
        let text = reader.string()?;
        let filter = SubscriptionFilter::parse(&text, 0).map_err(|error| corrupt("session", format!("filter {text:?}: {error}")))?;
        let qos = reader.u8()?;
        if qos > 2 {
            return Err(corrupt("session", format!("subscription QoS {qos}")));
        }
        let no_local = reader.u8()? != 0;
        let retain_as_published = reader.u8()? != 0;
        let retain_handling = reader.u8()?;
        let has_id = reader.u8()? != 0;
        let id = reader.u32()?;
        let options = SubscriptionOptions {
            qos: qos_from_u8(qos),
            no_local,
            retain_as_published,
            retain_handling,
            identifier: has_id.then_some(id),
        };
        subscriptions.push((filter, options));
    }
    Ok(SessionRecord { expiry, disconnected_at_ms, subscriptions })
}

/// Encodes the incoming QoS 2 packet ids not yet released.
pub fn encode_packet_ids(ids: &[u16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + ids.len() * 2);
    out.push(FORMAT_VERSION);
    for id in ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out
}

pub fn decode_packet_ids(bytes: &[u8]) -> Result<Vec<u16>, RecordError> {
    let mut reader = Reader { bytes, kind: "packet id list" };
    reader.version()?;
    if reader.bytes.len() % 2 != 0 {
        return Err(corrupt("packet id list", "odd length"));
    }
    let mut ids = Vec::new();
    while !reader.bytes.is_empty() {
        ids.push(reader.u16()?);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_protocol_core::mqtt::packet::{ContentType, Property, UserProperty};
    use mqtt_protocol_core::mqtt::IntoPayload;

    fn sample_message(clock: &Clock) -> Message {
        Message {
            topic: Arc::from("tank/1/temp"),
            payload: b"23.5".to_vec().into_payload(),
            qos: Qos::ExactlyOnce,
            retain: true,
            properties: vec![
                Property::ContentType(ContentType::new("text/plain").unwrap()),
                Property::UserProperty(UserProperty::new("unit", "C").unwrap()),
            ],
            expires_at: Some(clock.to_instant(clock.unix_ms() + 60_000)),
            origin: 7,
        }
    }

    #[test]
    fn message_round_trip() {
        let clock = Clock::now();
        let message = sample_message(&clock);
        let decoded = decode_message(&encode_message(&message, &clock), &clock).unwrap();
        assert_eq!(decoded.topic, message.topic);
        assert_eq!(decoded.payload.as_slice(), b"23.5");
        assert_eq!(decoded.qos, Qos::ExactlyOnce);
        assert!(decoded.retain);
        assert_eq!(decoded.properties, message.properties);
        let expiry = clock.to_unix_ms(decoded.expires_at.unwrap());
        assert!(expiry.abs_diff(clock.unix_ms() + 60_000) <= 1, "{expiry}");
    }

    #[test]
    fn queue_entry_round_trip() {
        let clock = Clock::now();
        let entry = QueueEntry {
            delivery: Delivery { message: Arc::new(sample_message(&clock)), qos: Qos::AtLeastOnce, retain: false, subscription_ids: vec![3, 9], seq: 0 },
            stage: Some(OutgoingStage::AwaitingPubcomp),
            packet_id: 513,
        };
        let decoded = decode_queue_entry(&encode_queue_entry(&entry, &clock), &clock).unwrap();
        assert_eq!(decoded.delivery.qos, Qos::AtLeastOnce);
        assert_eq!(decoded.delivery.subscription_ids, vec![3, 9]);
        assert_eq!(decoded.stage, Some(OutgoingStage::AwaitingPubcomp));
        assert_eq!(decoded.packet_id, 513);
        assert_eq!(decoded.delivery.message.topic.as_ref(), "tank/1/temp");
    }

    #[test]
    fn session_round_trip() {
        let record = SessionRecord {
            expiry: SessionExpiry::After(Duration::from_secs(3600)),
            disconnected_at_ms: 1_700_000_000_000,
            subscriptions: vec![(
                SubscriptionFilter::parse("$share/g/tank/+", 0).unwrap(),
                SubscriptionOptions { qos: Qos::AtLeastOnce, no_local: true, retain_as_published: false, retain_handling: 2, identifier: Some(42) },
            )],
        };
        assert_eq!(decode_session(&encode_session(&record)).unwrap(), record);
    }

    #[test]
    fn truncated_records_are_errors() {
        let clock = Clock::now();
        let bytes = encode_message(&sample_message(&clock), &clock);
        for cut in [0, 1, 5, 12, bytes.len() - 1] {
            assert!(decode_message(&bytes[..cut], &clock).is_err(), "cut at {cut}");
        }
        assert!(decode_session(&[9]).is_err());
        assert!(decode_packet_ids(&[1, 0]).is_err());
        assert_eq!(decode_packet_ids(&encode_packet_ids(&[1, 65535])).unwrap(), vec![1, 65535]);
    }
}
