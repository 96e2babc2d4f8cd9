//! Retained messages: storing and clearing at each QoS, resending on SUBSCRIBE, and many
//! under one filter.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::mosquitto::{self, Subscriber};
use common::raw::RawClient;
use common::Broker;

#[test]
fn retained_delivered_to_new_subscriber() {
    let broker = Broker::start("");
    let mut args = vec!["-V", "mqttv311", "-t", "retain/one", "-q", "1", "-r", "-m", "kept"];
    args.extend(mosquitto::admin_login());
    let output = mosquitto::publish(&broker, &args);
    assert!(output.success(), "{output}");

    for level in [3, 4, 5] {
        let mut subscriber = RawClient::login_admin(broker.addr, level, &format!("late-{level}"));
        subscriber.subscribe_ok(&[("retain/one", 1)]);
        let publish = subscriber
            .next_publish(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("protocol level {level}: no retained message after SUBSCRIBE"));
        assert_eq!(publish.topic, "retain/one");
        assert_eq!(publish.payload, b"kept");
        assert!(publish.retain, "protocol level {level}: retained message delivered without the retain flag");
        assert_eq!(publish.qos, 1);
    }
}

#[test]
fn live_message_has_no_retain_flag() {
    let broker = Broker::start("");
    let mut subscriber = RawClient::login_admin(broker.addr, 4, "live");
    subscriber.subscribe_ok(&[("retain/live", 1)]);
    let mut publisher = RawClient::login_admin(broker.addr, 4, "publisher");

    publisher.publish("retain/live", 1, true, b"now");

    // MQTT 3.1.1 section 3.3.1.3: a message sent because of a match with an existing
    // subscription carries retain 0, even when it was published with retain 1.
    let publish = subscriber.next_publish(Duration::from_secs(5)).expect("no live delivery");
    assert_eq!(publish.payload, b"now");
    assert!(!publish.retain, "live delivery to an existing subscription has the retain flag");
}

#[test]
fn retained_cleared_by_empty_payload() {
    let broker = Broker::start("");
    let mut publisher = RawClient::login_admin(broker.addr, 4, "publisher");
    publisher.publish("retain/cleared/a", 1, true, b"old");
    publisher.publish("retain/cleared/control", 1, true, b"control");
    publisher.publish("retain/cleared/a", 1, true, b"");

    let mut subscriber = RawClient::login_admin(broker.addr, 4, "checker");
    subscriber.subscribe_ok(&[("retain/cleared/#", 1)]);
    // The retained messages follow the SUBACK together; the quiet period covers them.
    let received = subscriber.drain_publishes(Duration::from_secs(1));
    let topics: Vec<&str> = received.iter().map(|publish| publish.topic.as_str()).collect();
    assert_eq!(topics, vec!["retain/cleared/control"], "retained messages after clearing retain/cleared/a: {received:?}");
}

#[test]
fn retained_set_and_cleared_each_qos() {
    let broker = Broker::start("");
    for level in [4, 5] {
        let filter = format!("retain/qos-{level}/+");
        let topic = |qos: u8| format!("retain/qos-{level}/{qos}");
        let mut publisher = RawClient::login_admin(broker.addr, level, &format!("qos-publisher-{level}"));
        for qos in 0..=2u8 {
            publisher.publish(&topic(qos), qos, true, format!("qos {qos}").as_bytes());
        }

        // A QoS 2 subscription gets each retained message at the QoS it was published with.
        let mut subscriber = RawClient::login_admin(broker.addr, level, &format!("qos-subscriber-{level}"));
        subscriber.subscribe_ok(&[(filter.as_str(), 2)]);
        let received = subscriber.expect_publishes(3, Duration::from_secs(5));
        let extra = subscriber.drain_publishes(Duration::from_millis(500));
        assert!(extra.is_empty(), "protocol level {level}: more than 3 retained messages: {extra:?}");
        for qos in 0..=2u8 {
            let publish = received
                .iter()
                .find(|publish| publish.topic == topic(qos))
                .unwrap_or_else(|| panic!("protocol level {level}: no retained message on {}: {received:?}", topic(qos)));
            assert_eq!(publish.payload_text(), format!("qos {qos}"));
            assert_eq!(publish.qos, qos, "protocol level {level}: QoS of the retained message on {}", topic(qos));
            assert!(publish.retain, "protocol level {level}: retain flag missing on {}", topic(qos));
        }
        subscriber.disconnect();

        // MQTT-3.3.1-10 (3.1.1) and MQTT-3.3.1-6 (5.0): an empty retained PUBLISH removes the
        // retained message, whatever its QoS.
        for qos in 0..=2u8 {
            publisher.publish(&topic(qos), qos, true, b"");
        }
        let mut checker = RawClient::login_admin(broker.addr, level, &format!("qos-checker-{level}"));
        checker.subscribe_ok(&[(filter.as_str(), 2)]);
        let left = checker.drain_publishes(Duration::from_secs(1));
        assert!(left.is_empty(), "protocol level {level}: retained messages left after clearing: {left:?}");
    }
}

#[test]
fn retained_cleared_with_mosquitto_pub() {
    let broker = Broker::start("");
    let set: &[&str] = &["-r", "-q", "1", "-m", "value"];
    let clear: &[&str] = &["-r", "-q", "1", "-n"];
    for extra in [set, clear] {
        let mut args = vec!["-V", "mqttv5", "-t", "retain/mosquitto"];
        args.extend(extra);
        args.extend(mosquitto::admin_login());
        let output = mosquitto::publish(&broker, &args);
        assert!(output.success(), "{output}");
    }

    let mut args = vec!["-V", "mqttv5", "-t", "retain/mosquitto", "-W", "2"];
    args.extend(mosquitto::admin_login());
    let subscriber = Subscriber::start(&broker, &args);
    let (_, messages) = subscriber.wait(Duration::from_secs(10));
    assert!(messages.is_empty(), "retained message still delivered after `mosquitto_pub -r -n`: {messages:?}");
}

#[test]
fn retained_resent_on_repeated_subscribe() {
    let broker = Broker::start("");
    let mut publisher = RawClient::login_admin(broker.addr, 4, "publisher");
    publisher.publish("retain/again", 1, true, b"state");

    let mut subscriber = RawClient::login_admin(broker.addr, 4, "resubscriber");
    for attempt in 1..=3 {
        subscriber.subscribe_ok(&[("retain/again", 1)]);
        // MQTT 3.1.1 section 3.8.4: a SUBSCRIBE that replaces an existing subscription
        // resends the retained messages that match it.
        let publish = subscriber
            .next_publish(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no retained message after SUBSCRIBE number {attempt}"));
        assert_eq!(publish.payload, b"state", "SUBSCRIBE number {attempt}");
        assert!(publish.retain, "SUBSCRIBE number {attempt}: retain flag missing");
        let extra = subscriber.drain_publishes(Duration::from_millis(300));
        assert!(extra.is_empty(), "SUBSCRIBE number {attempt}: more than one delivery: {extra:?}");
    }
}

#[test]
fn thousand_retained_under_wildcard() {
    const COUNT: usize = 1000;
    let broker = Broker::start("");
    let mut publisher = RawClient::login_admin(broker.addr, 4, "bulk-publisher");
    for index in 0..COUNT {
        publisher.publish(&format!("retain/many/{index}"), 1, true, format!("value-{index}").as_bytes());
    }

    let mut subscriber = RawClient::login_admin(broker.addr, 4, "bulk-subscriber");
    subscriber.subscribe_ok(&[("retain/many/#", 1)]);
    let received = subscriber.expect_publishes(COUNT, Duration::from_secs(30));

    let mut topics = BTreeSet::new();
    for publish in &received {
        assert!(publish.retain, "retained message without the retain flag: {publish:?}");
        let index = publish.topic.strip_prefix("retain/many/").expect("unexpected topic");
        assert_eq!(publish.payload_text(), format!("value-{index}"), "payload of {}", publish.topic);
        assert!(topics.insert(publish.topic.clone()), "delivered twice: {}", publish.topic);
    }
    assert_eq!(topics.len(), COUNT);
    let extra = subscriber.drain_publishes(Duration::from_millis(500));
    assert!(extra.is_empty(), "{} deliveries beyond {COUNT}", extra.len());
}
