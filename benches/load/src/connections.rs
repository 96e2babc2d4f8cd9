//! Idle connections: opens many MQTT sessions, measures connects per second and the broker's
//! memory per connection from its RSS before and after, then keeps them open for `settle` and closes them.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{self, Login};
use crate::measure::{self, CpuMeter, Report};

pub struct ConnectionsConfig {
    pub broker: SocketAddr,
    pub login: Login,
    pub count: usize,
    /// Sessions being opened at the same time.
    pub concurrency: usize,
    /// Local addresses used in turn, so that many connections do not exhaust one address's ephemeral ports.
    pub sources: Vec<IpAddr>,
    /// Time the sessions stay open after the last CONNACK, before the broker's RSS is read.
    pub settle: Duration,
    pub broker_pid: Option<u32>,
    pub run_id: String,
}

pub async fn run(config: &ConnectionsConfig) -> io::Result<Report> {
    let rss_before = config.broker_pid.and_then(measure::rss_kib);
    let limit = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let cpu = CpuMeter::start();
    let started = Instant::now();
    for index in 0..config.count {
        let permit = limit.clone().acquire_owned().await.map_err(io::Error::other)?;
        let source = config.sources.get(index % config.sources.len().max(1)).copied();
        let broker = config.broker;
        let login = config.login.clone();
        let client_id = format!("{}-c{index}", config.run_id);
        tasks.spawn(async move {
            let opened = client::open(broker, source, &login, &client_id, true).await;
            drop(permit);
            opened
        });
    }
    let mut streams = Vec::with_capacity(config.count);
    let mut failures = 0usize;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(io::Error::other)? {
            Ok((stream, _)) => streams.push(stream),
            Err(error) => {
                if failures < 5 {
                    eprintln!("mqtt-load: connection failed: {error}");
                }
                failures += 1;
            }
        }
    }
    let connect_secs = started.elapsed().as_secs_f64().max(1e-3);
    let generator_cpu = cpu.percent();

    tokio::time::sleep(config.settle).await;
    let rss_after = config.broker_pid.and_then(measure::rss_kib);

    let mut report = Report::default();
    report.set("connected", streams.len() as f64);
    report.set("failed", failures as f64);
    report.set("connects_per_sec", streams.len() as f64 / connect_secs);
    report.set("gen_cpu_pct", generator_cpu);
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        report.set("rss_before_mib", before as f64 / 1024.0);
        report.set("rss_after_mib", after as f64 / 1024.0);
        let per_connection = (after as f64 - before as f64) * 1024.0 / streams.len().max(1) as f64;
        report.set("bytes_per_conn", per_connection);
    }
    drop(streams);
    Ok(report)
}
