//! `store`: checks the durable store, or moves a damaged one aside and keeps what reads.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use lpiotia_broker::persist::{self, STORE_FILE};

use crate::{settings, Cli};

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    action: StoreAction,
}

#[derive(Debug, Subcommand)]
enum StoreAction {
    /// Verify the store file and decode every record in it.
    Check,
    /// Move the store file aside (never deleted) and write a new one with every readable record.
    Repair,
}

pub fn run(cli: &Cli, args: &StoreArgs) -> anyhow::Result<ExitCode> {
    let path = settings::load(cli)?.data_dir.join(STORE_FILE);
    match args.action {
        StoreAction::Check => {
            let report = persist::check(&path)?;
            println!(
                "{}: ok ({} retained messages, {} sessions, {} queued messages)",
                path.display(),
                report.retained,
                report.sessions,
                report.queued
            );
        }
        StoreAction::Repair => {
            let report = persist::repair(&path)?;
            println!("moved the damaged store to {}", report.moved_to.display());
            if let Some(reason) = &report.unreadable {
                println!("it could not be opened ({reason}); the new store at {} is empty", path.display());
            } else {
                println!(
                    "kept {} retained messages, {} sessions and {} queued messages in {}; {} records could not be read",
                    report.retained,
                    report.sessions,
                    report.queued,
                    path.display(),
                    report.skipped
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
