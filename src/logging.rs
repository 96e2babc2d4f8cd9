//! Log output: `tracing` to standard error, level from RUST_LOG, `--log-level` or the config.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. RUST_LOG, when set, takes precedence over `level`.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}
