//! Service state messages for systemd (`Type=notify`), sent as in sd_notify(3).
//!
//! systemd passes the path of a datagram socket in `NOTIFY_SOCKET`; each message is one
//! datagram of `KEY=VALUE` lines. A path that starts with `@` names a socket in the abstract
//! namespace. When `NOTIFY_SOCKET` is unset, as outside systemd, every function here does
//! nothing. Written with the standard library alone because the protocol is one `sendto`.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lpiotia_broker::Broker;
use tracing::warn;

/// Environment variable in which systemd passes the notification socket.
const NOTIFY_SOCKET_VARIABLE: &str = "NOTIFY_SOCKET";

/// Interval of the `STATUS=` updates when the `$SYS` topics are off.
const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// Set after the first failed send, so that a broken socket is logged once, not every interval.
static SEND_FAILED: AtomicBool = AtomicBool::new(false);

/// Tells systemd that the service has started: every listener is bound.
pub fn ready() {
    send("READY=1");
}

/// Tells systemd that a reload has begun; [`ready`] ends it.
pub fn reloading() {
    send("RELOADING=1");
}

/// Tells systemd that the service is shutting down.
pub fn stopping() {
    send("STOPPING=1");
}

/// Sets the one-line status that `systemctl status` shows.
pub fn status(text: &str) {
    send(&format!("STATUS={text}"));
}

/// Publishes the number of connected clients as the service status every `interval`
/// (the `$SYS` interval, or 10 s when that is 0), until the broker shuts down. Does nothing
/// outside systemd.
pub fn spawn_status_updates(broker: Arc<Broker>, interval: Duration) {
    if std::env::var_os(NOTIFY_SOCKET_VARIABLE).is_none() {
        return;
    }
    let interval = if interval.is_zero() { DEFAULT_STATUS_INTERVAL } else { interval };
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = broker.shutdown.cancelled() => return,
            }
            let connected = broker.stats.clients_connected.load(Ordering::Relaxed);
            status(&format!("{connected} clients connected"));
        }
    });
}

/// Sends `message` to the socket in `NOTIFY_SOCKET`, if set. A failure is logged once and
/// otherwise ignored: systemd then reports a start timeout, which names the problem.
fn send(message: &str) {
    let Some(path) = std::env::var_os(NOTIFY_SOCKET_VARIABLE) else {
        return;
    };
    let result = socket_address(&path).and_then(|address| {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(message.as_bytes(), &address)
    });
    if let Err(error) = result {
        if !SEND_FAILED.swap(true, Ordering::Relaxed) {
            warn!(socket = %path.to_string_lossy(), %error, "cannot send the service state to systemd");
        }
    }
}

/// Returns the socket address for the value of `NOTIFY_SOCKET`: a file system path, or an
/// abstract name after a leading `@`.
fn socket_address(path: &OsStr) -> std::io::Result<SocketAddr> {
    match path.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(path),
    }
}
