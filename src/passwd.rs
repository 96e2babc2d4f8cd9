//! `passwd`: manages the users of the password file shared by all listeners.
//!
//! Changes are written atomically with mode 0600; a running broker picks them up on SIGHUP.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use lpiotia_auth::{validate_username, PasswordFile};

use crate::{settings, Cli};

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// Password file to edit (default: the password_file setting, or DATA_DIR/passwd).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,

    #[command(subcommand)]
    action: PasswdAction,
}

#[derive(Debug, Subcommand)]
enum PasswdAction {
    /// Add a user, or set a new password for an existing one.
    Add {
        username: String,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user.
    Delete { username: String },
    /// List the users.
    List,
}

pub fn run(cli: &Cli, args: &PasswdArgs) -> anyhow::Result<ExitCode> {
    let path = match &args.file {
        Some(path) => path.clone(),
        None => settings::load(cli)?.password_file(),
    };
    let mut file = if path.exists() {
        let report = PasswordFile::load(&path)?;
        for warning in &report.warnings {
            eprintln!("warning: {}: {warning}, line ignored", path.display());
        }
        report.file
    } else {
        PasswordFile::new()
    };
    match &args.action {
        PasswdAction::Add { username, password_stdin } => {
            validate_username(username)?;
            let password = if *password_stdin { read_password_stdin()? } else { prompt_password()? };
            let existed = file.contains(username);
            file.set_password(username, password.as_bytes())?;
            file.save(&path)?;
            let verb = if existed { "updated" } else { "added" };
            eprintln!("{verb} user {username} in {}; send SIGHUP to a running broker to apply", path.display());
        }
        PasswdAction::Delete { username } => {
            if !file.remove(username) {
                bail!("user {username} not found in {}", path.display());
            }
            file.save(&path)?;
            eprintln!("deleted user {username} from {}; send SIGHUP to a running broker to apply", path.display());
        }
        PasswdAction::List => {
            for name in file.usernames() {
                println!("{name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_password_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("empty password on standard input; write the password followed by a newline");
    }
    Ok(password)
}

fn prompt_password() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to prompt for the password; pass --password-stdin and write it on standard input");
    }
    let first = rpassword::prompt_password("Password: ")?;
    if first.is_empty() {
        bail!("empty password; type a password");
    }
    let second = rpassword::prompt_password("Password again: ")?;
    if first != second {
        bail!("the two passwords differ; run the command again");
    }
    Ok(first)
}
