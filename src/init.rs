//! `init`: the first-run setup. It asks for the server's names, the CA passphrase, the first
//! MQTT user and the settings of the Docker Compose stack, then writes the config file, the
//! CA and server certificate, the password file, client certificates and the `.env` file of
//! `docker/compose.yaml`.
//!
//! Every question has a flag, and `--yes` takes the default for the others, so the same
//! setup runs without a terminal. A second run keeps what exists (config file, CA, server
//! certificate, users, valid client certificates, `.env`) and says so; `--force` replaces
//! it. Questions and the summary are in French when the locale says `fr`.

mod messages;
mod prompt;

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use lpiotia_auth::{validate_username, PasswordFile};
use lpiotia_certs::{CaOptions, CertError, KeyType};
use rand::distributions::{Alphanumeric, DistString};

use crate::Cli;
use messages::{fill, Language, Messages};
use prompt::Prompter;

/// Name of the config file written into the config directory.
const CONFIG_FILE_NAME: &str = "config.toml";
/// Name of the first MQTT user when neither `--admin-user` nor the reply names another.
const DEFAULT_ADMIN_USER: &str = "admin";
const DEFAULT_INFLUXDB_USER: &str = "admin";
const DEFAULT_INFLUXDB_ORG: &str = "iotiaquarium";
const DEFAULT_INFLUXDB_BUCKET: &str = "aquarium";
/// Length of generated passwords, in alphanumeric characters (about 119 bits).
const GENERATED_PASSWORD_LEN: usize = 20;
/// Shortest password that InfluxDB 2 accepts for its first user.
const MIN_INFLUXDB_PASSWORD_LEN: usize = 8;
/// Length of the generated InfluxDB admin token, in alphanumeric characters.
const ADMIN_TOKEN_LEN: usize = 48;
/// Mode of files holding secrets (`.env`); keys and the password file get it from their crates.
const SECRET_FILE_MODE: u32 = 0o600;
const DATA_DIR_MODE: u32 = 0o700;
const CONFIG_DIR_MODE: u32 = 0o755;
const CONFIG_FILE_MODE: u32 = 0o644;

/// Arguments of `lpiotia-mqtt init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory that receives config.toml (ignored when --config names the file). The
    /// default is not `config`, which in a clone of the repository is the config crate.
    #[arg(long, value_name = "DIR", default_value = "lpiotia-config")]
    config_dir: PathBuf,

    /// .env file for docker/compose.yaml (default: docker/.env when ./docker exists, else
    /// .env in the config directory).
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,

    /// Ask nothing: each question without a flag takes its default, and generated passwords
    /// are printed once.
    #[arg(long, short = 'y')]
    yes: bool,

    /// Replace the existing config file, CA, server certificate, first user's password,
    /// client certificates and .env file instead of keeping them.
    #[arg(long)]
    force: bool,

    /// DNS name for the server certificate, before the host's own names (repeatable). With
    /// --dns or --ip, init does not ask for the names.
    #[arg(long = "dns", value_name = "NAME")]
    dns_names: Vec<String>,

    /// IP address for the server certificate, in addition to the host's own addresses (repeatable).
    #[arg(long = "ip", value_name = "ADDR")]
    ips: Vec<IpAddr>,

    /// Put only the --dns and --ip values in the server certificate, not the host name,
    /// localhost, loopback and interface addresses.
    #[arg(long)]
    no_default_names: bool,

    /// Passphrase of the CA key on the first line of FILE: encrypts a new CA key, or unlocks
    /// an existing encrypted one.
    #[arg(long, value_name = "FILE", conflicts_with = "no_ca_passphrase")]
    ca_passphrase_file: Option<PathBuf>,

    /// Store a new CA key unencrypted (mode 0600) without asking.
    #[arg(long)]
    no_ca_passphrase: bool,

    /// Name of the first MQTT user (default: admin).
    #[arg(long, value_name = "NAME")]
    admin_user: Option<String>,

    /// Password of the first MQTT user, on the first line of FILE (default: generated).
    #[arg(long, value_name = "FILE")]
    admin_password_file: Option<PathBuf>,

    /// InfluxDB user of the Compose stack (default: admin).
    #[arg(long, value_name = "NAME")]
    influxdb_user: Option<String>,

    /// InfluxDB password, on the first line of FILE (default: generated).
    #[arg(long, value_name = "FILE")]
    influxdb_password_file: Option<PathBuf>,

    /// InfluxDB organization (default: iotiaquarium).
    #[arg(long, value_name = "NAME")]
    influxdb_org: Option<String>,

    /// InfluxDB bucket (default: aquarium).
    #[arg(long, value_name = "NAME")]
    influxdb_bucket: Option<String>,

    /// Client certificates to issue now, comma-separated names (default: none).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    clients: Option<Vec<String>>,

    /// Address on which the Compose stack publishes its ports (default: the first
    /// non-loopback IPv4 address of this host).
    #[arg(long, value_name = "ADDR")]
    lan_address: Option<IpAddr>,
}

/// Files and directories that `init` writes.
struct Paths {
    config_file: PathBuf,
    data_dir: PathBuf,
    env_file: PathBuf,
    password_file: PathBuf,
}

/// Password of the first user, as decided by the questions.
enum AdminPassword {
    /// A password to set, generated when none was typed or given.
    New { password: String, generated: bool },
    /// The user exists and keeps its password. `known` contains it when it was given and
    /// checked, for the `.env` file.
    Kept { known: Option<String> },
}

/// Settings of the Docker Compose stack written to `.env`.
struct ComposeSettings {
    lan_address: IpAddr,
    influxdb_user: String,
    influxdb_password: String,
    influxdb_password_generated: bool,
    influxdb_org: String,
    influxdb_bucket: String,
}

/// What this run writes, from flags, answers and defaults.
struct Plan {
    /// Passphrase of a new CA; `None` when the CA is kept or stays unencrypted.
    new_ca_passphrase: Option<String>,
    /// Passphrase that unlocks the CA key for signing.
    signing_passphrase: Option<String>,
    /// Names of a new server certificate; `None` when the current one is kept.
    server_names: Option<(Vec<String>, Vec<IpAddr>)>,
    admin_user: String,
    admin_password: AdminPassword,
    /// `None` when the existing `.env` is kept.
    compose: Option<ComposeSettings>,
    clients: Vec<String>,
}

/// Files created and kept, for the summary.
#[derive(Default)]
struct Outcome {
    created: Vec<PathBuf>,
    updated: Vec<PathBuf>,
    kept: Vec<PathBuf>,
}

pub fn run(cli: &Cli, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let text = Language::from_env().messages();
    let prompter = if args.yes { None } else { Some(Prompter::new(text)?) };
    let paths = resolve_paths(cli, args)?;
    if prompter.is_some() {
        println!("{}", text.intro);
    }

    let plan = ask(args, &paths, prompter.as_ref(), text)?;
    let mut outcome = Outcome::default();
    write_certificates(args, &paths, &plan, &mut outcome)?;
    write_password_file(&paths, &plan, &mut outcome)?;
    write_clients(&paths, &plan, &mut outcome)?;
    write_config_file(args, &paths, &mut outcome)?;
    write_env_file(&paths, &plan, &mut outcome)?;
    print_summary(&paths, &plan, &outcome, text)?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves the config file (`--config`, or `config.toml` in `--config-dir`), the data
/// directory (`--data-dir`, the existing config file's `data_dir`, or `./data`) and the
/// `.env` file, all made absolute so that the config file works from any directory.
fn resolve_paths(cli: &Cli, args: &InitArgs) -> anyhow::Result<Paths> {
    let config_file = match &cli.config {
        Some(path) => path.clone(),
        None => args.config_dir.join(CONFIG_FILE_NAME),
    };
    let config_file = std::path::absolute(&config_file)?;
    let data_dir = match &cli.data_dir {
        Some(dir) => dir.clone(),
        None if config_file.is_file() => {
            lpiotia_config::load(Some(&config_file))
                .with_context(|| format!("invalid existing config file {}", config_file.display()))?
                .data_dir
        }
        None => PathBuf::from("data"),
    };
    let data_dir = std::path::absolute(&data_dir)?;
    let config_dir = config_file.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let env_file = match &args.env_file {
        Some(path) => path.clone(),
        None if Path::new("docker").is_dir() => PathBuf::from("docker/.env"),
        None => config_dir.join(".env"),
    };
    Ok(Paths {
        config_file,
        password_file: data_dir.join("passwd"),
        env_file: std::path::absolute(&env_file)?,
        data_dir,
    })
}

/// Collects the plan: prints what is kept, then asks (or takes from flags and defaults)
/// only what this run writes.
fn ask(args: &InitArgs, paths: &Paths, prompter: Option<&Prompter>, text: &Messages) -> anyhow::Result<Plan> {
    let data_dir = &paths.data_dir;
    let ca_cert = lpiotia_certs::ca_cert_path(data_dir);
    let ca_exists = ca_cert.exists() || lpiotia_certs::ca_key_path(data_dir).exists();
    let keep_ca = ca_exists && !args.force;
    let server_cert = lpiotia_certs::server_cert_path(data_dir);
    let keep_server = keep_ca && server_cert.exists();
    let keep_env = paths.env_file.exists() && !args.force;
    let path_text = |path: &Path| path.display().to_string();

    if keep_ca {
        println!("{}", fill(text.keep_ca, &[("path", &path_text(&ca_cert))]));
    }
    if keep_server {
        println!("{}", fill(text.keep_server, &[("path", &path_text(&server_cert))]));
    }
    if paths.config_file.exists() && !args.force {
        println!("{}", fill(text.keep_file, &[("path", &path_text(&paths.config_file))]));
    }
    if keep_env {
        println!("{}", fill(text.keep_file, &[("path", &path_text(&paths.env_file))]));
    }

    if let Some(prompter) = prompter {
        prompter.section(text.section_certificates)?;
    }
    let server_names = if keep_server { None } else { Some(ask_server_names(args, prompter, text)?) };
    let new_ca_passphrase = if keep_ca { None } else { ask_new_ca_passphrase(args, prompter, text)? };

    if let Some(prompter) = prompter {
        prompter.section(text.section_user)?;
    }
    let admin_user = match &args.admin_user {
        Some(name) => {
            validate_username(name)?;
            name.clone()
        }
        None => answer(prompter, text.ask_admin_user, DEFAULT_ADMIN_USER, |name| Ok(validate_username(name)?))?,
    };
    let admin_password = ask_admin_password(args, paths, &admin_user, keep_env, prompter, text)?;
    if let (false, AdminPassword::New { password, .. } | AdminPassword::Kept { known: Some(password) }) =
        (keep_env, &admin_password)
    {
        check_env_value("the password of the first MQTT user", password)?;
    }

    let compose = if keep_env {
        None
    } else {
        if let Some(prompter) = prompter {
            prompter.section(text.section_influxdb)?;
        }
        Some(ask_compose_settings(args, prompter, text)?)
    };

    if let Some(prompter) = prompter {
        prompter.section(text.section_clients)?;
    }
    let clients = ask_clients(args, prompter, text)?;
    // Under --force the CA is replaced, and with it every client certificate.
    for name in clients.iter().filter(|_| keep_ca) {
        if let Err(CertError::ClientExists { path, .. }) = lpiotia_certs::ensure_client_replaceable(data_dir, name) {
            println!("{}", fill(text.keep_client, &[("path", &path_text(&path))]));
        }
    }

    let needs_signing = server_names.is_some() || !clients.is_empty();
    let signing_passphrase = if !keep_ca {
        new_ca_passphrase.clone()
    } else if needs_signing {
        ask_existing_ca_passphrase(args, data_dir, prompter, text)?
    } else {
        None
    };

    Ok(Plan { new_ca_passphrase, signing_passphrase, server_names, admin_user, admin_password, compose, clients })
}

/// Returns the flag's value, or with a terminal the answer to `question`, or `default`.
fn answer(
    prompter: Option<&Prompter>,
    question: &str,
    default: &str,
    check: impl Fn(&str) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    match prompter {
        Some(prompter) => prompter.ask(question, default, check),
        None => {
            check(default)?;
            Ok(default.to_owned())
        }
    }
}

fn ask_server_names(
    args: &InitArgs,
    prompter: Option<&Prompter>,
    text: &Messages,
) -> anyhow::Result<(Vec<String>, Vec<IpAddr>)> {
    let (mut dns_names, mut ips) = (args.dns_names.clone(), args.ips.clone());
    if !args.no_default_names {
        let (default_dns_names, default_ips) = lpiotia_certs::default_server_names();
        for name in default_dns_names {
            if !dns_names.contains(&name) {
                dns_names.push(name);
            }
        }
        for ip in default_ips {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    let names_given = !args.dns_names.is_empty() || !args.ips.is_empty();
    let Some(prompter) = prompter.filter(|_| !names_given) else {
        return Ok((dns_names, ips));
    };
    let dns_text = prompter.ask(text.ask_dns_names, &dns_names.join(", "), |answer| {
        split_list(answer).iter().try_for_each(|name| check_dns_name(name))
    })?;
    let ip_text = prompter.ask(text.ask_ips, &join_ips(&ips), |answer| {
        split_list(answer)
            .iter()
            .try_for_each(|ip| ip.parse::<IpAddr>().map(|_| ()).with_context(|| format!("{ip:?} is not an IP address")))
    })?;
    let dns_names = split_list(&dns_text);
    let ips = split_list(&ip_text).iter().map(|ip| ip.parse()).collect::<Result<_, _>>()?;
    Ok((dns_names, ips))
}

/// Rejects what can never be a DNS name; `issue_server` checks the rest.
fn check_dns_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 253
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'*'));
    if !valid {
        bail!("{name:?} is not a DNS name");
    }
    Ok(())
}

fn join_ips(ips: &[IpAddr]) -> String {
    ips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")
}

/// Splits a comma-separated answer into trimmed, non-empty items.
fn split_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

fn ask_new_ca_passphrase(
    args: &InitArgs,
    prompter: Option<&Prompter>,
    text: &Messages,
) -> anyhow::Result<Option<String>> {
    if let Some(file) = &args.ca_passphrase_file {
        return Ok(Some(read_secret_file(file, "CA passphrase")?));
    }
    match prompter {
        Some(prompter) if !args.no_ca_passphrase => {
            prompter.new_secret(text.ask_ca_passphrase, text.ask_ca_passphrase_again)
        }
        _ => Ok(None),
    }
}

/// Returns the passphrase of the kept CA key when it is encrypted, checked against the key.
fn ask_existing_ca_passphrase(
    args: &InitArgs,
    data_dir: &Path,
    prompter: Option<&Prompter>,
    text: &Messages,
) -> anyhow::Result<Option<String>> {
    if !lpiotia_certs::ca_key_is_encrypted(data_dir)? {
        return Ok(None);
    }
    if let Some(file) = &args.ca_passphrase_file {
        let passphrase = read_secret_file(file, "CA passphrase")?;
        lpiotia_certs::check_ca_key(data_dir, Some(&passphrase))?;
        return Ok(Some(passphrase));
    }
    let Some(prompter) = prompter else {
        bail!(
            "the CA key {} is encrypted; pass --ca-passphrase-file FILE to sign the new certificates",
            lpiotia_certs::ca_key_path(data_dir).display()
        );
    };
    let passphrase =
        prompter.existing_secret(text.ask_existing_ca_passphrase, text.wrong_passphrase, |passphrase| {
            lpiotia_certs::check_ca_key(data_dir, Some(passphrase)).is_ok()
        })?;
    match passphrase {
        Some(passphrase) => Ok(Some(passphrase)),
        None => bail!("the CA key is encrypted and no passphrase was entered; run init again"),
    }
}

fn ask_admin_password(
    args: &InitArgs,
    paths: &Paths,
    user: &str,
    keep_env: bool,
    prompter: Option<&Prompter>,
    text: &Messages,
) -> anyhow::Result<AdminPassword> {
    let existing = load_password_file(&paths.password_file)?;
    let user_exists = existing.as_ref().is_some_and(|file| file.contains(user));
    let given = match &args.admin_password_file {
        Some(file) => Some(read_secret_file(file, "admin password")?),
        None => None,
    };

    if user_exists && !args.force {
        let file = existing.expect("user_exists implies a loaded file");
        println!("{}", fill(text.keep_user, &[("user", user), ("path", &paths.password_file.display().to_string())]));
        if let Some(password) = given {
            if !file.verify(user, password.as_bytes()) {
                bail!(
                    "the password in --admin-password-file is not the password of the existing user {user}; pass --force to set it"
                );
            }
            return Ok(AdminPassword::Kept { known: Some(password) });
        }
        // The password only matters for a new .env file.
        let known = match prompter {
            Some(prompter) if !keep_env => prompter.existing_secret(
                &fill(text.ask_existing_password, &[("user", user)]),
                &fill(text.wrong_password, &[("user", user)]),
                |password| file.verify(user, password.as_bytes()),
            )?,
            _ => None,
        };
        return Ok(AdminPassword::Kept { known });
    }

    if let Some(password) = given {
        return Ok(AdminPassword::New { password, generated: false });
    }
    let typed = match prompter {
        Some(prompter) => {
            prompter.new_secret(&fill(text.ask_admin_password, &[("user", user)]), text.ask_password_again)?
        }
        None => None,
    };
    Ok(match typed {
        Some(password) => AdminPassword::New { password, generated: false },
        None => AdminPassword::New { password: generate_secret(GENERATED_PASSWORD_LEN), generated: true },
    })
}

fn load_password_file(path: &Path) -> anyhow::Result<Option<PasswordFile>> {
    if !path.exists() {
        return Ok(None);
    }
    let report = PasswordFile::load(path)?;
    for warning in &report.warnings {
        eprintln!("warning: {}: {warning}, line ignored", path.display());
    }
    Ok(Some(report.file))
}

fn ask_compose_settings(
    args: &InitArgs,
    prompter: Option<&Prompter>,
    text: &Messages,
) -> anyhow::Result<ComposeSettings> {
    let influxdb_user = flag_or_answer(&args.influxdb_user, prompter, text.ask_influxdb_user, DEFAULT_INFLUXDB_USER)?;
    let (influxdb_password, influxdb_password_generated) = match &args.influxdb_password_file {
        Some(file) => (read_secret_file(file, "InfluxDB password")?, false),
        None => {
            let typed = match prompter {
                Some(prompter) => prompter.new_secret(text.ask_influxdb_password, text.ask_password_again)?,
                None => None,
            };
            match typed {
                Some(password) => (password, false),
                None => (generate_secret(GENERATED_PASSWORD_LEN), true),
            }
        }
    };
    check_env_value("the InfluxDB password", &influxdb_password)?;
    if influxdb_password.chars().count() < MIN_INFLUXDB_PASSWORD_LEN {
        bail!("the InfluxDB password has fewer than {MIN_INFLUXDB_PASSWORD_LEN} characters, which InfluxDB 2 rejects at setup; choose a longer one");
    }
    let influxdb_org = flag_or_answer(&args.influxdb_org, prompter, text.ask_influxdb_org, DEFAULT_INFLUXDB_ORG)?;
    let influxdb_bucket =
        flag_or_answer(&args.influxdb_bucket, prompter, text.ask_influxdb_bucket, DEFAULT_INFLUXDB_BUCKET)?;
    let lan_address = match args.lan_address {
        Some(address) => address,
        None => {
            let default = default_lan_address().to_string();
            answer(prompter, text.ask_lan_address, &default, |answer| {
                answer.parse::<IpAddr>().map(|_| ()).with_context(|| format!("{answer:?} is not an IP address"))
            })?
            .parse()?
        }
    };
    Ok(ComposeSettings {
        lan_address,
        influxdb_user,
        influxdb_password,
        influxdb_password_generated,
        influxdb_org,
        influxdb_bucket,
    })
}

/// Returns the flag's value, or the answer to `question`, or `default`; the result must fit
/// in the `.env` file.
fn flag_or_answer(
    flag: &Option<String>,
    prompter: Option<&Prompter>,
    question: &str,
    default: &str,
) -> anyhow::Result<String> {
    let check = |value: &str| {
        if value.is_empty() {
            bail!("the value is empty");
        }
        check_env_value(question, value)
    };
    match flag {
        Some(value) => {
            check(value)?;
            Ok(value.clone())
        }
        None => answer(prompter, question, default, check),
    }
}

/// Returns the first non-loopback IPv4 address of this host, else the first non-loopback
/// IPv6 address, else 127.0.0.1.
fn default_lan_address() -> IpAddr {
    let (_, ips) = lpiotia_certs::default_server_names();
    ips.iter()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .or_else(|| ips.iter().find(|ip| !ip.is_loopback()))
        .copied()
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn ask_clients(args: &InitArgs, prompter: Option<&Prompter>, text: &Messages) -> anyhow::Result<Vec<String>> {
    let check = |names: &[String]| -> anyhow::Result<()> {
        names.iter().try_for_each(|name| Ok(lpiotia_certs::validate_client_name(name)?))
    };
    let names = match (&args.clients, prompter) {
        (Some(names), _) => names.iter().map(|name| name.trim().to_owned()).filter(|name| !name.is_empty()).collect(),
        (None, Some(prompter)) => {
            let answer = prompter.ask(text.ask_clients, text.none, |answer| {
                if answer == text.none {
                    return Ok(());
                }
                check(&split_list(answer))
            })?;
            if answer == text.none {
                Vec::new()
            } else {
                split_list(&answer)
            }
        }
        (None, None) => Vec::new(),
    };
    check(&names)?;
    let mut unique: Vec<String> = Vec::new();
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    Ok(unique)
}

fn write_certificates(args: &InitArgs, paths: &Paths, plan: &Plan, outcome: &mut Outcome) -> anyhow::Result<()> {
    let data_dir = &paths.data_dir;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;

    let ca_cert = lpiotia_certs::ca_cert_path(data_dir);
    let ca_exists = ca_cert.exists() || lpiotia_certs::ca_key_path(data_dir).exists();
    if ca_exists && !args.force {
        outcome.kept.push(ca_cert);
        outcome.kept.push(lpiotia_certs::ca_key_path(data_dir));
    } else {
        let options = CaOptions { passphrase: plan.new_ca_passphrase.clone(), ..CaOptions::default() };
        lpiotia_certs::init_ca(data_dir, &options, args.force)?;
        outcome.created.push(ca_cert);
        outcome.created.push(lpiotia_certs::ca_key_path(data_dir));
        outcome.created.push(lpiotia_certs::crl_path(data_dir));
    }

    let server_cert = lpiotia_certs::server_cert_path(data_dir);
    match &plan.server_names {
        Some((dns_names, ips)) => {
            lpiotia_certs::issue_server(
                data_dir,
                dns_names,
                ips,
                KeyType::EcdsaP256,
                plan.signing_passphrase.as_deref(),
                lpiotia_certs::DEFAULT_SERVER_DAYS,
            )?;
            outcome.created.push(server_cert);
            outcome.created.push(lpiotia_certs::server_key_path(data_dir));
        }
        None => {
            outcome.kept.push(server_cert);
            outcome.kept.push(lpiotia_certs::server_key_path(data_dir));
        }
    }
    Ok(())
}

fn write_password_file(paths: &Paths, plan: &Plan, outcome: &mut Outcome) -> anyhow::Result<()> {
    let AdminPassword::New { password, .. } = &plan.admin_password else {
        outcome.kept.push(paths.password_file.clone());
        return Ok(());
    };
    let existing = load_password_file(&paths.password_file)?;
    let list = if existing.is_some() { &mut outcome.updated } else { &mut outcome.created };
    let mut file = existing.unwrap_or_else(PasswordFile::new);
    file.set_password(&plan.admin_user, password.as_bytes())?;
    file.save(&paths.password_file)?;
    list.push(paths.password_file.clone());
    Ok(())
}

fn write_clients(paths: &Paths, plan: &Plan, outcome: &mut Outcome) -> anyhow::Result<()> {
    for name in &plan.clients {
        match lpiotia_certs::ensure_client_replaceable(&paths.data_dir, name) {
            Ok(()) => {
                let bundle = lpiotia_certs::issue_client(
                    &paths.data_dir,
                    name,
                    None,
                    plan.signing_passphrase.as_deref(),
                    lpiotia_certs::DEFAULT_CLIENT_DAYS,
                )?;
                outcome.created.push(bundle.dir);
            }
            Err(CertError::ClientExists { path, .. }) => outcome.kept.push(path),
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

fn write_config_file(args: &InitArgs, paths: &Paths, outcome: &mut Outcome) -> anyhow::Result<()> {
    let path = &paths.config_file;
    if path.exists() && !args.force {
        outcome.kept.push(path.clone());
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(CONFIG_DIR_MODE)
            .create(dir)
            .with_context(|| format!("cannot create the config directory {}", dir.display()))?;
    }
    let data_dir = paths.data_dir.to_str().with_context(|| {
        format!("the data directory {} is not valid UTF-8, which TOML cannot hold", paths.data_dir.display())
    })?;
    let mut text = String::new();
    writeln!(text, "# lpiotia-mqtt settings, written by `lpiotia-mqtt init`.")?;
    writeln!(text, "#")?;
    writeln!(text, "# Every key not set here keeps its built-in default; config/defaults.toml in the")?;
    writeln!(text, "# source explains each one. Environment variables LPIOTIA_MQTT__SECTION__KEY")?;
    writeln!(text, "# override this file. To print the effective settings:")?;
    writeln!(text, "#   lpiotia-mqtt check-config --config {}", path.display())?;
    writeln!(text)?;
    writeln!(text, "# Certificates, password file and store.")?;
    // A JSON string is a valid TOML basic string: same quotes and backslash escapes.
    writeln!(text, "data_dir = {}", serde_json::to_string(data_dir)?)?;
    write_file(path, text.as_bytes(), CONFIG_FILE_MODE)?;
    outcome.created.push(path.clone());
    Ok(())
}

fn write_env_file(paths: &Paths, plan: &Plan, outcome: &mut Outcome) -> anyhow::Result<()> {
    let Some(compose) = &plan.compose else {
        outcome.kept.push(paths.env_file.clone());
        return Ok(());
    };
    let admin_password = match &plan.admin_password {
        AdminPassword::New { password, .. } => password.clone(),
        AdminPassword::Kept { known } => known.clone().unwrap_or_default(),
    };

    let token = generate_secret(ADMIN_TOKEN_LEN);
    // The names are those of docker/.env.example, which compose.yaml reads.
    let variables = [
        ("LAN_ADDRESS", compose.lan_address.to_string()),
        ("LPIOTIA_MQTT_ADMIN_PASSWORD", admin_password),
        ("DOCKER_INFLUXDB_INIT_USERNAME", compose.influxdb_user.clone()),
        ("DOCKER_INFLUXDB_INIT_PASSWORD", compose.influxdb_password.clone()),
        ("DOCKER_INFLUXDB_INIT_ORG", compose.influxdb_org.clone()),
        ("DOCKER_INFLUXDB_INIT_BUCKET", compose.influxdb_bucket.clone()),
        ("DOCKER_INFLUXDB_INIT_RETENTION", String::new()),
        ("DOCKER_INFLUXDB_INIT_ADMIN_TOKEN", token),
    ];

    let mut text = String::new();
    writeln!(text, "# Settings of docker/compose.yaml, written by `lpiotia-mqtt init`.")?;
    writeln!(text, "# This file holds passwords: keep it mode 0600 and out of version control.")?;
    writeln!(text, "# The stack's broker creates the MQTT user \"admin\" with LPIOTIA_MQTT_ADMIN_PASSWORD")?;
    writeln!(text, "# on its first start (empty data volume). InfluxDB reads the DOCKER_INFLUXDB_INIT_")?;
    writeln!(text, "# values on its first start; DOCKER_INFLUXDB_INIT_RETENTION empty keeps data forever.")?;
    for (name, value) in variables {
        // Single quotes keep the value literal for Docker Compose: no `$` interpolation.
        writeln!(text, "{name}='{value}'")?;
    }

    if let Some(dir) = paths.env_file.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_file(&paths.env_file, text.as_bytes(), SECRET_FILE_MODE)?;
    outcome.created.push(paths.env_file.clone());
    Ok(())
}

/// Rejects a value that a single-quoted `.env` value cannot hold.
fn check_env_value(what: &str, value: &str) -> anyhow::Result<()> {
    if value.contains(['\'', '\n', '\r']) {
        bail!("{what} contains a single quote or a line break, which the .env file of Docker Compose cannot hold; choose another value");
    }
    Ok(())
}

/// Writes `bytes` to `path` with `mode`, replacing the file atomically (temporary file and
/// rename), so that a secret is never readable with a wider mode, even briefly.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (temp_path, mut file) =
        create_temp_file(dir, mode).with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let result = file.write_all(bytes).and_then(|()| file.sync_all()).and_then(|()| fs::rename(&temp_path, path));
    if let Err(error) = result {
        let _ = fs::remove_file(&temp_path);
        return Err(error).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Creates a new file with `mode` in `dir`, under a random name.
fn create_temp_file(dir: &Path, mode: u32) -> std::io::Result<(PathBuf, fs::File)> {
    const ATTEMPTS: usize = 8;
    for _ in 0..ATTEMPTS {
        let path = dir.join(format!(".init-{}.tmp", generate_secret(12)));
        match fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&path) {
            Ok(file) => {
                // The umask may have removed bits from `mode`, which a public file needs.
                file.set_permissions(fs::Permissions::from_mode(mode))?;
                return Ok((path, file));
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("no free temporary file name in {ATTEMPTS} attempts"),
    ))
}

fn generate_secret(length: usize) -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), length)
}

/// Reads a secret from the first line of `path`, without its line ending.
fn read_secret_file(path: &Path, secret_name: &str) -> anyhow::Result<String> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read the {secret_name} file {}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim_end_matches('\r').to_owned();
    if secret.is_empty() {
        bail!("the {secret_name} file {} is empty; write the {secret_name} on its first line", path.display());
    }
    Ok(secret)
}

fn print_summary(paths: &Paths, plan: &Plan, outcome: &Outcome, text: &Messages) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out)?;
    writeln!(out, "{}", text.summary_title)?;
    for path in &outcome.created {
        writeln!(out, "  {}  {}", text.created, path.display())?;
    }
    for path in &outcome.updated {
        writeln!(out, "  {}  {}", text.updated, path.display())?;
    }
    for path in &outcome.kept {
        writeln!(out, "  {}  {}", text.kept, path.display())?;
    }
    if let AdminPassword::New { password, generated: true } = &plan.admin_password {
        writeln!(out)?;
        writeln!(out, "{}", fill(text.generated_password, &[("user", &plan.admin_user), ("password", password)]))?;
    }
    if let Some(compose) = plan.compose.as_ref().filter(|compose| compose.influxdb_password_generated) {
        writeln!(
            out,
            "{}",
            fill(
                text.generated_password,
                &[("user", &format!("InfluxDB {}", compose.influxdb_user)), ("password", &compose.influxdb_password)]
            )
        )?;
    }

    let config = paths.config_file.display().to_string();
    let ca_cert = lpiotia_certs::ca_cert_path(&paths.data_dir);
    let fingerprint = lpiotia_certs::fingerprint_sha256(
        &fs::read(&ca_cert).with_context(|| format!("cannot read {}", ca_cert.display()))?,
    );
    writeln!(out)?;
    writeln!(out, "{}", text.next_steps)?;
    writeln!(out, "  {}", fill(text.next_serve, &[("config", &config)]))?;
    writeln!(out, "  {}", fill(text.next_compose, &[("env", &paths.env_file.display().to_string())]))?;
    writeln!(out, "  {}", text.next_compose_data)?;
    writeln!(out, "  {}", text.next_systemd)?;
    writeln!(out, "  {}", fill(text.next_ca, &[("path", &ca_cert.display().to_string())]))?;
    writeln!(out, "  {}", fill(text.next_fingerprint, &[("fingerprint", &fingerprint)]))?;
    if !plan.clients.is_empty() {
        let clients_dir = paths.data_dir.join(lpiotia_certs::CLIENTS_DIR);
        writeln!(out, "  {}", fill(text.next_clients, &[("path", &clients_dir.display().to_string())]))?;
    }
    writeln!(out, "  {}", fill(text.next_users, &[("config", &config)]))?;
    out.flush()?;
    Ok(())
}
