//! Message flows: publishers → broker → subscribers, at full speed or at a fixed rate, with
//! loss, duplicates and latency counted from the sequence numbers and send times in payloads.
//!
//! One run: all subscribers connect and subscribe, then all publishers connect, publish for
//! `duration`, and wait for their PUBACKs. Subscribers are then given up to `drain` to receive
//! what is still queued (slow subscribers read at full speed from then on). Rates are measured
//! between `warmup` and `duration`, so connection set-up and the drain do not count.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::time::{interval, sleep, sleep_until, timeout_at, MissedTickBehavior};

use crate::client::{self, Login};
use crate::codec::{self, Packet};
use crate::measure::{self, CpuMeter, Report};

/// Messages encoded per socket write at full speed.
const FULL_SPEED_BATCH: u64 = 32;
/// Upper bound of messages one publisher sends in one 1 ms tick when it catches up at a fixed rate.
const MAX_CATCH_UP_BATCH: u64 = 1000;
/// Time without any new delivery after which the drain gives up waiting.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Shape of one run.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    pub broker: SocketAddr,
    pub login: Login,
    pub publishers: usize,
    /// Subscribers that read as fast as they can.
    pub subscribers: usize,
    /// Subscribers that read at most `slow_rate` messages per second until the drain.
    pub slow_subscribers: usize,
    pub slow_rate: f64,
    pub publish_qos: u8,
    pub subscribe_qos: u8,
    /// Messages per second over all publishers, or 0 for as fast as the broker accepts them.
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub payload_len: usize,
    /// Unacknowledged QoS 1 PUBLISHes per publisher.
    pub inflight: usize,
    /// Each publisher has its own topic and subscribers use `PREFIX/#`. Otherwise all share one topic.
    pub wildcard: bool,
    /// Subscribers connect with clean session 0 in MQTT 3.1.1, or with a Session Expiry Interval of one hour in 5.0.
    pub persistent_subscribers: bool,
    /// Maximum wait for queued messages after publishing ends.
    pub drain: Duration,
    pub broker_pid: Option<u32>,
    /// Prefix of topics and client ids, unique per run.
    pub run_id: String,
}

/// Counts and latencies seen by one subscriber.
struct SubscriberStats {
    unique: u64,
    duplicates: u64,
    latency_us: Histogram<u64>,
    error: Option<String>,
}

/// Deliveries to one group of subscribers (fast or slow).
struct Group {
    delivered: Arc<AtomicU64>,
    members: usize,
    slow_rate: Option<f64>,
    prefix: &'static str,
}

/// Counts of one publisher.
struct PublisherStats {
    sent: u64,
    acked: u64,
    error: Option<String>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

fn topic_of(config: &FlowConfig, publisher: usize) -> String {
    if config.wildcard {
        format!("{}/p{publisher}", config.run_id)
    } else {
        format!("{}/t", config.run_id)
    }
}

fn filter_of(config: &FlowConfig) -> String {
    if config.wildcard {
        format!("{}/#", config.run_id)
    } else {
        format!("{}/t", config.run_id)
    }
}

/// Runs one flow and returns its measurements.
pub async fn run(config: &FlowConfig) -> io::Result<Report> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let drain_started = Arc::new(AtomicBool::new(false));
    let groups = [
        Group { delivered: Arc::new(AtomicU64::new(0)), members: config.subscribers, slow_rate: None, prefix: "" },
        Group {
            delivered: Arc::new(AtomicU64::new(0)),
            members: config.slow_subscribers,
            slow_rate: Some(config.slow_rate),
            prefix: "slow_",
        },
    ];

    let filter = filter_of(config);
    let mut subscriber_tasks = Vec::new();
    for (group_index, group) in groups.iter().enumerate() {
        for member in 0..group.members {
            let client_id = format!("{}-g{group_index}s{member}", config.run_id);
            let clean = !config.persistent_subscribers;
            let (mut stream, mut buf) = client::open(config.broker, None, &config.login, &client_id, clean).await?;
            client::subscribe(&mut stream, &mut buf, config.login.level, &filter, config.subscribe_qos).await?;
            let task = tokio::spawn(run_subscriber(
                stream,
                buf,
                config.login.level,
                config.publishers,
                group.delivered.clone(),
                group.slow_rate,
                drain_started.clone(),
                stop_rx.clone(),
            ));
            subscriber_tasks.push((group_index, task));
        }
    }

    let mut publisher_streams = Vec::new();
    for index in 0..config.publishers {
        let client_id = format!("{}-p{index}", config.run_id);
        publisher_streams.push(client::open(config.broker, None, &config.login, &client_id, true).await?);
    }

    let sent_total = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + config.duration;
    let mut publisher_tasks = Vec::new();
    for (index, (stream, buf)) in publisher_streams.into_iter().enumerate() {
        publisher_tasks.push(tokio::spawn(run_publisher(
            stream,
            buf,
            index as u32,
            topic_of(config, index),
            config.clone(),
            sent_total.clone(),
            start,
            deadline,
            stop_rx.clone(),
        )));
    }

    let rss_peak = Arc::new(AtomicU64::new(0));
    let rss_before = config.broker_pid.and_then(measure::rss_kib);
    if let Some(pid) = config.broker_pid {
        tokio::spawn(sample_rss(pid, rss_peak.clone(), stop_rx.clone()));
    }

    sleep_until((start + config.warmup).into()).await;
    let window_start = Instant::now();
    let cpu = CpuMeter::start();
    let sent_at_window_start = sent_total.load(Ordering::Relaxed);
    let delivered_at_window_start: Vec<u64> = groups.iter().map(|g| g.delivered.load(Ordering::Relaxed)).collect();

    sleep_until(deadline.into()).await;
    let window_secs = window_start.elapsed().as_secs_f64().max(1e-3);
    let generator_cpu = cpu.percent();
    let published_in_window = sent_total.load(Ordering::Relaxed) - sent_at_window_start;
    let delivered_in_window: Vec<u64> = groups
        .iter()
        .zip(&delivered_at_window_start)
        .map(|(g, before)| g.delivered.load(Ordering::Relaxed) - before)
        .collect();

    let mut sent = 0;
    let mut acked = 0;
    let mut errors = Vec::new();
    for task in publisher_tasks {
        let stats = task.await.map_err(io::Error::other)?;
        sent += stats.sent;
        acked += stats.acked;
        errors.extend(stats.error);
    }

    let drain_began = Instant::now();
    drain_started.store(true, Ordering::Relaxed);
    wait_for_drain(&groups, sent, config.drain).await;
    let drain_secs = drain_began.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);

    let mut report = Report::default();
    report.set("pub_rate", published_in_window as f64 / window_secs);
    report.set("sent", sent as f64);
    if config.publish_qos > 0 {
        report.set("acked", acked as f64);
    }
    report.set("gen_cpu_pct", generator_cpu);
    report.set("drain_secs", drain_secs);
    if let (Some(before), peak) = (rss_before, rss_peak.load(Ordering::Relaxed)) {
        report.set("rss_growth_mib", peak.saturating_sub(before) as f64 / 1024.0);
    }

    let mut per_group: Vec<(u64, u64, Histogram<u64>)> = groups.iter().map(|_| (0, 0, new_histogram())).collect();
    for (group_index, task) in subscriber_tasks {
        let stats = task.await.map_err(io::Error::other)?;
        let entry = &mut per_group[group_index];
        entry.0 += stats.unique;
        entry.1 += stats.duplicates;
        entry.2.add(&stats.latency_us).map_err(io::Error::other)?;
        errors.extend(stats.error);
    }
    for ((group, (unique, duplicates, latency)), delivered) in groups.iter().zip(per_group).zip(delivered_in_window) {
        if group.members == 0 {
            continue;
        }
        let expected = sent * group.members as u64;
        let lost = expected.saturating_sub(unique);
        let prefix = group.prefix;
        report.set(format!("{prefix}delivered_rate"), delivered as f64 / window_secs);
        report.set(format!("{prefix}received"), unique as f64);
        report.set(format!("{prefix}lost"), lost as f64);
        report.set(format!("{prefix}lost_pct"), if expected > 0 { lost as f64 * 100.0 / expected as f64 } else { 0.0 });
        report.set(format!("{prefix}duplicates"), duplicates as f64);
        for (name, quantile) in [("p50_ms", 0.50), ("p99_ms", 0.99), ("p999_ms", 0.999)] {
            report.set(format!("{prefix}{name}"), latency.value_at_quantile(quantile) as f64 / 1000.0);
        }
        report.set(format!("{prefix}max_ms"), latency.max() as f64 / 1000.0);
    }
    report.set("errors", errors.len() as f64);
    for error in errors.iter().take(5) {
        eprintln!("mqtt-load: {error}");
    }
    Ok(report)
}

/// Waits until every group received all `sent` messages, nothing arrived for [`DRAIN_IDLE`], or `limit` passed.
async fn wait_for_drain(groups: &[Group], sent: u64, limit: Duration) {
    let began = Instant::now();
    let total = || groups.iter().map(|g| g.delivered.load(Ordering::Relaxed)).sum::<u64>();
    let expected: u64 = groups.iter().map(|g| sent * g.members as u64).sum();
    let mut last_total = total();
    let mut last_change = Instant::now();
    while began.elapsed() < limit {
        let now_total = total();
        if now_total >= expected {
            return;
        }
        if now_total != last_total {
            last_total = now_total;
            last_change = Instant::now();
        } else if last_change.elapsed() >= DRAIN_IDLE {
            return;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Samples the broker's RSS every 100 ms, keeping the peak, until `stop` turns true.
async fn sample_rss(pid: u32, peak: Arc<AtomicU64>, mut stop: watch::Receiver<bool>) {
    let mut ticker = interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        if let Some(rss) = measure::rss_kib(pid) {
            peak.fetch_max(rss, Ordering::Relaxed);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_subscriber(
    stream: TcpStream,
    mut buf: BytesMut,
    level: u8,
    publishers: usize,
    delivered: Arc<AtomicU64>,
    slow_rate: Option<f64>,
    drain_started: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) -> SubscriberStats {
    let (mut reader, mut writer) = stream.into_split();
    let mut stats = SubscriberStats { unique: 0, duplicates: 0, latency_us: new_histogram(), error: None };
    // Next expected sequence number per publisher. Anything below it is a duplicate or out of order.
    let mut next_seq = vec![0u64; publishers];
    let mut acks = BytesMut::with_capacity(4096);
    let paced_since = Instant::now();
    let mut paced = 0u64;
    loop {
        loop {
            let packet = match codec::decode(&mut buf, level) {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(error) => {
                    stats.error = Some(error.to_string());
                    return stats;
                }
            };
            let Packet::Publish { qos, packet_id, payload, .. } = packet else { continue };
            let received_ns = measure::now_ns();
            if let Some((seq, sent_ns, publisher)) = measure::read_header(&payload) {
                match next_seq.get_mut(publisher as usize) {
                    Some(next) if seq >= *next => {
                        *next = seq + 1;
                        stats.unique += 1;
                        let _ = stats.latency_us.record((received_ns.saturating_sub(sent_ns) / 1000).max(1));
                    }
                    _ => stats.duplicates += 1,
                }
            }
            delivered.fetch_add(1, Ordering::Relaxed);
            if qos > 0 {
                codec::encode_puback(&mut acks, packet_id);
            }
            if let Some(rate) = slow_rate.filter(|_| !drain_started.load(Ordering::Relaxed)) {
                paced += 1;
                let due = paced_since + Duration::from_secs_f64(paced as f64 / rate);
                if due > Instant::now() {
                    if let Err(error) = flush(&mut writer, &mut acks).await {
                        stats.error = Some(error);
                        return stats;
                    }
                    sleep_until(due.into()).await;
                }
            }
        }
        if let Err(error) = flush(&mut writer, &mut acks).await {
            stats.error = Some(error);
            return stats;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return stats,
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => {
                    stats.error = Some("subscriber: broker closed the connection".into());
                    return stats;
                }
                Ok(_) => {}
                Err(error) => {
                    stats.error = Some(format!("subscriber: read failed: {error}"));
                    return stats;
                }
            },
        }
    }
}

async fn flush(writer: &mut OwnedWriteHalf, out: &mut BytesMut) -> Result<(), String> {
    if out.is_empty() {
        return Ok(());
    }
    writer.write_all(out).await.map_err(|error| format!("write failed: {error}"))?;
    out.clear();
    Ok(())
}

/// Reads PUBACKs for one publisher, returning a window permit for each.
async fn read_acks(mut reader: OwnedReadHalf, mut buf: BytesMut, level: u8, window: Arc<Semaphore>, acked: Arc<AtomicU64>, mut stop: watch::Receiver<bool>) {
    loop {
        while let Ok(Some(packet)) = codec::decode(&mut buf, level) {
            if let Packet::PubAck = packet {
                acked.fetch_add(1, Ordering::Relaxed);
                window.add_permits(1);
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_publisher(
    stream: TcpStream,
    buf: BytesMut,
    index: u32,
    topic: String,
    config: FlowConfig,
    sent_total: Arc<AtomicU64>,
    start: Instant,
    deadline: Instant,
    stop: watch::Receiver<bool>,
) -> PublisherStats {
    let level = config.login.level;
    let qos = config.publish_qos;
    let (reader, mut writer) = stream.into_split();
    let window = Arc::new(Semaphore::new(config.inflight.max(1)));
    let acked = Arc::new(AtomicU64::new(0));
    tokio::spawn(read_acks(reader, buf, level, window.clone(), acked.clone(), stop));

    let per_publisher_rate = config.rate / config.publishers as f64;
    let rated = per_publisher_rate > 0.0;
    let start_ns = measure::instant_ns(start);
    let mut ticker = interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut payload = vec![0u8; config.payload_len.max(measure::HEADER_LEN)];
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut seq = 0u64;
    let mut packet_id = 0u16;
    let hard_stop = deadline + config.drain;
    let mut error = None;

    sleep_until(start.into()).await;
    'publishing: while Instant::now() < deadline {
        let batch = if rated {
            ticker.tick().await;
            let due = (start.elapsed().as_secs_f64() * per_publisher_rate) as u64;
            due.saturating_sub(seq).min(MAX_CATCH_UP_BATCH)
        } else {
            FULL_SPEED_BATCH
        };
        let batch_ns = measure::now_ns();
        let mut count = 0;
        while count < batch {
            if qos > 0 {
                let permit = if count == 0 {
                    tokio::select! {
                        permit = window.clone().acquire_owned() => permit.ok(),
                        _ = sleep_until(deadline.into()) => break 'publishing,
                    }
                } else {
                    window.clone().try_acquire_owned().ok()
                };
                match permit {
                    Some(permit) => permit.forget(),
                    None => break,
                }
            }
            // At a fixed rate the send time is the scheduled one, so a publisher held back by
            // the broker shows up as latency instead of silently sending less.
            let sent_ns = if rated { start_ns + (seq as f64 * 1e9 / per_publisher_rate) as u64 } else { batch_ns };
            measure::write_header(&mut payload, seq, sent_ns, index);
            packet_id = if packet_id == u16::MAX { 1 } else { packet_id + 1 };
            codec::encode_publish(&mut out, level, topic.as_bytes(), qos, packet_id, &payload);
            seq += 1;
            count += 1;
        }
        if count == 0 {
            continue;
        }
        match timeout_at(hard_stop.into(), writer.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(write_error)) => {
                error = Some(format!("publisher {index}: write failed: {write_error}"));
                break;
            }
            Err(_) => {
                error = Some(format!("publisher {index}: write blocked past the drain limit"));
                break;
            }
        }
        out.clear();
        sent_total.fetch_add(count, Ordering::Relaxed);
    }

    if qos > 0 {
        while acked.load(Ordering::Relaxed) < seq && Instant::now() < hard_stop {
            sleep(Duration::from_millis(5)).await;
        }
    }
    out.clear();
    codec::encode_disconnect(&mut out);
    let _ = writer.write_all(&out).await;
    PublisherStats { sent: seq, acked: acked.load(Ordering::Relaxed), error }
}
