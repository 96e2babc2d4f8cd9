//! Loading the settings for every command, with the global flags applied.

use std::process::ExitCode;

use anyhow::Context;
use lpiotia_config::Settings;

use crate::Cli;

/// Loads the settings and applies `--data-dir`.
pub fn load(cli: &Cli) -> anyhow::Result<Settings> {
    let mut settings = lpiotia_config::load(cli.config.as_deref()).context("invalid configuration")?;
    if let Some(dir) = &cli.data_dir {
        settings.data_dir = dir.clone();
    }
    Ok(settings)
}

/// `check-config`: prints the effective configuration, or the error and exit status 1.
pub fn check_config(cli: &Cli) -> anyhow::Result<ExitCode> {
    let settings = load(cli)?;
    if let Some(path) = settings.acl_file() {
        let acl = lpiotia_auth::AclFile::load(&path)?;
        if acl.rule_count() == 0 {
            eprintln!("warning: the ACL file {} has no rules, so every PUBLISH and SUBSCRIBE is denied", path.display());
        }
    }
    print!("{}", settings.to_toml_masked());
    Ok(ExitCode::SUCCESS)
}
