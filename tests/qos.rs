//! QoS 0, 1 and 2 round trips through rumqttc (MQTT 3.1.1 and 5.0), and the QoS of each
//! delivered PUBLISH, read from raw bytes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::raw::RawClient;
use common::{Broker, ADMIN_PASSWORD, ADMIN_USER};

const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

mod v311 {
    use super::*;
    use rumqttc::{Client, Connection, Event, MqttOptions, Outgoing, Packet, QoS, RecvTimeoutError, SubscribeReasonCode};

    pub fn connect(broker: &Broker, client_id: &str) -> (Client, Connection) {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.port());
        options.set_credentials(ADMIN_USER, ADMIN_PASSWORD);
        options.set_keep_alive(Duration::from_secs(30));
        Client::new(options, 16)
    }

    /// Polls `connection` until `select` returns a value; panics on errors and after `timeout`.
    pub fn wait_event<T>(connection: &mut Connection, what: &str, mut select: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match connection.recv_timeout(remaining) {
                Ok(Ok(event)) => {
                    if let Some(value) = select(&event) {
                        return value;
                    }
                }
                Ok(Err(error)) => panic!("rumqttc connection error while waiting for {what}: {error}"),
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within {EVENT_TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("rumqttc request channel closed while waiting for {what}"),
            }
        }
    }

    pub fn round_trip(qos: QoS) {
        let broker = Broker::start("");
        let topic = format!("qos/round-trip/{}", qos as u8);
        let (subscriber, mut subscriber_events) = connect(&broker, "rt-subscriber");
        subscriber.subscribe(topic.as_str(), QoS::ExactlyOnce).unwrap();
        let codes = wait_event(&mut subscriber_events, "SUBACK", |event| match event {
            Event::Incoming(Packet::SubAck(suback)) => Some(suback.return_codes.clone()),
            _ => None,
        });
        assert_eq!(codes, vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]);

        let (publisher, mut publisher_events) = connect(&broker, "rt-publisher");
        publisher.publish(topic.as_str(), qos, false, "round trip").unwrap();
        wait_event(&mut publisher_events, "end of the publish exchange", |event| match (qos, event) {
            (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_))) => Some(()),
            (QoS::AtLeastOnce, Event::Incoming(Packet::PubAck(_))) => Some(()),
            (QoS::ExactlyOnce, Event::Incoming(Packet::PubComp(_))) => Some(()),
            _ => None,
        });

        let publish = wait_event(&mut subscriber_events, "PUBLISH", |event| match event {
            Event::Incoming(Packet::Publish(publish)) => Some(publish.clone()),
            _ => None,
        });
        assert_eq!(publish.topic, topic);
        assert_eq!(&publish.payload[..], b"round trip");
        assert_eq!(publish.qos, qos, "delivered QoS");

        if qos == QoS::ExactlyOnce {
            // The subscriber sent PUBREC, so the broker must send PUBREL next.
            wait_event(&mut subscriber_events, "PUBREL from the broker", |event| match event {
                Event::Incoming(Packet::PubRel(_)) => Some(()),
                _ => None,
            });
        }
        assert_no_more_publishes(&mut subscriber_events);
    }

    fn assert_no_more_publishes(connection: &mut Connection) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(remaining) = deadline.checked_duration_since(Instant::now()) {
            match connection.recv_timeout(remaining) {
                Ok(Ok(Event::Incoming(Packet::Publish(publish)))) => panic!("message delivered twice: {publish:?}"),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => panic!("rumqttc connection error: {error}"),
                Err(_) => return,
            }
        }
    }
}

mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{Client, Connection, Event, MqttOptions, RecvTimeoutError};
    use rumqttc::Outgoing;

    pub fn connect(broker: &Broker, client_id: &str) -> (Client, Connection) {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.port());
        options.set_credentials(ADMIN_USER, ADMIN_PASSWORD);
        options.set_keep_alive(Duration::from_secs(30));
        Client::new(options, 16)
    }

    /// Polls `connection` until `select` returns a value; panics on errors and after `timeout`.
    pub fn wait_event<T>(connection: &mut Connection, what: &str, mut select: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match connection.recv_timeout(remaining) {
                Ok(Ok(event)) => {
                    if let Some(value) = select(&event) {
                        return value;
                    }
                }
                Ok(Err(error)) => panic!("rumqttc connection error while waiting for {what}: {error}"),
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within {EVENT_TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("rumqttc request channel closed while waiting for {what}"),
            }
        }
    }

    pub fn round_trip(qos: QoS) {
        let broker = Broker::start("");
        let topic = format!("qos/round-trip-v5/{}", qos as u8);
        let (subscriber, mut subscriber_events) = connect(&broker, "rt5-subscriber");
        subscriber.subscribe(topic.as_str(), QoS::ExactlyOnce).unwrap();
        let codes = wait_event(&mut subscriber_events, "SUBACK", |event| match event {
            Event::Incoming(Packet::SubAck(suback)) => Some(suback.return_codes.clone()),
            _ => None,
        });
        assert_eq!(codes, vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]);

        let (publisher, mut publisher_events) = connect(&broker, "rt5-publisher");
        publisher.publish(topic.as_str(), qos, false, "round trip v5").unwrap();
        wait_event(&mut publisher_events, "end of the publish exchange", |event| match (qos, event) {
            (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_))) => Some(()),
            (QoS::AtLeastOnce, Event::Incoming(Packet::PubAck(_))) => Some(()),
            (QoS::ExactlyOnce, Event::Incoming(Packet::PubComp(_))) => Some(()),
            _ => None,
        });

        let publish = wait_event(&mut subscriber_events, "PUBLISH", |event| match event {
            Event::Incoming(Packet::Publish(publish)) => Some(publish.clone()),
            _ => None,
        });
        assert_eq!(&publish.topic[..], topic.as_bytes());
        assert_eq!(&publish.payload[..], b"round trip v5");
        assert_eq!(publish.qos, qos, "delivered QoS");

        if qos == QoS::ExactlyOnce {
            wait_event(&mut subscriber_events, "PUBREL from the broker", |event| match event {
                Event::Incoming(Packet::PubRel(_)) => Some(()),
                _ => None,
            });
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(remaining) = deadline.checked_duration_since(Instant::now()) {
            match subscriber_events.recv_timeout(remaining) {
                Ok(Ok(Event::Incoming(Packet::Publish(publish)))) => panic!("message delivered twice: {publish:?}"),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => panic!("rumqttc connection error: {error}"),
                Err(_) => break,
            }
        }
    }
}

#[test]
fn qos0_round_trip_v311() {
    v311::round_trip(rumqttc::QoS::AtMostOnce);
}

#[test]
fn qos1_round_trip_v311() {
    v311::round_trip(rumqttc::QoS::AtLeastOnce);
}

#[test]
fn qos2_round_trip_v311() {
    v311::round_trip(rumqttc::QoS::ExactlyOnce);
}

#[test]
fn qos0_round_trip_v5() {
    v5::round_trip(rumqttc::v5::mqttbytes::QoS::AtMostOnce);
}

#[test]
fn qos1_round_trip_v5() {
    v5::round_trip(rumqttc::v5::mqttbytes::QoS::AtLeastOnce);
}

#[test]
fn qos2_round_trip_v5() {
    v5::round_trip(rumqttc::v5::mqttbytes::QoS::ExactlyOnce);
}

/// Publishes at each QoS to subscriptions of each QoS and checks the QoS of every delivery.
fn delivered_qos_is_minimum(level: u8) {
    let broker = Broker::start("");
    let mut subscriber = RawClient::login_admin(broker.addr, level, "min-subscriber");
    subscriber.subscribe_ok(&[("qos/min/0", 0), ("qos/min/1", 1), ("qos/min/2", 2)]);
    let mut publisher = RawClient::login_admin(broker.addr, level, "min-publisher");

    for publish_qos in 0..=2u8 {
        for subscription_qos in 0..=2u8 {
            let topic = format!("qos/min/{subscription_qos}");
            let payload = format!("publish-{publish_qos}-subscription-{subscription_qos}");
            publisher.publish(&topic, publish_qos, false, payload.as_bytes());
        }
    }

    let received = subscriber.expect_publishes(9, Duration::from_secs(10));
    let extra = subscriber.drain_publishes(Duration::from_millis(500));
    assert!(extra.is_empty(), "more than 9 deliveries: {extra:?}");

    let mut delivered: BTreeMap<String, u8> = BTreeMap::new();
    for publish in &received {
        let previous = delivered.insert(publish.payload_text(), publish.qos);
        assert!(previous.is_none(), "delivered twice: {publish:?}");
    }
    for publish_qos in 0..=2u8 {
        for subscription_qos in 0..=2u8 {
            let payload = format!("publish-{publish_qos}-subscription-{subscription_qos}");
            let expected = publish_qos.min(subscription_qos);
            assert_eq!(
                delivered.get(&payload),
                Some(&expected),
                "published at QoS {publish_qos} to a QoS {subscription_qos} subscription"
            );
        }
    }
}

#[test]
fn delivered_qos_is_minimum_v311() {
    delivered_qos_is_minimum(4);
}

#[test]
fn delivered_qos_is_minimum_v5() {
    delivered_qos_is_minimum(5);
}

#[test]
fn delivered_qos_is_minimum_v31() {
    delivered_qos_is_minimum(3);
}
