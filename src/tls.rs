//! Listener setup for `serve`: transports, TLS files, first-start certificates, reloads
//! and expiry warnings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lpiotia_broker::transport::{TlsConfigHandle, TransportConfig};
use lpiotia_broker::ListenerConfig;
use lpiotia_certs::TlsOptions;
use lpiotia_config::{ListenerKind, ListenerSettings, Settings};
use tracing::{error, info, warn};

/// Days before expiry from which the CA and server certificates are warned about.
const EXPIRY_WARNING_DAYS: u32 = 30;
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// A TLS listener's files and its live settings, rebuilt on SIGHUP.
pub struct TlsListener {
    name: String,
    options: TlsOptions,
    handle: TlsConfigHandle,
}

/// Builds every enabled listener. Creates the CA and server certificate first if a TLS
/// listener uses the data directory's files and there is no CA yet.
pub fn listener_configs(settings: &Settings) -> anyhow::Result<(Vec<ListenerConfig>, Vec<TlsListener>)> {
    let enabled: Vec<(&String, &ListenerSettings)> = settings.listeners.iter().filter(|(_, l)| l.enabled).collect();
    let uses_own_certificates = enabled.iter().any(|(_, l)| l.kind.uses_tls() && l.cert_file.is_none());
    if uses_own_certificates {
        bootstrap_certificates(&settings.data_dir)?;
    }
    let mut configs = Vec::new();
    let mut tls_listeners = Vec::new();
    for (name, listener) in enabled {
        let tls = if listener.kind.uses_tls() {
            let options = tls_options(&settings.data_dir, listener);
            let config = lpiotia_certs::server_tls_config(&options)
                .map_err(|error| anyhow::anyhow!("listener {name}: {error}"))?;
            let handle = TlsConfigHandle::new(config);
            tls_listeners.push(TlsListener { name: name.clone(), options, handle: handle.clone() });
            Some(handle)
        } else {
            None
        };
        let transport = match (listener.kind, tls) {
            (ListenerKind::Tcp, _) => TransportConfig::Tcp,
            (ListenerKind::Tls, Some(handle)) => TransportConfig::Tls(handle),
            (ListenerKind::Ws | ListenerKind::Wss, tls) => TransportConfig::WebSocket {
                tls,
                path: listener.path.clone(),
                ca_file: Some(ca_file(&settings.data_dir, listener)),
            },
            (ListenerKind::Tls, None) => unreachable!("a tls listener always gets TLS settings"),
        };
        configs.push(ListenerConfig {
            name: name.clone(),
            bind: listener.bind,
            allow: listener.allow.clone(),
            allow_anonymous: listener.allow_anonymous,
            max_connections: listener.max_connections,
            transport,
            handshake_timeout: Duration::from_secs(listener.handshake_timeout_secs),
            certificate_must_match_username: listener.certificate_must_match_username,
        });
    }
    Ok((configs, tls_listeners))
}

fn ca_file(data_dir: &Path, listener: &ListenerSettings) -> PathBuf {
    listener.ca_file.clone().unwrap_or_else(|| lpiotia_certs::ca_cert_path(data_dir))
}

fn tls_options(data_dir: &Path, listener: &ListenerSettings) -> TlsOptions {
    let mut client_ca_files = vec![ca_file(data_dir, listener)];
    client_ca_files.extend(listener.extra_ca_files.iter().cloned());
    TlsOptions {
        cert_file: listener.cert_file.clone().unwrap_or_else(|| lpiotia_certs::server_cert_path(data_dir)),
        key_file: listener.key_file.clone().unwrap_or_else(|| lpiotia_certs::server_key_path(data_dir)),
        client_ca_files,
        crl_file: Some(listener.crl_file.clone().unwrap_or_else(|| lpiotia_certs::crl_path(data_dir))),
        require_client_cert: listener.require_certificate,
        max_fragment_size: listener.max_fragment_size,
        alpn: Vec::new(),
    }
}

fn bootstrap_certificates(data_dir: &Path) -> anyhow::Result<()> {
    let Some(report) = lpiotia_certs::bootstrap(data_dir)? else { return Ok(()) };
    info!(
        ca = %report.ca_cert.display(),
        ca_fingerprint_sha256 = %report.ca_fingerprint_sha256,
        "created a CA for this broker; give ca.crt to clients and compare this fingerprint when you do"
    );
    if let Some(server_cert) = &report.server_cert {
        info!(certificate = %server_cert.display(), names = %report.server_names.join(", "), "created the server certificate");
    }
    Ok(())
}

/// Rebuilds each TLS listener's settings from its files; a listener whose files fail keeps
/// the settings it had.
pub fn reload(listeners: &[TlsListener]) {
    for listener in listeners {
        match lpiotia_certs::server_tls_config(&listener.options) {
            Ok(config) => {
                listener.handle.replace(config);
                info!(listener = %listener.name, "TLS certificate, key, CA and CRL reloaded");
            }
            Err(error) => {
                error!(listener = %listener.name, "TLS files not reloaded, the previous ones stay in force: {error}");
            }
        }
    }
}

/// Logs a warning for each certificate of the data directory that expires within 30 days,
/// now and then once a day.
pub fn spawn_expiry_warnings(data_dir: PathBuf) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(EXPIRY_CHECK_INTERVAL);
        loop {
            interval.tick().await;
            for warning in lpiotia_certs::expiry_warnings(&data_dir, EXPIRY_WARNING_DAYS) {
                warn!("{warning}");
            }
        }
    });
}
