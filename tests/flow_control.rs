//! Flow control under load: a subscriber that never reads must cost bounded memory, lose
//! messages alone (with a log line), and never hold back other subscribers.

mod common;

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::raw::{encode_publish, RawClient, ReadError, PUBACK};
use common::Broker;

/// Load tests share two cores; running both at once would measure the machine, not the broker.
static SERIAL: Mutex<()> = Mutex::new(());

const TOPIC: &str = "load/data";
const END_MARKER: &[u8] = b"end-marker";
const PUBLISHERS: usize = 4;
const LOAD_DURATION: Duration = Duration::from_secs(10);
const PAYLOAD_SIZE: usize = 1024;
/// PUBLISH packets written with one `write` call.
const BATCH: usize = 32;
/// Unacknowledged QoS 1 PUBLISH packets a publisher may have outstanding; far below the
/// 65535 packet ids, so no id is reused while in flight.
const MAX_UNACKED: u64 = 1000;
/// Allowed growth of the broker's resident memory over its value before the load.
const RSS_GROWTH_LIMIT_KB: u64 = 100 * 1024;
/// The slow subscriber's queue takes at most 16 MiB (`max_queued_bytes`), so publishing
/// more than twice that guarantees it overflows.
const MIN_PUBLISHED_BYTES: u64 = 32 * 1024 * 1024;

/// Totals of one publisher thread.
struct Published {
    messages: u64,
    bytes: u64,
}

/// Writes all of `data`, retrying on write timeouts so that no packet is cut in half.
/// Gives up (returns `false`) on errors or when the socket stays blocked past `give_up`.
fn write_fully(mut stream: &TcpStream, data: &[u8], give_up: Instant) -> bool {
    let mut offset = 0;
    while offset < data.len() {
        match stream.write(&data[offset..]) {
            Ok(0) => return false,
            Ok(count) => offset += count,
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if Instant::now() > give_up {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Starts a publisher that sends `TOPIC` messages at `qos` as fast as the broker reads them
/// until `deadline`.
fn spawn_publisher(broker: &Broker, index: usize, qos: u8, deadline: Instant) -> JoinHandle<Published> {
    let client = RawClient::login_admin(broker.addr, 4, &format!("load-publisher-{index}"));
    let writer = client.clone_stream();
    writer.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));

    // For QoS 1 a reader thread owns the client and counts PUBACKs. For QoS 0 the writer
    // thread keeps it, so the connection stays open until the load ends.
    let mut idle_client = Some(client);
    if qos > 0 {
        let mut client = idle_client.take().unwrap();
        let acked = Arc::clone(&acked);
        let finished = Arc::clone(&finished);
        thread::spawn(move || {
            while !finished.load(Ordering::Relaxed) {
                match client.read_packet(Duration::from_millis(200)) {
                    Ok(packet) if packet.kind == PUBACK => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) | Err(ReadError::Timeout) => {}
                    Err(_) => break,
                }
            }
        });
    }

    thread::spawn(move || {
        let _idle_client = idle_client;
        let payload = vec![b'x'; PAYLOAD_SIZE];
        let mut sent = Published { messages: 0, bytes: 0 };
        let mut batch = Vec::with_capacity(BATCH * (PAYLOAD_SIZE + 16));
        'load: while Instant::now() < deadline {
            while qos > 0 && sent.messages - acked.load(Ordering::Relaxed) > MAX_UNACKED {
                if Instant::now() > deadline {
                    break 'load;
                }
                thread::sleep(Duration::from_millis(1));
            }
            batch.clear();
            for offset in 0..BATCH as u64 {
                let packet_id = ((sent.messages + offset) % 65535 + 1) as u16;
                batch.extend_from_slice(&encode_publish(4, TOPIC, qos, false, packet_id, &payload));
            }
            if !write_fully(&writer, &batch, deadline + Duration::from_secs(5)) {
                break;
            }
            sent.messages += BATCH as u64;
            sent.bytes += batch.len() as u64;
        }
        finished.store(true, Ordering::Relaxed);
        sent
    })
}

/// A subscriber that reads everything as fast as it can in a background thread.
struct NormalSubscriber {
    received: Arc<AtomicU64>,
    got_marker: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl NormalSubscriber {
    fn start(broker: &Broker, qos: u8) -> NormalSubscriber {
        let mut client = RawClient::login_admin(broker.addr, 4, "normal-consumer");
        client.subscribe_ok(&[(TOPIC, qos)]);
        let received = Arc::new(AtomicU64::new(0));
        let got_marker = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, got_marker, stop) = (Arc::clone(&received), Arc::clone(&got_marker), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(publish) = client.next_publish(Duration::from_millis(200)) {
                        received.fetch_add(1, Ordering::Relaxed);
                        if publish.payload == END_MARKER {
                            got_marker.store(true, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        NormalSubscriber { received, got_marker, stop, thread }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.join().is_err() {
            panic!("the normal subscriber's connection failed during the load (see its panic above)");
        }
    }
}

fn slow_consumer(qos: u8) {
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let broker = Broker::start("");

    // Subscribes, then never reads: the broker's writes to it stall once the socket
    // buffers are full, and for QoS 1 no PUBACK ever frees an in-flight slot.
    let mut slow = RawClient::login_admin(broker.addr, 4, "slow-consumer");
    slow.subscribe_ok(&[(TOPIC, qos)]);
    let normal = NormalSubscriber::start(&broker, qos);

    let rss_before = broker.rss_kb();
    let load_start = Instant::now();
    let deadline = load_start + LOAD_DURATION;
    let publishers: Vec<_> = (0..PUBLISHERS).map(|index| spawn_publisher(&broker, index, qos, deadline)).collect();

    let mut rss_peak = rss_before;
    while Instant::now() < deadline {
        rss_peak = rss_peak.max(broker.rss_kb());
        thread::sleep(Duration::from_millis(200));
    }
    let mut published = Published { messages: 0, bytes: 0 };
    for publisher in publishers {
        let totals = publisher.join().expect("publisher thread panicked");
        published.messages += totals.messages;
        published.bytes += totals.bytes;
    }
    rss_peak = rss_peak.max(broker.rss_kb());
    let load_seconds = load_start.elapsed().as_secs_f64();
    let received_during_load = normal.received.load(Ordering::Relaxed);
    eprintln!(
        "QoS {qos}: published {} messages ({:.1} MiB) in {load_seconds:.1} s; normal subscriber received {received_during_load}; \
         broker RSS {rss_before} kB before, peak {rss_peak} kB",
        published.messages,
        published.bytes as f64 / (1024.0 * 1024.0)
    );

    // The end marker goes through the same queue as the load, so it is published again
    // until it arrives: a full queue may drop one copy, but must drain.
    let mut marker_publisher = RawClient::login_admin(broker.addr, 4, "marker-publisher");
    let marker_seen = common::wait_until(Duration::from_secs(30), || {
        if normal.got_marker.load(Ordering::Relaxed) {
            return true;
        }
        marker_publisher.publish(TOPIC, 1, false, END_MARKER);
        thread::sleep(Duration::from_millis(450));
        normal.got_marker.load(Ordering::Relaxed)
    });
    let received_total = normal.received.load(Ordering::Relaxed);
    normal.finish();

    assert!(
        published.bytes >= MIN_PUBLISHED_BYTES,
        "publishers sent only {} bytes in {load_seconds:.1} s, too little to fill the slow subscriber's queue",
        published.bytes
    );
    assert!(received_during_load > 0, "the normal subscriber received nothing while the slow one stalled");
    assert!(
        marker_seen,
        "the normal subscriber did not receive the end marker within 30 s after the load ({received_total} messages in all)"
    );
    let growth = rss_peak.saturating_sub(rss_before);
    assert!(
        growth < RSS_GROWTH_LIMIT_KB,
        "broker RSS grew by {growth} kB ({rss_before} kB before, peak {rss_peak} kB), limit {RSS_GROWTH_LIMIT_KB} kB"
    );
    let drop_line = broker.wait_for_log("dropped", Duration::from_secs(10));
    assert!(drop_line.contains("WARN"), "drop log line is not a warning: {drop_line}");
    drop(slow);
}

#[test]
fn slow_consumer_qos0() {
    slow_consumer(0);
}

#[test]
fn slow_consumer_qos1() {
    slow_consumer(1);
}
