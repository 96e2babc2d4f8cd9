//! Transports a listener serves: plain TCP, TLS, and WebSocket with or without TLS.
//!
//! Each turns an accepted TCP stream into a byte stream carrying MQTT packets. They run in
//! the connection's own task, never in the accept loop, each under a timeout.

pub mod tls;
pub mod websocket;

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;

/// The TLS settings of a listener, replaceable while it runs (certificates reloaded on SIGHUP).
#[derive(Debug, Clone)]
pub struct TlsConfigHandle(Arc<RwLock<Arc<rustls::ServerConfig>>>);

impl TlsConfigHandle {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        TlsConfigHandle(Arc::new(RwLock::new(config)))
    }

    /// Returns the settings new handshakes use.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.0.read())
    }

    /// Replaces the settings; connections already open keep theirs.
    pub fn replace(&self, config: Arc<rustls::ServerConfig>) {
        *self.0.write() = config;
    }
}

/// What a listener speaks on top of TCP.
#[derive(Debug, Clone)]
pub enum TransportConfig {
    Tcp,
    Tls(TlsConfigHandle),
    WebSocket {
        /// TLS under the WebSocket (`wss`); `None` for plain `ws` behind a reverse proxy.
        tls: Option<TlsConfigHandle>,
        /// HTTP path of the MQTT endpoint; `/` is accepted too.
        path: String,
        /// CA certificate served at `/ca.crt`, read at each request.
        ca_file: Option<PathBuf>,
    },
}

impl TransportConfig {
    pub fn name(&self) -> &'static str {
        match self {
            TransportConfig::Tcp => "tcp",
            TransportConfig::Tls(_) => "tls",
            TransportConfig::WebSocket { tls: Some(_), .. } => "wss",
            TransportConfig::WebSocket { tls: None, .. } => "ws",
        }
    }
}
