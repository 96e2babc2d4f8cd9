//! Log output: `tracing` to standard error, level from RUST_LOG, `--log-level` or the config.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. RUST_LOG, when set, takes precedence over `level`.
pub fn init(level: &str) {
    // rustls warns about every client that sends an IP address as SNI (mosquitto_pub -h
    // 127.0.0.1 does), which is harmless: keep its log to errors unless RUST_LOG says otherwise.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("{level},rustls=error")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}
