//! `status`: shows a running broker's clients, counters and recent refusals, read from its
//! `$SYS/broker/...` topics over a plain MQTT connection. The values are those of the
//! broker's last `$SYS` publication, so they may be up to `sys_interval_secs` old.
//!
//! The MQTT client is `rumqttc` (MQTT 3.1.1, no TLS features): the tests already use it, it
//! frames packets, sends keep alive pings and maps CONNACK return codes to errors, so this
//! file holds only the display. `mqtt-protocol-core`, which the broker uses, is sans-I/O and
//! would need a socket loop and ping timer written here. TLS listeners are not supported:
//! they require a client certificate, and `status` is meant for the loopback address.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use lpiotia_config::{ListenerKind, Settings};
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};
use serde::Deserialize;

use crate::{settings, Cli};

/// Topic filter of the subscription.
const SYS_FILTER: &str = "$SYS/broker/#";
const SYS_PREFIX: &str = "$SYS/broker/";
/// Topics (after `$SYS/broker/`) that a snapshot needs; the broker publishes them all in
/// each round, so a complete set arrives right after the subscription.
const REQUIRED_TOPICS: [&str; 12] = [
    "version",
    "uptime",
    "clients/connected",
    "clients/maximum",
    "messages/received",
    "messages/sent",
    "publish/messages/dropped",
    "bytes/received",
    "bytes/sent",
    "connections/refused",
    "clients/list",
    "refusals/recent",
];
/// Interval between two screens without `--once`.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Largest packet accepted: `clients/list` grows with the number of clients (about 200
/// bytes each), beyond rumqttc's default of 10 KiB.
const MAX_INCOMING_PACKET: usize = 64 * 1024 * 1024;
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Clears the terminal and moves the cursor home (ANSI ED 2 and CUP).
const CLEAR_SCREEN: &str = "\x1b[2J\x1b[H";

/// Arguments of `lpiotia-mqtt status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Broker host (default: the first enabled tcp listener's bind address, with 0.0.0.0 read
    /// as 127.0.0.1 and :: as ::1).
    #[arg(long, value_name = "HOST")]
    host: Option<String>,

    /// Broker port (default: that listener's port).
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,

    /// User name to connect with.
    #[arg(long, value_name = "NAME", default_value = "admin")]
    username: String,

    /// Read the password from the first line of FILE (default: prompt on the terminal).
    #[arg(long, value_name = "FILE", conflicts_with = "password_stdin")]
    password_file: Option<PathBuf>,

    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,

    /// Print one snapshot and exit, instead of refreshing every second.
    #[arg(long)]
    once: bool,

    /// Seconds to wait for the connection and the $SYS topics before giving up.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,
}

/// One connected client, an element of `$SYS/broker/clients/list`.
#[derive(Debug, Deserialize)]
struct ClientEntry {
    client_id: String,
    username: Option<String>,
    address: String,
    listener: String,
    protocol: String,
    /// Unix time in seconds.
    connected_since: u64,
    messages_in: u64,
    messages_out: u64,
}

/// One refused connection, an element of `$SYS/broker/refusals/recent`.
#[derive(Debug, Deserialize)]
struct RefusalEntry {
    /// Unix time in seconds.
    at: u64,
    listener: String,
    address: String,
    reason: String,
}

/// Latest value of each `$SYS/broker/...` topic, keyed by the part after `$SYS/broker/`.
#[derive(Default)]
struct SysValues {
    values: HashMap<String, String>,
}

impl SysValues {
    fn update(&mut self, topic: &str, payload: &[u8]) {
        if let Some(name) = topic.strip_prefix(SYS_PREFIX) {
            self.values.insert(name.to_owned(), String::from_utf8_lossy(payload).into_owned());
        }
    }

    fn missing(&self) -> Vec<&'static str> {
        REQUIRED_TOPICS.iter().copied().filter(|name| !self.values.contains_key(*name)).collect()
    }

    fn get(&self, name: &str) -> &str {
        self.values.get(name).map_or("?", String::as_str)
    }
}

pub fn run(cli: &Cli, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let (host, port) = target(cli, args)?;
    let password = read_password(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(watch(args, host, port, password))?;
    Ok(ExitCode::SUCCESS)
}

/// Returns `--host` and `--port`, or the address of the first enabled tcp listener.
fn target(cli: &Cli, args: &StatusArgs) -> anyhow::Result<(String, u16)> {
    if let (Some(host), Some(port)) = (&args.host, args.port) {
        return Ok((host.clone(), port));
    }
    let settings = settings::load(cli)?;
    let (name, bind) = default_listener(&settings)?;
    let host = args.host.clone().unwrap_or_else(|| match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.to_string(),
        ip => ip.to_string(),
    });
    let port = match args.port {
        Some(port) => port,
        None if bind.port() == 0 => {
            bail!("listener {name} binds port 0, so its port is chosen at start; pass --port PORT")
        }
        None => bind.port(),
    };
    Ok((host, port))
}

fn default_listener(settings: &Settings) -> anyhow::Result<(&String, std::net::SocketAddr)> {
    settings
        .listeners
        .iter()
        .find(|(_, listener)| listener.enabled && listener.kind == ListenerKind::Tcp)
        .map(|(name, listener)| (name, listener.bind))
        .ok_or_else(|| anyhow!("no enabled listener of kind tcp in the settings; pass --host HOST --port PORT"))
}

fn read_password(args: &StatusArgs) -> anyhow::Result<String> {
    let password = if let Some(file) = &args.password_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the password file {}", file.display()))?;
        text.lines().next().unwrap_or("").trim_end_matches('\r').to_owned()
    } else if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password of {}: ", args.username))?
    } else {
        bail!("no terminal to prompt for the password; pass --password-file FILE or --password-stdin");
    };
    if password.is_empty() {
        bail!("empty password; give the password of user {}", args.username);
    }
    Ok(password)
}

/// Connects, subscribes to `$SYS/broker/#` and prints snapshots: one with `--once`, else one
/// per second until the connection fails or the process is interrupted.
async fn watch(args: &StatusArgs, host: String, port: u16, password: String) -> anyhow::Result<()> {
    let address = format!("{host}:{port}");
    let mut options = MqttOptions::new(format!("lpiotia-mqtt-status-{}", std::process::id()), host, port);
    options.set_credentials(args.username.clone(), password);
    options.set_keep_alive(KEEP_ALIVE);
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_INCOMING_PACKET, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client.subscribe(SYS_FILTER, QoS::AtMostOnce).await?;

    let mut sys = SysValues::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let interactive = std::io::stdout().is_terminal();
    let mut refresh = tokio::time::interval(REFRESH_INTERVAL);
    let mut connected = false;
    loop {
        tokio::select! {
            event = eventloop.poll() => {
                match event.map_err(|error| connection_error(&address, &args.username, error))? {
                    Event::Incoming(Packet::ConnAck(_)) => connected = true,
                    Event::Incoming(Packet::Publish(publish)) => sys.update(&publish.topic, &publish.payload),
                    _ => {}
                }
                if args.once && sys.missing().is_empty() {
                    print!("{}", render(&sys, &address));
                    std::io::stdout().flush()?;
                    // A failed DISCONNECT changes nothing for the snapshot already printed.
                    let _ = client.try_disconnect();
                    return Ok(());
                }
            }
            _ = refresh.tick(), if !args.once => {
                let mut out = std::io::stdout().lock();
                if interactive {
                    write!(out, "{CLEAR_SCREEN}")?;
                }
                if sys.missing().is_empty() {
                    writeln!(out, "{}", render(&sys, &address))?;
                } else {
                    let received = REQUIRED_TOPICS.len() - sys.missing().len();
                    let total = REQUIRED_TOPICS.len();
                    writeln!(out, "{address}: waiting for the $SYS topics ({received} of {total} received)\n")?;
                }
                out.flush()?;
            }
            _ = tokio::time::sleep_until(deadline), if args.once || !connected || !sys.missing().is_empty() => {
                if !connected {
                    bail!("timed out after {} s connecting to {address}", args.timeout);
                }
                bail!(
                    "timed out after {} s waiting for the $SYS topics from {address}; missing: {}. Is sys_interval_secs 0 in the broker's settings?",
                    args.timeout,
                    sys.missing().join(", ")
                );
            }
        }
    }
}

fn connection_error(address: &str, username: &str, error: ConnectionError) -> anyhow::Error {
    match error {
        ConnectionError::ConnectionRefused(code) => {
            let reason = match code {
                ConnectReturnCode::BadUserNamePassword => format!("bad user name or password for user {username}"),
                // This broker, like Mosquitto 2.0, sends code 5 for a wrong MQTT 3.1.1 password.
                ConnectReturnCode::NotAuthorized => {
                    format!("not authorized; check the user name {username} and its password")
                }
                ConnectReturnCode::ServiceUnavailable => "server unavailable".to_owned(),
                other => format!("{other:?}"),
            };
            anyhow!("connection to {address} refused: {reason}")
        }
        other => anyhow!("connection to {address} failed: {other}"),
    }
}

/// Formats one snapshot: totals, the connected clients and the recent refusals.
fn render(sys: &SysValues, address: &str) -> String {
    let mut text = String::new();
    let uptime = sys.get("uptime").split_whitespace().next().and_then(|secs| secs.parse().ok());
    text.push_str(&format!(
        "{} at {address}, uptime {}\n",
        sys.get("version"),
        uptime.map_or_else(|| sys.get("uptime").to_owned(), format_duration)
    ));
    text.push_str(&format!(
        "clients:  {} connected, maximum {}, {} connections refused\n",
        sys.get("clients/connected"),
        sys.get("clients/maximum"),
        sys.get("connections/refused")
    ));
    text.push_str(&format!(
        "messages: {} received, {} sent, {} dropped\n",
        sys.get("messages/received"),
        sys.get("messages/sent"),
        sys.get("publish/messages/dropped")
    ));
    text.push_str(&format!(
        "bytes:    {} received, {} sent\n",
        format_bytes(sys.get("bytes/received")),
        format_bytes(sys.get("bytes/sent"))
    ));

    text.push('\n');
    match serde_json::from_str::<Vec<ClientEntry>>(sys.get("clients/list")) {
        Ok(clients) if clients.is_empty() => text.push_str("no connected clients\n"),
        Ok(mut clients) => {
            clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
            let header =
                ["CLIENT ID", "USERNAME", "ADDRESS", "LISTENER", "PROTOCOL", "CONNECTED SINCE (UTC)", "IN", "OUT"];
            let rows = clients.iter().map(|client| {
                vec![
                    client.client_id.clone(),
                    client.username.clone().unwrap_or_else(|| "-".to_owned()),
                    client.address.clone(),
                    client.listener.clone(),
                    client.protocol.clone(),
                    format_time(client.connected_since),
                    client.messages_in.to_string(),
                    client.messages_out.to_string(),
                ]
            });
            text.push_str(&table(&header, rows.collect()));
        }
        Err(error) => text.push_str(&format!("clients/list is not the expected JSON: {error}\n")),
    }

    text.push('\n');
    match serde_json::from_str::<Vec<RefusalEntry>>(sys.get("refusals/recent")) {
        Ok(refusals) if refusals.is_empty() => text.push_str("no recent refusals\n"),
        Ok(refusals) => {
            text.push_str("recent refusals:\n");
            let header = ["AT (UTC)", "LISTENER", "ADDRESS", "REASON"];
            let rows = refusals.iter().map(|refusal| {
                vec![format_time(refusal.at), refusal.listener.clone(), refusal.address.clone(), refusal.reason.clone()]
            });
            text.push_str(&table(&header, rows.collect()));
        }
        Err(error) => text.push_str(&format!("refusals/recent is not the expected JSON: {error}\n")),
    }
    text
}

/// Formats rows under `header` in left-aligned columns two spaces apart.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = header.iter().map(|title| (*title).to_owned()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header_row).chain(&rows) {
        let cells: Vec<String> =
            row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}", width = *width)).collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// Formats a Unix time as `YYYY-MM-DD HH:MM:SS` in UTC.
fn format_time(unix_secs: u64) -> String {
    let at = i64::try_from(unix_secs).ok().and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok());
    match at {
        Some(at) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        None => unix_secs.to_string(),
    }
}

/// Formats seconds as `2d 03:04:05`, or `03:04:05` under a day.
fn format_duration(total_secs: u64) -> String {
    let (days, rest) = (total_secs / 86_400, total_secs % 86_400);
    let clock = format!("{:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    if days > 0 {
        format!("{days}d {clock}")
    } else {
        clock
    }
}

/// Formats a byte count with a binary unit (KiB, MiB, GiB); other text is returned as it is.
fn format_bytes(text: &str) -> String {
    let Ok(bytes) = text.parse::<u64>() else {
        return text.to_owned();
    };
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Seconds since the Unix epoch, for tests of the time formatting.
#[cfg(test)]
fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_duration_splits_days() {
        assert_eq!(format_duration(59), "00:00:59");
        assert_eq!(format_duration(3_725), "01:02:05");
        assert_eq!(format_duration(2 * 86_400 + 3_600), "2d 01:00:00");
    }

    #[test]
    fn format_bytes_uses_binary_units() {
        assert_eq!(format_bytes("512"), "512 B");
        assert_eq!(format_bytes("1536"), "1.5 KiB");
        assert_eq!(format_bytes("?"), "?");
    }

    #[test]
    fn format_time_is_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_time(now_unix()).len(), 19);
    }

    #[test]
    fn sys_values_report_missing_topics() {
        let mut sys = SysValues::default();
        assert_eq!(sys.missing().len(), REQUIRED_TOPICS.len());
        for name in REQUIRED_TOPICS {
            sys.update(&format!("{SYS_PREFIX}{name}"), b"1");
        }
        sys.update("other/topic", b"x");
        assert!(sys.missing().is_empty());
        assert!(!sys.values.contains_key("other/topic"));
    }
}
