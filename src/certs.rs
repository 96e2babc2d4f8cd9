//! `certs`: creates and manages the broker's CA, its server certificate and the client
//! certificates of sensors and the Brain, in the data directory.
//!
//! Secrets come from files (`--passphrase-file`, `--p12-password-file`), from standard input
//! (`--p12-password-stdin`) or from a prompt on the terminal. No option takes a secret as its
//! value, because other users could read it in the process list. Changes reach a running
//! broker on SIGHUP.

use std::io::{BufRead, IsTerminal};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use lpiotia_certs::{CaOptions, CertInfo, CertKind, ClientOptions, KeyType, Pkcs12Encryption};

use crate::{settings, Cli};

/// Message printed after every change that a running broker must load.
const APPLY_HINT: &str = "send SIGHUP to a running broker to apply";

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    action: CertsAction,
}

#[derive(Debug, Subcommand)]
enum CertsAction {
    /// Create the CA and the server certificate in the data directory.
    Init(InitArgs),
    /// Issue a new server certificate signed by the CA, replacing server.crt and server.key.
    Server(ServerArgs),
    /// Issue a client certificate: key, certificate, CA copy and PKCS#12 file in clients/NAME/.
    Client(ClientArgs),
    /// List the CA, server and client certificates with expiry and revocation status.
    List,
    /// Print the details of a certificate file (PEM or DER).
    Show {
        /// Certificate file to read.
        file: PathBuf,
    },
    /// Revoke a client certificate: add it to the CRL (crl.pem).
    Revoke {
        /// Client name, as given to `certs client`.
        name: String,
        #[command(flatten)]
        ca_key: CaKeyArgs,
    },
    /// Print the fingerprints of the CA and server certificates.
    Fingerprint,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Key type of the CA and the server certificate: ecdsa-p256, rsa2048 or rsa4096.
    #[arg(long, value_name = "TYPE", default_value = "ecdsa-p256", value_parser = parse_key_type)]
    key_type: KeyType,

    /// Encrypt the CA key with the passphrase on the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "no_passphrase")]
    passphrase_file: Option<PathBuf>,

    /// Store the CA key unencrypted (mode 0600) without asking.
    #[arg(long)]
    no_passphrase: bool,

    /// Common name of the CA certificate (default: "lpiotia-mqtt CA HOSTNAME").
    #[arg(long, value_name = "NAME")]
    ca_name: Option<String>,

    #[command(flatten)]
    names: ServerNameArgs,

    /// Validity of the CA certificate in days.
    #[arg(long, value_name = "N", default_value_t = 3650)]
    days: u32,

    /// Validity of the server certificate in days.
    #[arg(long, value_name = "N", default_value_t = lpiotia_certs::DEFAULT_SERVER_DAYS)]
    server_days: u32,

    /// Replace an existing CA; every certificate signed by the old one stops working.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// Key type of the server certificate: ecdsa-p256, rsa2048 or rsa4096.
    #[arg(long, value_name = "TYPE", default_value = "ecdsa-p256", value_parser = parse_key_type)]
    key_type: KeyType,

    #[command(flatten)]
    names: ServerNameArgs,

    /// Validity of the server certificate in days.
    #[arg(long, value_name = "N", default_value_t = lpiotia_certs::DEFAULT_SERVER_DAYS)]
    days: u32,

    #[command(flatten)]
    ca_key: CaKeyArgs,
}

#[derive(Debug, Args)]
struct ServerNameArgs {
    /// DNS name for the server certificate, in addition to the host's own names (repeatable).
    #[arg(long = "dns", value_name = "NAME")]
    dns_names: Vec<String>,

    /// IP address for the server certificate, in addition to the host's own addresses (repeatable).
    #[arg(long = "ip", value_name = "ADDR")]
    ips: Vec<IpAddr>,

    /// Put only the --dns and --ip values in the server certificate, not the host name,
    /// localhost, loopback and interface addresses.
    #[arg(long)]
    no_default_names: bool,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// Client name: 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-'. It becomes the
    /// certificate's common name.
    name: String,

    /// Protect the PKCS#12 file with the password on the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "p12_password_stdin")]
    p12_password_file: Option<PathBuf>,

    /// Read the PKCS#12 password from the first line of standard input.
    #[arg(long)]
    p12_password_stdin: bool,

    /// Encrypt the PKCS#12 file with 3DES and an SHA-1 MAC instead of AES-256 and SHA-256, for
    /// importers that reject the modern form (macOS keychain, older Android, Windows Server 2016).
    #[arg(long)]
    p12_legacy: bool,

    /// Key type of the client key: ecdsa-p256, rsa2048 or rsa4096.
    #[arg(long, value_name = "TYPE", default_value = "ecdsa-p256", value_parser = parse_key_type)]
    key_type: KeyType,

    /// Validity of the client certificate in days.
    #[arg(long, value_name = "N", default_value_t = lpiotia_certs::DEFAULT_CLIENT_DAYS)]
    days: u32,

    #[command(flatten)]
    ca_key: CaKeyArgs,
}

#[derive(Debug, Args)]
struct CaKeyArgs {
    /// Read the passphrase of an encrypted CA key from the first line of FILE (default: prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

fn parse_key_type(text: &str) -> Result<KeyType, String> {
    text.parse()
}

pub fn run(cli: &Cli, args: &CertsArgs) -> anyhow::Result<ExitCode> {
    if let CertsAction::Show { file } = &args.action {
        return show(cli, file);
    }
    let data_dir = settings::load(cli)?.data_dir;
    match &args.action {
        CertsAction::Init(init_args) => init(&data_dir, init_args)?,
        CertsAction::Server(server_args) => server(&data_dir, server_args)?,
        CertsAction::Client(client_args) => client(&data_dir, client_args)?,
        CertsAction::List => list(&data_dir)?,
        CertsAction::Show { .. } => unreachable!("handled above"),
        CertsAction::Revoke { name, ca_key } => revoke(&data_dir, name, ca_key)?,
        CertsAction::Fingerprint => fingerprint(&data_dir)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn init(data_dir: &Path, args: &InitArgs) -> anyhow::Result<()> {
    // init_ca checks this too, but only after the passphrase prompt.
    if !args.force {
        for path in [lpiotia_certs::ca_cert_path(data_dir), lpiotia_certs::ca_key_path(data_dir)] {
            if path.exists() {
                return Err(lpiotia_certs::CertError::AlreadyExists { path }.into());
            }
        }
    }

    let passphrase = if let Some(file) = &args.passphrase_file {
        Some(read_secret_file(file, "passphrase")?)
    } else if args.no_passphrase || !std::io::stdin().is_terminal() {
        None
    } else {
        prompt_new_secret("CA key passphrase (empty for none): ", "Passphrase again: ")?
    };

    let options = CaOptions {
        key_type: args.key_type,
        passphrase: passphrase.clone(),
        common_name: args.ca_name.clone().unwrap_or_else(lpiotia_certs::default_ca_common_name),
        validity_days: args.days,
    };
    let clients_before = lpiotia_certs::list(data_dir).map(|infos| count_clients(&infos)).unwrap_or(0);
    let ca = lpiotia_certs::init_ca(data_dir, &options, args.force)?;
    let (dns_names, ips) = server_names(&args.names);
    let server = lpiotia_certs::issue_server(
        data_dir,
        &dns_names,
        &ips,
        args.key_type,
        passphrase.as_deref(),
        args.server_days,
    )?;

    let key_state = if passphrase.is_some() { "encrypted" } else { "unencrypted, mode 0600" };
    println!("CA certificate:     {}", ca.path.display());
    println!("CA key:             {} ({key_state})", lpiotia_certs::ca_key_path(data_dir).display());
    println!("CRL:                {}", lpiotia_certs::crl_path(data_dir).display());
    println!("server certificate: {}", server.path.display());
    println!("server key:         {}", lpiotia_certs::server_key_path(data_dir).display());
    println!("server names:       {}", server.sans.join(", "));
    println!("CA fingerprint (SHA-256): {}", ca.fingerprint_sha256);
    println!();
    println!("Install ca.crt on every client that connects over TLS, and issue client certificates");
    println!("with `lpiotia-mqtt certs client NAME`.");
    if clients_before > 0 {
        eprintln!(
            "warning: client certificates signed by the replaced CA no longer verify ({clients_before} in {}); reissue them with `lpiotia-mqtt certs client NAME`",
            data_dir.join(lpiotia_certs::CLIENTS_DIR).display()
        );
    }
    Ok(())
}

fn server(data_dir: &Path, args: &ServerArgs) -> anyhow::Result<()> {
    let passphrase = ca_passphrase(data_dir, &args.ca_key)?;
    let (dns_names, ips) = server_names(&args.names);
    let info =
        lpiotia_certs::issue_server(data_dir, &dns_names, &ips, args.key_type, passphrase.as_deref(), args.days)?;
    println!("server certificate: {}", info.path.display());
    println!("server key:         {}", lpiotia_certs::server_key_path(data_dir).display());
    println!("server names:       {}", info.sans.join(", "));
    println!("valid until:        {}", info.not_after_text());
    eprintln!("{APPLY_HINT}");
    Ok(())
}

fn client(data_dir: &Path, args: &ClientArgs) -> anyhow::Result<()> {
    // The name and the CA passphrase are checked before the PKCS#12 password is typed, so that
    // a mistake costs a single prompt.
    lpiotia_certs::ensure_client_replaceable(data_dir, &args.name)?;
    let passphrase = ca_passphrase(data_dir, &args.ca_key)?;
    lpiotia_certs::check_ca_key(data_dir, passphrase.as_deref())?;

    let p12_password = if let Some(file) = &args.p12_password_file {
        Some(read_secret_file(file, "PKCS#12 password")?)
    } else if args.p12_password_stdin {
        Some(read_stdin_line().context("cannot read the PKCS#12 password from standard input")?)
    } else if std::io::stdin().is_terminal() {
        prompt_new_secret("PKCS#12 password (empty for none): ", "PKCS#12 password again: ")?
    } else {
        None
    };

    let options = ClientOptions {
        key_type: args.key_type,
        p12_password,
        p12_encryption: if args.p12_legacy { Pkcs12Encryption::Legacy3Des } else { Pkcs12Encryption::Aes256 },
        validity_days: args.days,
    };
    let bundle = lpiotia_certs::issue_client_with(data_dir, &args.name, &options, passphrase.as_deref())?;

    println!("certificate: {}", bundle.cert_file.display());
    println!("key:         {}", bundle.key_file.display());
    println!("CA:          {}", bundle.ca_file.display());
    println!("PKCS#12:     {}", bundle.p12_file.display());
    println!("serial:      {}", bundle.info.serial);
    println!("valid until: {}", bundle.info.not_after_text());
    println!();
    println!("Copy the certificate, key and CA to the device, or import the PKCS#12 file in a browser.");
    println!("The client also needs a user in the password file: `lpiotia-mqtt passwd add USERNAME`.");
    Ok(())
}

fn list(data_dir: &Path) -> anyhow::Result<()> {
    let infos = lpiotia_certs::list(data_dir)?;
    let rows: Vec<[String; 5]> = infos
        .iter()
        .map(|info| {
            [
                info.kind.as_str().to_owned(),
                info.common_name.clone(),
                status(info).to_owned(),
                format!("{} ({} days)", info.not_after_text(), info.days_left()),
                info.serial.clone(),
            ]
        })
        .collect();
    let header = ["KIND", "NAME", "STATUS", "NOT AFTER", "SERIAL"].map(str::to_owned);
    let mut widths = header.clone().map(|title| title.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(())
}

fn show(cli: &Cli, file: &Path) -> anyhow::Result<ExitCode> {
    let mut info = lpiotia_certs::show(file)?;
    let revocation = match settings::load(cli) {
        Ok(settings) => match lpiotia_certs::check_revoked(&settings.data_dir, &mut info) {
            Ok(()) if info.signed_by_ca == Some(false) => {
                "unknown (not signed by the CA of the data directory)".to_owned()
            }
            Ok(()) if info.revoked => "yes".to_owned(),
            Ok(()) => "no".to_owned(),
            Err(error) => format!("unknown ({error})"),
        },
        Err(error) => format!("unknown ({error:#})"),
    };
    println!("file:          {}", info.path.display());
    println!("kind:          {}", info.kind.as_str());
    println!("subject:       {}", info.subject);
    println!("issuer:        {}", info.issuer);
    println!("serial:        {}", info.serial);
    println!("not before:    {}", info.not_before_text());
    println!("not after:     {} ({} days left)", info.not_after_text(), info.days_left());
    if !info.sans.is_empty() {
        println!("names:         {}", info.sans.join(", "));
    }
    println!("SHA-256:       {}", info.fingerprint_sha256);
    println!("revoked:       {revocation}");
    Ok(ExitCode::SUCCESS)
}

fn revoke(data_dir: &Path, name: &str, ca_key: &CaKeyArgs) -> anyhow::Result<()> {
    lpiotia_certs::validate_client_name(name)?;
    let passphrase = ca_passphrase(data_dir, ca_key)?;
    let info = lpiotia_certs::revoke(data_dir, name, passphrase.as_deref())?;
    println!(
        "revoked client certificate {name} (serial {}); CRL written to {}",
        info.serial,
        lpiotia_certs::crl_path(data_dir).display()
    );
    eprintln!("{APPLY_HINT}");
    Ok(())
}

fn fingerprint(data_dir: &Path) -> anyhow::Result<()> {
    let ca_path = lpiotia_certs::ca_cert_path(data_dir);
    if !ca_path.exists() {
        bail!("no CA certificate at {}; run `lpiotia-mqtt certs init` first", ca_path.display());
    }
    let ca = std::fs::read(&ca_path).with_context(|| format!("cannot read {}", ca_path.display()))?;
    println!("CA      SHA-256  {}  {}", lpiotia_certs::fingerprint_sha256(&ca), ca_path.display());
    let server_path = lpiotia_certs::server_cert_path(data_dir);
    if server_path.exists() {
        let server = std::fs::read(&server_path).with_context(|| format!("cannot read {}", server_path.display()))?;
        println!("server  SHA-256  {}  {}", lpiotia_certs::fingerprint_sha256(&server), server_path.display());
        // ESP8266 sketches pin the server with WiFiClientSecure::setFingerprint, which takes SHA-1.
        println!("server  SHA-1    {}  {}", lpiotia_certs::fingerprint_sha1(&server), server_path.display());
    }
    Ok(())
}

/// Returns `valid`, `expired`, `revoked` or `other CA`.
fn status(info: &CertInfo) -> &'static str {
    if info.signed_by_ca == Some(false) {
        "other CA"
    } else if info.revoked {
        "revoked"
    } else if info.is_expired() {
        "expired"
    } else {
        "valid"
    }
}

fn count_clients(infos: &[CertInfo]) -> usize {
    infos
        .iter()
        .filter(|info| info.kind == CertKind::Client && info.signed_by_ca == Some(true) && !info.revoked)
        .count()
}

/// Returns the host's names and addresses (unless `--no-default-names`) followed by the
/// ones given with `--dns` and `--ip`.
fn server_names(args: &ServerNameArgs) -> (Vec<String>, Vec<IpAddr>) {
    let (default_dns_names, default_ips) =
        if args.no_default_names { (Vec::new(), Vec::new()) } else { lpiotia_certs::default_server_names() };
    // Names given on the command line come first, so the first --dns becomes the common name.
    let mut dns_names = args.dns_names.clone();
    for name in default_dns_names {
        if !dns_names.contains(&name) {
            dns_names.push(name);
        }
    }
    let mut ips = default_ips;
    for ip in &args.ips {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    (dns_names, ips)
}

/// Returns the CA key passphrase from `--passphrase-file`, or from a prompt if the key is
/// encrypted; `None` for an unencrypted key.
fn ca_passphrase(data_dir: &Path, args: &CaKeyArgs) -> anyhow::Result<Option<String>> {
    if let Some(file) = &args.passphrase_file {
        return Ok(Some(read_secret_file(file, "passphrase")?));
    }
    let key_path = lpiotia_certs::ca_key_path(data_dir);
    if !key_path.exists() || !lpiotia_certs::ca_key_is_encrypted(data_dir)? {
        return Ok(None);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "the CA key {} is encrypted and there is no terminal to prompt for its passphrase; pass --passphrase-file FILE",
            key_path.display()
        );
    }
    let passphrase = rpassword::prompt_password("CA key passphrase: ")?;
    Ok(Some(passphrase))
}

/// Reads a secret from the first line of `path`, without its line ending.
fn read_secret_file(path: &Path, secret_name: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {secret_name} file {}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim_end_matches('\r').to_owned();
    if secret.is_empty() {
        bail!("the {secret_name} file {} is empty; write the {secret_name} on its first line", path.display());
    }
    Ok(secret)
}

/// Reads the first line of standard input, without its line ending; it may be empty.
fn read_stdin_line() -> std::io::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Prompts for a new secret on the terminal. An empty entry means none, and a non-empty one
/// is typed twice.
fn prompt_new_secret(prompt: &str, again: &str) -> anyhow::Result<Option<String>> {
    let first = rpassword::prompt_password(prompt)?;
    if first.is_empty() {
        return Ok(None);
    }
    let second = rpassword::prompt_password(again)?;
    if first != second {
        bail!("the two entries differ; run the command again");
    }
    Ok(Some(first))
}
