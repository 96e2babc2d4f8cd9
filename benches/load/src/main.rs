//! `mqtt-load`: load generator for comparing MQTT brokers, driven by benches/run.sh.
//!
//! Every command runs on one thread (a current-thread tokio runtime) so that `taskset` can
//! give the generator exactly one core, and prints its results as `key<TAB>value` lines.

mod client;
mod codec;
mod connections;
mod flow;
mod measure;
mod report;
mod sink;
mod sweep;
mod sys;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::Login;
use crate::flow::FlowConfig;
use crate::measure::Report;

#[derive(Parser)]
#[command(name = "mqtt-load", about = "Load generator for MQTT brokers (fan-in, fan-out, latency, connections, TLS, overload)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publishers → broker → subscribers, at full speed or a fixed rate, counting loss and latency.
    Flow(FlowArgs),
    /// Highest fixed rate of a flow with no loss and p99 latency under a bound.
    Sweep {
        #[command(flatten)]
        flow: FlowArgs,
        /// First rate tried, in messages per second over all publishers.
        #[arg(long, default_value_t = 5000.0)]
        start_rate: f64,
        /// Factor between two rates while every step passes.
        #[arg(long, default_value_t = 1.4)]
        growth: f64,
        /// Number of steps at most.
        #[arg(long, default_value_t = 8)]
        max_steps: usize,
        /// p99 latency bound of a passing step, in milliseconds.
        #[arg(long, default_value_t = 50.0)]
        p99_limit_ms: f64,
    },
    /// Opens idle connections and measures connects per second and broker memory per connection.
    Connections {
        #[command(flatten)]
        common: CommonArgs,
        /// Connections to open.
        #[arg(long, default_value_t = 5000)]
        count: usize,
        /// Connections being opened at the same time.
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
        /// Local source addresses, comma-separated, used in turn.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
        sources: Vec<IpAddr>,
        /// Seconds the connections stay open before the broker's RSS is read.
        #[arg(long, default_value_t = 2.0)]
        settle_secs: f64,
    },
    /// Full TLS handshakes with password authentication, workers in parallel.
    Tls {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long, default_value_t = 100)]
        parallel: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// CA certificate (PEM) to verify the broker with. Without it any certificate is accepted.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Server name sent in SNI and checked against the certificate.
        #[arg(long, default_value = "localhost")]
        server_name: String,
    },
    /// Trivial MQTT server that forwards every PUBLISH to every subscriber, to measure the generator's own limit.
    Sink {
        #[arg(long, default_value = "127.0.0.1:18830")]
        bind: SocketAddr,
        /// Seconds before the sink exits by itself.
        #[arg(long, default_value_t = 600.0)]
        lifetime_secs: f64,
    },
    /// Markdown table of a results file written by benches/run.sh.
    Report {
        results: PathBuf,
        /// Also list every collected value.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: SocketAddr,
    #[arg(long)]
    username: Option<String>,
    #[arg(long, env = "MQTT_LOAD_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// MQTT protocol version: 311 or 5.
    #[arg(long, default_value = "311", value_parser = ["311", "5"])]
    protocol: String,
    /// Keep alive sent in CONNECT, in seconds.
    #[arg(long, default_value_t = 300)]
    keep_alive: u16,
    /// PID of the broker, to read its RSS from /proc.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Prefix of topics and client ids.
    #[arg(long, default_value = "lpbench")]
    run_id: String,
}

impl CommonArgs {
    fn login(&self) -> Login {
        Login {
            level: if self.protocol == "5" { codec::V5 } else { codec::V311 },
            username: self.username.clone(),
            password: self.password.clone(),
            keep_alive_secs: self.keep_alive,
        }
    }
}

#[derive(Args, Clone)]
struct FlowArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long, default_value_t = 8)]
    publishers: usize,
    /// Subscribers reading at full speed.
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Subscribers reading at most --slow-rate messages per second.
    #[arg(long, default_value_t = 0)]
    slow_subscribers: usize,
    #[arg(long, default_value_t = 100.0)]
    slow_rate: f64,
    /// QoS of PUBLISH and of SUBSCRIBE (0 or 1).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// Messages per second over all publishers, or 0 for full speed.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds at the start not counted in rates.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Payload bytes (at least 20: sequence number, send time, publisher).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Unacknowledged QoS 1 PUBLISHes per publisher.
    #[arg(long, default_value_t = 20)]
    inflight: usize,
    /// One topic per publisher and a `#` subscription, instead of one shared topic.
    #[arg(long)]
    wildcard: bool,
    /// Subscribers keep their session: clean session 0 in 3.1.1, a one-hour Session Expiry Interval in 5.0.
    #[arg(long)]
    persistent: bool,
    /// Maximum wait, in seconds, for queued messages after publishing ends.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Read $SYS/broker/publish/messages/dropped after the run, listening this many seconds (0: not read).
    #[arg(long, default_value_t = 0.0)]
    sys_dropped_wait: f64,
}

impl FlowArgs {
    fn config(&self) -> FlowConfig {
        FlowConfig {
            broker: self.common.broker,
            login: self.common.login(),
            publishers: self.publishers.max(1),
            subscribers: self.subscribers,
            slow_subscribers: self.slow_subscribers,
            slow_rate: self.slow_rate,
            publish_qos: self.qos,
            subscribe_qos: self.qos,
            rate: self.rate,
            duration: Duration::from_secs_f64(self.duration),
            warmup: Duration::from_secs_f64(self.warmup.min(self.duration / 2.0)),
            payload_len: self.payload,
            inflight: self.inflight,
            wildcard: self.wildcard,
            persistent_subscribers: self.persistent,
            drain: Duration::from_secs_f64(self.drain),
            broker_pid: self.common.broker_pid,
            run_id: self.common.run_id.clone(),
        }
    }
}

const DROPPED_TOPIC: &str = "$SYS/broker/publish/messages/dropped";

async fn run_flow(args: &FlowArgs) -> std::io::Result<Report> {
    let mut report = flow::run(&args.config()).await?;
    if args.sys_dropped_wait > 0.0 {
        let login = args.common.login();
        let client_id = format!("{}-sys", args.common.run_id);
        let listen = Duration::from_secs_f64(args.sys_dropped_wait);
        let dropped = sys::read_number(args.common.broker, &login, &client_id, DROPPED_TOPIC, listen).await?;
        let lost = report.get("lost").unwrap_or(0.0) + report.get("slow_lost").unwrap_or(0.0);
        match dropped {
            Some(dropped) => {
                report.set("broker_dropped", dropped);
                report.set("drop_count_gap", (lost - dropped).abs());
            }
            None => eprintln!("mqtt-load: no value on {DROPPED_TOPIC} within {listen:?}"),
        }
    }
    if let (Some(delivered), Some(published)) = (report.get("delivered_rate"), report.get("pub_rate")) {
        report.set("fast_pace_pct", delivered * 100.0 / published.max(1e-9) / args.subscribers.max(1) as f64);
    }
    Ok(report)
}

async fn run(command: Command) -> std::io::Result<()> {
    let report = match command {
        Command::Flow(args) => run_flow(&args).await?,
        Command::Sweep { flow, start_rate, growth, max_steps, p99_limit_ms } => {
            let sweep_config = sweep::SweepConfig { start_rate, growth, max_steps, p99_limit_ms };
            sweep::run(&flow.config(), &sweep_config).await?
        }
        Command::Connections { common, count, concurrency, sources, settle_secs } => {
            let config = connections::ConnectionsConfig {
                broker: common.broker,
                login: common.login(),
                count,
                concurrency,
                sources,
                settle: Duration::from_secs_f64(settle_secs),
                broker_pid: common.broker_pid,
                run_id: common.run_id.clone(),
            };
            connections::run(&config).await?
        }
        Command::Tls { common, parallel, duration, ca_file, server_name } => {
            let config = tls::TlsConfig {
                broker: common.broker,
                login: common.login(),
                parallel,
                duration: Duration::from_secs_f64(duration),
                ca_file,
                server_name,
                run_id: common.run_id.clone(),
            };
            tls::run(Arc::new(config)).await?
        }
        Command::Sink { bind, lifetime_secs } => {
            sink::run(bind, Duration::from_secs_f64(lifetime_secs)).await?;
            return Ok(());
        }
        Command::Report { results, all } => {
            report::print(&results, all)?;
            return Ok(());
        }
    };
    report.print();
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mqtt-load: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mqtt-load: {error}");
            ExitCode::FAILURE
        }
    }
}
