//! `lpiotia-mqtt`: the MQTT broker and its administration commands.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod certs;
mod healthcheck;
mod init;
mod logging;
mod notify;
mod passwd;
mod serve;
mod settings;
mod status;
mod store;
mod tls;
mod uninstall;

/// MQTT 3.1, 3.1.1 and 5.0 broker with one password file for all listeners.
#[derive(Debug, Parser)]
#[command(name = "lpiotia-mqtt", version, about)]
struct Cli {
    /// Config file (TOML); default /etc/lpiotia-mqtt/config.toml if it exists.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Data directory holding the password file, certificates and store (overrides data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Log level: error, warn, info, debug or trace (overrides log_level; RUST_LOG wins over both).
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (the default command).
    Serve,
    /// Create and manage the CA, the server certificate and client certificates.
    Certs(certs::CertsArgs),
    /// Add, update, delete or list users of the password file.
    Passwd(passwd::PasswdArgs),
    /// Print the effective configuration (secrets masked), or the errors in it.
    CheckConfig,
    /// Check or repair the durable store (stop the broker first).
    Store(store::StoreArgs),
    /// Check that the broker answers MQTT on a plain listener: exit 0 on any CONNACK, else 1.
    Healthcheck(healthcheck::HealthcheckArgs),
    /// First-run setup: config file, CA and server certificate, first user, .env for Docker Compose.
    Init(init::InitArgs),
    /// Show the connected clients, counters and recent refusals of a running broker.
    Status(status::StatusArgs),
    /// Stop and remove the systemd service and the Compose stack; --purge also deletes the data.
    Uninstall(uninstall::UninstallArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.as_ref().unwrap_or(&Command::Serve) {
        Command::Serve => serve::run(&cli),
        Command::Passwd(args) => passwd::run(&cli, args),
        Command::Certs(args) => certs::run(&cli, args),
        Command::CheckConfig => settings::check_config(&cli),
        Command::Store(args) => store::run(&cli, args),
        Command::Healthcheck(args) => healthcheck::run(&cli, args),
        Command::Init(args) => init::run(&cli, args),
        Command::Status(args) => status::run(&cli, args),
        Command::Uninstall(args) => uninstall::run(&cli, args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
