//! The `$SYS/broker/...` topics, published as retained messages every `sys_interval`.
//!
//! Names follow Mosquitto's tree, so tools written for it keep working. Two additions carry
//! JSON for `lpiotia-mqtt status`: `$SYS/broker/clients/list` (the connected clients) and
//! `$SYS/broker/refusals/recent` (the last refused connections). `$SYS` messages are never
//! written to the store: they are published again after a restart.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mqtt_protocol_core::mqtt::packet::Qos;
use mqtt_protocol_core::mqtt::IntoPayload;
use serde_json::json;

use crate::broker::Broker;
use crate::message::Message;

/// Prefix of every topic published here.
pub const SYS_PREFIX: &str = "$SYS/";

/// Load-average windows, as in Mosquitto: 1, 5 and 15 minutes.
const WINDOWS: [(&str, f64); 3] = [("1min", 60.0), ("5min", 300.0), ("15min", 900.0)];

/// Exponentially weighted per-minute rates of one counter.
struct LoadAverage {
    name: &'static str,
    last: u64,
    averages: [f64; 3],
}

impl LoadAverage {
    fn new(name: &'static str, current: u64) -> Self {
        LoadAverage { name, last: current, averages: [0.0; 3] }
    }

    fn update(&mut self, current: u64, elapsed_secs: f64) {
        let per_minute = (current.saturating_sub(self.last)) as f64 * 60.0 / elapsed_secs.max(0.001);
        self.last = current;
        for (average, (_, window)) in self.averages.iter_mut().zip(WINDOWS) {
            let decay = (-elapsed_secs / window).exp();
            *average = *average * decay + per_minute * (1.0 - decay);
        }
    }
}

/// Publishes the `$SYS` tree every `interval` until the broker shuts down.
pub fn spawn(broker: Arc<Broker>, interval: Duration) {
    tokio::spawn(async move {
        let started = Instant::now();
        let stats = &broker.stats;
        let mut loads = [
            LoadAverage::new("messages/received", stats.messages_received.load(Ordering::Relaxed)),
            LoadAverage::new("messages/sent", stats.messages_sent.load(Ordering::Relaxed)),
            LoadAverage::new("bytes/received", stats.bytes_received.load(Ordering::Relaxed)),
            LoadAverage::new("bytes/sent", stats.bytes_sent.load(Ordering::Relaxed)),
            LoadAverage::new("connections", stats.clients_total.load(Ordering::Relaxed)),
        ];
        let mut maximum_connected = 0;
        let mut ticker = tokio::time::interval(interval);
        let mut last_tick = Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = broker.shutdown.cancelled() => return,
            }
            let elapsed = last_tick.elapsed().as_secs_f64();
            last_tick = Instant::now();
            let counters = [
                stats.messages_received.load(Ordering::Relaxed),
                stats.messages_sent.load(Ordering::Relaxed),
                stats.bytes_received.load(Ordering::Relaxed),
                stats.bytes_sent.load(Ordering::Relaxed),
                stats.clients_total.load(Ordering::Relaxed),
            ];
            for (load, current) in loads.iter_mut().zip(counters) {
                load.update(current, elapsed);
            }
            let connected = stats.clients_connected.load(Ordering::Relaxed);
            maximum_connected = maximum_connected.max(connected);
            publish_tree(&broker, started, connected, maximum_connected, &loads);
        }
    });
}

fn publish_tree(broker: &Broker, started: Instant, connected: u64, maximum_connected: u64, loads: &[LoadAverage]) {
    let stats = &broker.stats;
    let sessions = broker.session_count() as u64;
    let mut values: Vec<(String, String)> = vec![
        ("version".into(), format!("lpiotia-mqtt version {}", env!("CARGO_PKG_VERSION"))),
        ("uptime".into(), format!("{} seconds", started.elapsed().as_secs())),
        ("clients/connected".into(), connected.to_string()),
        ("clients/active".into(), connected.to_string()),
        ("clients/total".into(), sessions.max(connected).to_string()),
        ("clients/disconnected".into(), sessions.saturating_sub(connected).to_string()),
        ("clients/maximum".into(), maximum_connected.to_string()),
        ("messages/received".into(), stats.messages_received.load(Ordering::Relaxed).to_string()),
        ("messages/sent".into(), stats.messages_sent.load(Ordering::Relaxed).to_string()),
        ("publish/messages/dropped".into(), stats.messages_dropped.load(Ordering::Relaxed).to_string()),
        ("bytes/received".into(), stats.bytes_received.load(Ordering::Relaxed).to_string()),
        ("bytes/sent".into(), stats.bytes_sent.load(Ordering::Relaxed).to_string()),
        ("retained messages/count".into(), broker.retained.read().len().to_string()),
        ("subscriptions/count".into(), broker.router.read().len().to_string()),
        ("connections/refused".into(), stats.connections_refused.load(Ordering::Relaxed).to_string()),
        ("clients/list".into(), clients_json(broker)),
        ("refusals/recent".into(), refusals_json(broker)),
    ];
    for load in loads {
        for ((window, _), average) in WINDOWS.iter().zip(load.averages) {
            values.push((format!("load/{}/{window}", load.name), format!("{average:.2}")));
        }
    }
    for (name, value) in values {
        broker.publish(Message {
            topic: Arc::from(format!("{SYS_PREFIX}broker/{name}")),
            payload: value.into_bytes().into_payload(),
            qos: Qos::AtMostOnce,
            retain: true,
            properties: Vec::new(),
            expires_at: None,
            origin: 0,
        });
    }
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn clients_json(broker: &Broker) -> String {
    let clients: Vec<serde_json::Value> = broker
        .stats
        .clients()
        .iter()
        .map(|client| {
            json!({
                "client_id": client.client_id,
                "username": client.username,
                "address": client.peer.to_string(),
                "listener": client.listener,
                "protocol": client.protocol,
                "connected_since": unix_secs(client.connected_at),
                "messages_in": client.messages_in.load(Ordering::Relaxed),
                "messages_out": client.messages_out.load(Ordering::Relaxed),
            })
        })
        .collect();
    serde_json::Value::Array(clients).to_string()
}

fn refusals_json(broker: &Broker) -> String {
    let refusals: Vec<serde_json::Value> = broker
        .stats
        .recent_refusals()
        .iter()
        .map(|refusal| {
            json!({
                "at": unix_secs(refusal.at),
                "listener": refusal.listener,
                "address": refusal.peer.to_string(),
                "reason": refusal.reason,
            })
        })
        .collect();
    serde_json::Value::Array(refusals).to_string()
}
