//! Topic matching: wildcards, `$` topics, shared subscriptions, clients of different
//! protocol versions on one broker, a client receiving its own messages, and topic aliases
//! sent by the broker.

mod common;
mod conformance_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::mosquitto::{self, Subscriber, Version};
use common::raw::RawClient;
use common::Broker;
use conformance_support::decode::Value;
use conformance_support::{prop, Props, Wire, QUIET};

/// Topic published last by a test, to which every subscriber also subscribed. Messages from
/// one publisher arrive in order, so a subscriber that receives the marker has received all
/// messages published before it.
const END_MARKER_TOPIC: &str = "sync/end";

/// Reads PUBLISH packets up to the end marker and returns their topics.
fn topics_until_marker(client: &mut RawClient, name: &str) -> Vec<String> {
    let mut topics = Vec::new();
    loop {
        let publish = client
            .next_publish(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("subscriber {name} got no end marker within 10 s; topics so far: {topics:?}"));
        if publish.topic == END_MARKER_TOPIC {
            return topics;
        }
        topics.push(publish.topic);
    }
}

#[test]
fn sys_topic_not_matched_by_wildcards() {
    // Only the broker publishes under $SYS (a client's PUBLISH there is dropped, as in
    // Mosquitto), so the $SYS messages here are the broker's own, sent every second.
    let broker = Broker::start("sys_interval_secs = 1");
    let mut hash = RawClient::login_admin(broker.addr, 4, "hash");
    hash.subscribe_ok(&[("#", 1)]);
    let mut plus = RawClient::login_admin(broker.addr, 4, "plus");
    plus.subscribe_ok(&[("+/x", 1), ("+/broker/version", 1), (END_MARKER_TOPIC, 1)]);
    let mut sys = RawClient::login_admin(broker.addr, 4, "sys");
    sys.subscribe_ok(&[("$SYS/#", 1)]);

    let mut publisher = RawClient::login_admin(broker.addr, 4, "publisher");
    publisher.publish("$SYS/x", 1, false, b"dollar");
    publisher.publish("plain/x", 1, false, b"plain");

    // Wait until the broker has published its $SYS tree at least once after the subscriptions.
    let mut sys_topics = Vec::new();
    let found = common::wait_until(Duration::from_secs(10), || {
        while let Some(publish) = sys.next_publish(Duration::from_millis(100)) {
            sys_topics.push(publish.topic);
        }
        sys_topics.iter().any(|topic| topic == "$SYS/broker/version")
    });
    assert!(found, "`$SYS/#` did not receive $SYS/broker/version; got {sys_topics:?}");
    assert!(!sys_topics.contains(&"$SYS/x".to_string()), "a client's PUBLISH to $SYS/x was routed: {sys_topics:?}");
    publisher.publish(END_MARKER_TOPIC, 1, false, b"end");

    // MQTT 3.1.1 section 4.7.2: topics starting with `$` do not match filters starting
    // with a wildcard, so the broker's `$SYS` messages reach neither `#` nor `+/...`.
    let hash_topics = topics_until_marker(&mut hash, "#");
    assert!(hash_topics.iter().all(|topic| !topic.starts_with('$')), "`#` received $ topics: {hash_topics:?}");
    assert!(hash_topics.contains(&"plain/x".to_string()), "`#` missed plain/x: {hash_topics:?}");

    let plus_topics = topics_until_marker(&mut plus, "+/x");
    assert_eq!(plus_topics, vec!["plain/x".to_string()], "`+/x` and `+/broker/version` received");
}

#[test]
fn client_dollar_topic_skips_wildcards() {
    let broker = Broker::start("");
    let mut wildcards = RawClient::login_admin(broker.addr, 4, "dollar-wildcards");
    wildcards.subscribe_ok(&[("+/+", 2), ("#", 2)]);
    let mut exact = RawClient::login_admin(broker.addr, 4, "dollar-exact");
    exact.subscribe_ok(&[("$dollar/b", 2)]);

    let mut publisher = RawClient::login_admin(broker.addr, 4, "dollar-publisher");
    publisher.publish("$dollar/b", 1, false, b"dollar");
    publisher.publish("plain/b", 1, false, b"plain");

    // A filter that names the `$` topic matches it, so the broker did route the message.
    let publish = exact.next_publish(Duration::from_secs(5)).expect("`$dollar/b` did not receive a client's PUBLISH to it");
    assert_eq!(publish.payload, b"dollar");
    // MQTT-4.7.2-1: filters starting with a wildcard do not match topics starting with `$`.
    let received: BTreeSet<String> = wildcards.drain_publishes(Duration::from_secs(1)).into_iter().map(|publish| publish.topic).collect();
    assert_eq!(received, BTreeSet::from(["plain/b".to_string()]), "topics received by `+/+` and `#`");
}

#[test]
fn wildcard_matching() {
    let broker = Broker::start("");
    let topics = [
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "/finance",
        "Sport/tennis",
    ];
    // Expected matches from MQTT 3.1.1 section 4.7.1 and its examples.
    let cases: [(&str, &[&str]); 9] = [
        ("sport/tennis/+", &["sport/tennis/player1"]),
        ("sport/#", &["sport", "sport/", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking"]),
        ("sport/tennis/#", &["sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking"]),
        ("sport/+", &["sport/", "sport/tennis"]),
        ("+/+", &["sport/", "sport/tennis", "/finance", "Sport/tennis"]),
        ("/+", &["/finance"]),
        ("+", &["sport"]),
        ("+/tennis/#", &["sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking", "Sport/tennis"]),
        ("sport/tennis", &["sport/tennis"]),
    ];

    let mut subscribers: Vec<(&str, RawClient)> = Vec::new();
    for (index, &(filter, _)) in cases.iter().enumerate() {
        let mut client = RawClient::login_admin(broker.addr, 4, &format!("wildcard-{index}"));
        client.subscribe_ok(&[(filter, 1), (END_MARKER_TOPIC, 1)]);
        subscribers.push((filter, client));
    }

    let mut publisher = RawClient::login_admin(broker.addr, 4, "wildcard-publisher");
    for topic in topics {
        publisher.publish(topic, 1, false, topic.as_bytes());
    }
    publisher.publish(END_MARKER_TOPIC, 1, false, b"end");

    for ((filter, client), (_, expected)) in subscribers.iter_mut().zip(cases.iter()) {
        let received: BTreeSet<String> = topics_until_marker(client, filter).into_iter().collect();
        let expected: BTreeSet<String> = expected.iter().map(|topic| topic.to_string()).collect();
        assert_eq!(received, expected, "topics matched by filter {filter:?}");
    }
}

#[test]
fn shared_subscription_splits_load() {
    let broker = Broker::start("");
    let filter = "$share/workers/jobs/new";
    let mut first = RawClient::login_admin(broker.addr, 5, "worker-1");
    first.subscribe_ok(&[(filter, 1)]);
    let mut second = RawClient::login_admin(broker.addr, 5, "worker-2");
    second.subscribe_ok(&[(filter, 1)]);
    let mut observer = RawClient::login_admin(broker.addr, 5, "observer");
    observer.subscribe_ok(&[("jobs/new", 1)]);

    const COUNT: usize = 100;
    let mut publisher = RawClient::login_admin(broker.addr, 5, "dispatcher");
    for index in 0..COUNT {
        publisher.publish("jobs/new", 1, false, format!("job-{index}").as_bytes());
    }

    // Every message goes to exactly one member of the group; a plain subscriber gets all.
    let observed = observer.expect_publishes(COUNT, Duration::from_secs(10));
    assert_eq!(observed.len(), COUNT);

    let mut deliveries: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_worker = Vec::new();
    for (name, client) in [("worker-1", &mut first), ("worker-2", &mut second)] {
        let received = client.drain_publishes(Duration::from_secs(2));
        for publish in &received {
            assert_eq!(publish.topic, "jobs/new", "{name} got a topic other than the one published");
            *deliveries.entry(publish.payload_text()).or_default() += 1;
        }
        per_worker.push((name, received.len()));
    }

    let duplicates: Vec<_> = deliveries.iter().filter(|(_, count)| **count > 1).collect();
    assert!(duplicates.is_empty(), "messages delivered to both group members: {duplicates:?}");
    assert_eq!(deliveries.len(), COUNT, "distinct messages delivered to the group; per worker {per_worker:?}");
    for (name, count) in &per_worker {
        assert!(*count > 0, "{name} received none of {COUNT} messages; per worker {per_worker:?}");
    }
}

#[test]
fn versions_interoperate() {
    let broker = Broker::start("");
    let mut subscribers = Vec::new();
    for version in Version::ALL {
        let mut args = vec!["-V", version.flag(), "-t", "mixed/#", "-q", "1", "-C", "3", "-W", "15"];
        args.extend(mosquitto::admin_login());
        subscribers.push((version, Subscriber::start(&broker, &args)));
    }

    for version in Version::ALL {
        let topic = format!("mixed/{}", version.flag());
        mosquitto::publish_ok(&broker, version, &topic, 1, &format!("from-{}", version.flag()));
    }

    let expected: BTreeSet<String> = Version::ALL.iter().map(|version| format!("from-{}", version.flag())).collect();
    for (version, subscriber) in subscribers {
        let (code, messages) = subscriber.wait(Duration::from_secs(20));
        assert_eq!(code, Some(0), "mosquitto_sub {version:?} exit code");
        let payloads: BTreeSet<String> = messages.iter().map(|message| message.payload.clone()).collect();
        assert_eq!(payloads, expected, "messages received by the {version:?} subscriber");
    }
}

#[test]
fn v31_publisher_to_v5_subscriber() {
    let broker = Broker::start("");
    let mut subscriber = RawClient::login_admin(broker.addr, 5, "modern");
    subscriber.subscribe_ok(&[("legacy/temperature", 2)]);
    let mut publisher = RawClient::login_admin(broker.addr, 3, "legacy");

    publisher.publish("legacy/temperature", 2, false, b"21.5");

    let publish = subscriber
        .next_publish(Duration::from_secs(5))
        .expect("v5 subscriber received nothing from the v3.1 publisher");
    assert_eq!(publish.topic, "legacy/temperature");
    assert_eq!(publish.payload, b"21.5");
    assert_eq!(publish.qos, 2);
}

/// Subscribes a client to its own topic at QoS 2, publishes at QoS 0, 1 and 2 on the same
/// connection, and checks that each message comes back once at the QoS it was sent with.
fn own_messages_each_qos(level: u8) {
    let broker = Broker::start("");
    let client_id = format!("own-messages-{level}");
    RawClient::login_admin(broker.addr, level, &client_id).disconnect();

    let mut client = RawClient::login_admin(broker.addr, level, &client_id);
    client.subscribe_ok(&[("own/messages", 2)]);
    for qos in 0..=2u8 {
        client.publish("own/messages", qos, false, format!("qos {qos}").as_bytes());
    }

    let received = client.expect_publishes(3, Duration::from_secs(5));
    let extra = client.drain_publishes(Duration::from_millis(500));
    assert!(extra.is_empty(), "protocol level {level}: more than 3 deliveries: {extra:?}");
    let delivered: BTreeMap<String, u8> = received.iter().map(|publish| (publish.payload_text(), publish.qos)).collect();
    let expected: BTreeMap<String, u8> = (0..=2u8).map(|qos| (format!("qos {qos}"), qos)).collect();
    assert_eq!(delivered, expected, "protocol level {level}: payload and QoS of each delivery");
}

#[test]
fn own_messages_each_qos_v311() {
    own_messages_each_qos(4);
}

#[test]
fn own_messages_each_qos_v5() {
    own_messages_each_qos(5);
}

// MQTT 5.0 section 3.3.2.3.4: toward a client that announced Topic Alias Maximum 1, a
// server may set alias 1 with the topic once and then send the topic as an empty string.
// Aliases are optional for a server, but `test_server_topic_alias` of the Eclipse Paho
// MQTT 5.0 interoperability suite (eclipse/paho.mqtt.testing) expects them.
#[test]
fn topic_alias_sent_to_client() {
    let broker = conformance_support::start_broker("");
    let (mut subscriber, _) = Wire::v5(&broker, "alias-receiver", Props::new().two(prop::TOPIC_ALIAS_MAXIMUM, 1));
    subscriber.subscribe_ok(1, &[("alias/sent", 2)]);
    let mut publisher = Wire::login(&broker, 5, "alias-sender");
    for qos in 0..=2u8 {
        publisher.publish("alias/sent", qos, false, u16::from(qos) + 1, &Props::new(), b"x");
    }

    let received = subscriber.drain_publishes(QUIET);
    assert_eq!(received.len(), 3, "deliveries: {received:?}");
    let aliases: Vec<Option<&Value>> = received.iter().map(|message| message.property(prop::TOPIC_ALIAS)).collect();
    assert_eq!(aliases, vec![Some(&Value::Two(1)); 3], "Topic Alias of each delivery: {received:?}");
    let topics: Vec<&str> = received.iter().map(|message| message.topic.as_str()).collect();
    assert_eq!(topics, vec!["alias/sent", "", ""], "the first delivery sets the alias, the others use it");
}
