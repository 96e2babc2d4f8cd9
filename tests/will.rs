//! Will messages. The broker publishes a will when a connection ends without DISCONNECT,
//! after keep alive expiry and on takeover, but not after a clean DISCONNECT. The MQTT 5.0
//! Will Delay Interval postpones it.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::raw::{ConnectOptions, RawClient, Will};
use common::Broker;

/// Connects a subscriber to `topic` at QoS 1.
fn watcher(broker: &Broker, topic: &str) -> RawClient {
    let mut client = RawClient::login_admin(broker.addr, 4, "will-watcher");
    client.subscribe_ok(&[(topic, 1)]);
    client
}

fn will(topic: &str, payload: &str) -> Will {
    Will { qos: 1, ..Will::new(topic, payload) }
}

#[test]
fn will_on_socket_drop() {
    let broker = Broker::start("");
    let mut watcher = watcher(&broker, "will/drop");
    let client = RawClient::login(broker.addr, &ConnectOptions::admin(4, "dropper").will(will("will/drop", "gone")));

    client.drop_connection();

    let publish = watcher.next_publish(Duration::from_secs(5)).expect("no will after the socket was closed");
    assert_eq!(publish.topic, "will/drop");
    assert_eq!(publish.payload, b"gone");
    assert_eq!(publish.qos, 1);
}

#[test]
fn will_on_keep_alive_expiry() {
    let broker = Broker::start("");
    let mut watcher = watcher(&broker, "will/silent");
    let start = Instant::now();
    // The client stays connected but sends nothing, so keep alive expires after 1.5 s.
    let _client = RawClient::login(
        broker.addr,
        &ConnectOptions::admin(4, "silent").keep_alive(1).will(will("will/silent", "timed out")),
    );

    let publish = watcher.next_publish(Duration::from_secs(6)).expect("no will within 6 s of keep alive expiry");
    assert_eq!(publish.payload, b"timed out");
    assert!(start.elapsed() >= Duration::from_millis(1400), "will published after {:?}, before keep alive expired", start.elapsed());
}

#[test]
fn no_will_on_clean_disconnect() {
    let broker = Broker::start("");
    let mut watcher = watcher(&broker, "will/clean");
    for level in [3, 4, 5] {
        let client_id = format!("polite-{level}");
        let client = RawClient::login(broker.addr, &ConnectOptions::admin(level, &client_id).will(will("will/clean", "unexpected")));
        client.disconnect();
    }

    let received = watcher.drain_publishes(Duration::from_secs(2));
    assert!(received.is_empty(), "will published after DISCONNECT: {received:?}");
}

#[test]
fn will_on_takeover() {
    let broker = Broker::start("");
    let mut watcher = watcher(&broker, "will/takeover");
    let _first = RawClient::login(broker.addr, &ConnectOptions::admin(4, "device-7").will(will("will/takeover", "replaced")));

    let _second = RawClient::login_admin(broker.addr, 4, "device-7");

    let publish = watcher.next_publish(Duration::from_secs(5)).expect("no will after takeover");
    assert_eq!(publish.payload, b"replaced");
}

#[test]
fn will_delay_v5() {
    let broker = Broker::start("");
    let mut watcher = watcher(&broker, "will/delayed");
    // The will waits for the shorter of Will Delay Interval and Session Expiry Interval
    // (MQTT 5.0 section 3.1.3.2.2), so the session must outlive the delay.
    let delayed = Will { delay_secs: Some(2), ..will("will/delayed", "late") };
    let options = ConnectOptions::admin(5, "delayed-will").session_expiry(30).will(delayed);
    let client = RawClient::login(broker.addr, &options);

    let dropped_at = Instant::now();
    client.drop_connection();

    let early = watcher.next_publish(Duration::from_millis(1500));
    assert!(early.is_none(), "will published {:?} after the drop, before the 2 s delay: {early:?}", dropped_at.elapsed());

    let publish = watcher.next_publish(Duration::from_secs(5)).expect("no will within 6.5 s of the drop");
    let elapsed = dropped_at.elapsed();
    assert_eq!(publish.payload, b"late");
    assert!(elapsed >= Duration::from_millis(1900), "will published after {elapsed:?}, expected 2 s");
}

#[test]
fn will_delay_ends_with_session() {
    let broker = Broker::start("");
    let mut watcher = watcher(&broker, "will/no-session");
    // Without Session Expiry Interval the session ends with the connection, and the will is
    // published when its delay passes or the session ends, whichever comes first (MQTT 5.0
    // section 3.1.3.2.2). So a 5 s Will Delay Interval must not hold it back.
    let delayed = Will { delay_secs: Some(5), ..will("will/no-session", "at once") };
    let client = RawClient::login(broker.addr, &ConnectOptions::admin(5, "no-session-will").will(delayed));

    let dropped_at = Instant::now();
    client.drop_connection();

    let publish = watcher
        .next_publish(Duration::from_secs(4))
        .unwrap_or_else(|| panic!("no will within 4 s of the drop; the 5 s delay outlived the session"));
    let elapsed = dropped_at.elapsed();
    assert_eq!(publish.payload, b"at once");
    assert!(elapsed < Duration::from_secs(2), "will published {elapsed:?} after the session ended");
}

#[test]
fn will_delay_cancelled_by_reconnect() {
    let broker = Broker::start("");
    let mut watcher = watcher(&broker, "will/flaky");
    let delayed = Will { delay_secs: Some(2), ..will("will/flaky", "should not appear") };
    let options = ConnectOptions::admin(5, "flaky-link").session_expiry(30).clean(false).will(delayed);
    let client = RawClient::login(broker.addr, &options);
    client.drop_connection();

    // MQTT 5.0 section 3.1.2.5: a new connection to the session within the delay means
    // the will is not sent.
    thread::sleep(Duration::from_millis(500));
    let _back = RawClient::login(broker.addr, &ConnectOptions::admin(5, "flaky-link").session_expiry(30).clean(false));

    let received = watcher.drain_publishes(Duration::from_secs(4));
    assert!(received.is_empty(), "will published although the client reconnected within the delay: {received:?}");
}
