//! `healthcheck`: checks that a running broker replies to MQTT, for container health checks.
//!
//! Sends an MQTT 3.1.1 CONNECT without credentials to a plain TCP listener and succeeds on
//! any CONNACK, including a rejection. A CONNACK proves that the listener accepts
//! connections and that the broker parses MQTT and replies, so no password has to be stored
//! for the check. Exit status 0 means healthy and 1 unhealthy, as Docker's HEALTHCHECK
//! expects, with a one-line reason on stderr.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use lpiotia_config::{ListenerKind, Settings};

use crate::{settings, Cli};

/// Time allowed for the TCP connection, the CONNECT and the CONNACK together.
const TIMEOUT: Duration = Duration::from_secs(3);

/// MQTT control packet types (MQTT 3.1.1, section 2.2.1), in the high nibble of the first byte.
const CONNECT_HEADER: u8 = 0x10;
const CONNACK_TYPE: u8 = 2;
const DISCONNECT_PACKET: [u8; 2] = [0xE0, 0x00];

/// Arguments of `lpiotia-mqtt healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Plain MQTT (tcp) listener to check, as HOST:PORT. Default: the bind address of the
    /// first enabled tcp listener in the settings (by name), with 0.0.0.0 replaced by
    /// 127.0.0.1 and [::] by [::1].
    #[arg(long, value_name = "HOST:PORT")]
    address: Option<String>,
}

/// Runs the check and returns exit status 0 on a CONNACK. Otherwise it returns an error,
/// which `main` prints on one line before exiting with status 1.
pub fn run(cli: &Cli, args: &HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let targets = match &args.address {
        Some(address) => resolve(address)?,
        None => vec![default_address(&settings::load(cli)?)?],
    };
    let start = Instant::now();
    let deadline = start + TIMEOUT;
    let (address, return_code) = check_any(&targets, deadline)?;
    println!(
        "healthy: CONNACK from {address} after {} ms (return code {return_code}: {})",
        start.elapsed().as_millis(),
        describe_return_code(return_code)
    );
    Ok(ExitCode::SUCCESS)
}

/// Resolves `HOST:PORT`. A numeric address needs no resolver, which matters in the static
/// binary of the container image: glibc's getaddrinfo loads NSS modules that the image lacks.
fn resolve(address: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let targets: Vec<SocketAddr> = address
        .to_socket_addrs()
        .with_context(|| format!("invalid --address {address:?}: expected HOST:PORT, like 127.0.0.1:1883"))?
        .collect();
    if targets.is_empty() {
        bail!("--address {address:?} resolved to no IP address");
    }
    Ok(targets)
}

/// Returns the address of the first enabled tcp listener, with an unspecified IP
/// (0.0.0.0 or ::) replaced by the loopback address of the same family.
fn default_address(settings: &Settings) -> anyhow::Result<SocketAddr> {
    let (name, listener) = settings
        .listeners
        .iter()
        .find(|(_, listener)| listener.enabled && listener.kind == ListenerKind::Tcp)
        .ok_or_else(|| anyhow!("no enabled listener of kind tcp in the settings; pass --address HOST:PORT"))?;
    let mut address = listener.bind;
    if address.port() == 0 {
        bail!("listener {name} binds port 0, so its port is chosen at start; pass --address HOST:PORT");
    }
    if address.ip().is_unspecified() {
        let loopback = match address.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        address.set_ip(loopback);
    }
    Ok(address)
}

/// Tries each address in turn until one replies with a CONNACK. Returns that address and the
/// CONNACK return code, or the error of the last address.
fn check_any(targets: &[SocketAddr], deadline: Instant) -> anyhow::Result<(SocketAddr, u8)> {
    let mut last_error = anyhow!("no address to check");
    for &address in targets {
        match check(address, deadline) {
            Ok(return_code) => return Ok((address, return_code)),
            Err(error) => last_error = error.context(format!("unhealthy: no CONNACK from {address}")),
        }
    }
    Err(last_error)
}

/// Connects to `address`, sends CONNECT, reads the CONNACK and returns its return code.
fn check(address: SocketAddr, deadline: Instant) -> anyhow::Result<u8> {
    let mut stream = TcpStream::connect_timeout(&address, remaining(deadline)?).context("TCP connection failed")?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    stream.write_all(&connect_packet()).context("sending CONNECT failed")?;

    let mut connack = [0u8; 4];
    read_exact_before(&mut stream, &mut connack, deadline).context(
        "reading CONNACK failed (if the broker logs a refused connection, check that the listener's allow list contains the loopback address)",
    )?;
    let packet_type = connack[0] >> 4;
    if packet_type != CONNACK_TYPE || connack[1] != 2 {
        bail!(
            "expected a CONNACK, received bytes {:02x?}: is this a plain MQTT (tcp) listener?",
            &connack
        );
    }

    // DISCONNECT lets the broker log a clean disconnect. The result is known already, so a
    // write error here is ignored.
    let _ = stream.write_all(&DISCONNECT_PACKET);
    let _ = stream.shutdown(Shutdown::Both);
    Ok(connack[3])
}

/// Builds an MQTT 3.1.1 CONNECT with clean session, keep alive 10 s and no credentials.
/// The client id names the health check and its process ID. It makes the check
/// recognizable in the broker's log, and two concurrent checks never take over each
/// other's session.
fn connect_packet() -> Vec<u8> {
    let client_id = format!("lpiotia-healthcheck-{}", std::process::id());
    let mut body = Vec::new();
    body.extend_from_slice(&[0x00, 0x04]);
    body.extend_from_slice(b"MQTT");
    body.push(4); // protocol level of MQTT 3.1.1
    body.push(0x02); // connect flags: clean session only
    body.extend_from_slice(&10u16.to_be_bytes()); // keep alive
    let id_len = u16::try_from(client_id.len()).expect("client id fits in 65535 bytes");
    body.extend_from_slice(&id_len.to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());

    // The body is shorter than 128 bytes, so its remaining length is a single byte.
    let remaining_length = u8::try_from(body.len()).expect("CONNECT body under 128 bytes");
    let mut packet = vec![CONNECT_HEADER, remaining_length];
    packet.extend_from_slice(&body);
    packet
}

/// Fills `buffer` from `stream`, failing once `deadline` passes.
fn read_exact_before(stream: &mut TcpStream, buffer: &mut [u8], deadline: Instant) -> anyhow::Result<()> {
    let mut filled = 0;
    while filled < buffer.len() {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(&mut buffer[filled..]) {
            Ok(0) => bail!("the broker closed the connection after {filled} bytes"),
            Ok(count) => filled += count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                bail!("timed out after {} s", TIMEOUT.as_secs())
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Returns the time left before `deadline`, or a time-out error when none is left.
fn remaining(deadline: Instant) -> anyhow::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("timed out after {} s", TIMEOUT.as_secs());
    }
    Ok(left)
}

/// Names a CONNACK return code of MQTT 3.1.1 (section 3.2.2.3).
fn describe_return_code(code: u8) -> &'static str {
    match code {
        0 => "accepted",
        1 => "unacceptable protocol version",
        2 => "client id rejected",
        3 => "server unavailable",
        4 => "bad username or password",
        5 => "not authorized",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_packet_has_consistent_lengths() {
        let packet = connect_packet();
        assert_eq!(packet[0], CONNECT_HEADER);
        assert_eq!(usize::from(packet[1]), packet.len() - 2, "remaining length");
        let id_len = usize::from(u16::from_be_bytes([packet[12], packet[13]]));
        assert_eq!(id_len, packet.len() - 14, "client id length");
        assert!(packet[14..].starts_with(b"lpiotia-healthcheck-"));
    }

    #[test]
    fn default_address_replaces_unspecified_ip() {
        let settings = lpiotia_config::load_from(None, &[]).expect("embedded defaults load");
        let address = default_address(&settings).expect("defaults have a tcp listener");
        assert_eq!(address, "127.0.0.1:1883".parse::<SocketAddr>().unwrap());
    }
}
