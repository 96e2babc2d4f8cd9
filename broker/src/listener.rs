//! Listeners: one accept loop per configured address.
//!
//! The accept loop only accepts, checks the peer address against the listener's allow-list
//! and connection limit, and spawns the connection task; handshakes and CONNECT are read in
//! that task, so a slow client never delays another.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::connection::{self, ListenerInfo, PeerInfo};
use crate::transport::websocket::{self, HttpOutcome, HttpSettings};
use crate::transport::{tls, TransportConfig};

/// Settings of one listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    /// Peer addresses allowed to connect; a connection from elsewhere is closed at once.
    pub allow: Vec<IpNet>,
    pub allow_anonymous: bool,
    /// Open connections allowed at once; 0 means no limit.
    pub max_connections: usize,
    pub transport: TransportConfig,
    /// Time allowed for the TLS handshake and the WebSocket upgrade, each.
    pub handshake_timeout: Duration,
    /// Refuse a client whose certificate Common Name differs from its MQTT username.
    pub certificate_must_match_username: bool,
}

impl ListenerConfig {
    /// Returns whether `ip` is in the allow-list; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// A bound listener, ready to accept.
pub struct Listener {
    config: ListenerConfig,
    socket: TcpListener,
}

impl Listener {
    /// Binds the listener's address and logs the address it got (port 0 picks a free port).
    pub async fn bind(config: ListenerConfig) -> std::io::Result<Self> {
        let socket = TcpListener::bind(config.bind).await.map_err(|error| {
            std::io::Error::new(error.kind(), format!("cannot listen on {} for listener {}: {error}", config.bind, config.name))
        })?;
        let address = socket.local_addr()?;
        info!(listener = %config.name, address = %address, transport = config.transport.name(), "listener ready");
        Ok(Listener { config, socket })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Accepts connections until the broker shuts down.
    pub async fn run(self, broker: Arc<Broker>) {
        let info = Arc::new(ListenerInfo {
            name: self.config.name.clone(),
            allow_anonymous: self.config.allow_anonymous,
            certificate_must_match_username: self.config.certificate_must_match_username,
        });
        let config = Arc::new(self.config.clone());
        let open = Arc::new(AtomicUsize::new(0));
        loop {
            let accepted = tokio::select! {
                accepted = self.socket.accept() => accepted,
                _ = broker.shutdown.cancelled() => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    error!(listener = %self.config.name, "accept failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            if !self.config.allows(peer.ip()) {
                warn!(listener = %self.config.name, peer = %peer, "connection refused: address not in the listener's allow-list");
                broker.stats.record_refusal(&self.config.name, peer, "address not in the listener's allow-list");
                drop(stream);
                continue;
            }
            let max = self.config.max_connections;
            if max > 0 && open.load(Ordering::Relaxed) >= max {
                warn!(listener = %self.config.name, peer = %peer, max_connections = max, "connection refused: listener is at max_connections");
                broker.stats.record_refusal(&self.config.name, peer, "listener is at max_connections");
                drop(stream);
                continue;
            }
            spawn_connection(&broker, stream, peer, &info, &config, &open);
        }
        info!(listener = %self.config.name, "listener stopped");
    }
}

fn spawn_connection(
    broker: &Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    info: &Arc<ListenerInfo>,
    config: &Arc<ListenerConfig>,
    open: &Arc<AtomicUsize>,
) {
    let _ = stream.set_nodelay(true);
    open.fetch_add(1, Ordering::Relaxed);
    let broker = Arc::clone(broker);
    let info = Arc::clone(info);
    let config = Arc::clone(config);
    let open = Arc::clone(open);
    tokio::spawn(async move {
        open_transport(broker, stream, peer, info, &config).await;
        open.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Runs the transport's handshakes in the connection's own task, then serves MQTT.
async fn open_transport(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr, info: Arc<ListenerInfo>, config: &ListenerConfig) {
    let timeout = config.handshake_timeout;
    match &config.transport {
        TransportConfig::Tcp => {
            connection::serve(broker, stream, PeerInfo { addr: peer, certificate_cn: None }, info).await;
        }
        TransportConfig::Tls(tls_config) => {
            let Some(stream) = tls_handshake(&broker, tls_config, stream, peer, &info, timeout).await else { return };
            let certificate_cn = tls::client_common_name(&stream);
            connection::serve(broker, stream, PeerInfo { addr: peer, certificate_cn }, info).await;
        }
        TransportConfig::WebSocket { tls: Some(tls_config), path, ca_file } => {
            let Some(stream) = tls_handshake(&broker, tls_config, stream, peer, &info, timeout).await else { return };
            let certificate_cn = tls::client_common_name(&stream);
            let http = http_settings(&broker, path, ca_file.as_deref());
            let Some(stream) = websocket_upgrade(&broker, stream, &http, peer, &info, timeout).await else { return };
            connection::serve(broker, stream, PeerInfo { addr: peer, certificate_cn }, info).await;
        }
        TransportConfig::WebSocket { tls: None, path, ca_file } => {
            let http = http_settings(&broker, path, ca_file.as_deref());
            let Some(stream) = websocket_upgrade(&broker, stream, &http, peer, &info, timeout).await else { return };
            connection::serve(broker, stream, PeerInfo { addr: peer, certificate_cn: None }, info).await;
        }
    }
}

async fn tls_handshake(
    broker: &Broker,
    config: &crate::transport::TlsConfigHandle,
    stream: TcpStream,
    peer: SocketAddr,
    info: &ListenerInfo,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tls::accept(config, stream, timeout).await {
        Ok(stream) => Some(stream),
        Err(error) => {
            warn!(listener = %info.name, peer = %peer, "connection refused: {error}");
            broker.stats.record_refusal(&info.name, peer, &error.to_string());
            None
        }
    }
}

fn http_settings<'a>(broker: &Broker, path: &'a str, ca_file: Option<&'a std::path::Path>) -> HttpSettings<'a> {
    let status_text = format!(
        "lpiotia-mqtt {}: {} clients connected",
        env!("CARGO_PKG_VERSION"),
        broker.stats.clients_connected.load(Ordering::Relaxed)
    );
    HttpSettings { mqtt_path: path, ca_file, status_text }
}

async fn websocket_upgrade<S>(
    broker: &Broker,
    stream: S,
    http: &HttpSettings<'_>,
    peer: SocketAddr,
    info: &ListenerInfo,
    timeout: Duration,
) -> Option<websocket::WsByteStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match websocket::accept(stream, http, timeout).await {
        Ok(HttpOutcome::Upgraded(stream)) => Some(stream),
        Ok(HttpOutcome::Answered { path, status }) => {
            info!(listener = %info.name, peer = %peer, path = %path, status, "answered HTTP GET");
            None
        }
        Err(error) => {
            warn!(listener = %info.name, peer = %peer, "connection refused: {error}");
            broker.stats.record_refusal(&info.name, peer, &error.to_string());
            None
        }
    }
}
