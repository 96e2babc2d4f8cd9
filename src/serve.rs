//! `serve`: runs the broker until SIGINT or SIGTERM; SIGHUP reloads the password file, the
//! ACL file and the TLS files.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lpiotia_auth::{AclFile, PasswordFile};
use lpiotia_broker::{Broker, BrokerConfig, Listener};
use lpiotia_broker::persist::{PersistMode, Store};
use lpiotia_config::{PersistenceMode, Settings};
use rand::distributions::{Alphanumeric, DistString};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::{logging, notify, settings, tls, Cli};

/// Environment variable that sets the first user's password when the password file is created.
const ADMIN_PASSWORD_VARIABLE: &str = "LPIOTIA_MQTT_ADMIN_PASSWORD";
const ADMIN_USER: &str = "admin";
/// How long shutdown waits for connections to close after telling them to.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let settings = settings::load(cli)?;
    let level = cli.log_level.clone().unwrap_or_else(|| settings.log_level.as_str().to_owned());
    logging::init(&level);
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(serve(settings));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result.map(|()| ExitCode::SUCCESS)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Read first, so that a bad ACL file stops the broker before it creates any file.
    let acl = load_acl(&settings)?;
    create_data_dir(&settings.data_dir)?;
    let (listeners, tls_listeners) = tls::listener_configs(&settings)?;
    tls::spawn_expiry_warnings(settings.data_dir.clone());
    let password_path = settings.password_file();
    let passwords = open_password_file(&password_path)?;
    let broker = match persist_mode(&settings) {
        Some(mode) => {
            let (store, restored) = Store::open(&settings.data_dir, mode)?;
            info!(store = %store.path().display(), mode = ?mode, "store opened");
            Broker::with_store(broker_config(&settings), passwords, store, restored)
        }
        None => {
            warn!("persistence is off: retained messages and sessions live in memory only");
            Broker::new(broker_config(&settings), passwords)
        }
    };

    broker.set_acl(acl);

    let mut bound = Vec::new();
    for config in listeners {
        bound.push(Listener::bind(config).await?);
    }
    for listener in bound {
        tokio::spawn(listener.run(Arc::clone(&broker)));
    }
    if settings.sys_interval_secs > 0 {
        lpiotia_broker::sys::spawn(Arc::clone(&broker), Duration::from_secs(settings.sys_interval_secs));
    }
    info!(version = env!("CARGO_PKG_VERSION"), data_dir = %settings.data_dir.display(), "broker started");
    notify::spawn_status_updates(Arc::clone(&broker), Duration::from_secs(settings.sys_interval_secs));

    wait_for_stop(&broker, &tls_listeners).await?;
    info!("shutting down: closing client connections");
    notify::stopping();
    broker.shutdown.cancel();
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while broker.stats.clients_connected.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(store) = &broker.store {
        let store = Arc::clone(store);
        // Joining the writer thread blocks: keep it off the runtime's worker threads.
        tokio::task::spawn_blocking(move || store.close()).await?;
    }
    info!("broker stopped");
    Ok(())
}

/// Waits for SIGINT or SIGTERM, reloading the password file and the TLS files on each
/// SIGHUP meanwhile.
async fn wait_for_stop(broker: &Broker, tls_listeners: &[tls::TlsListener]) -> anyhow::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    // READY=1 only now: `systemctl reload` sends SIGHUP, which would end the process before
    // its handler is installed.
    notify::ready();
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                info!("SIGHUP received: reloading the password file, the ACL file and TLS certificates");
                notify::reloading();
                if let Err(error) = broker.reload_passwords() {
                    error!("password file not reloaded, the previous users stay in force: {error}");
                }
                if let Err(error) = broker.reload_acl() {
                    error!("ACL file not reloaded, the previous rules stay in force: {error}");
                }
                tls::reload(tls_listeners);
                notify::ready();
            }
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
        }
    }
}

/// Raises the soft limit on open files to the hard limit: each client holds one file
/// descriptor, and the usual soft limit of 1024 would cap the broker near 1000 clients.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(limit, "open files limit"),
        Err(error) => warn!("cannot raise the open files limit: {error}"),
    }
}

fn persist_mode(settings: &Settings) -> Option<PersistMode> {
    let persistence = &settings.persistence;
    if !persistence.enabled {
        return None;
    }
    Some(match persistence.mode {
        PersistenceMode::Durable => PersistMode::Durable,
        PersistenceMode::Relaxed => PersistMode::Relaxed(Duration::from_millis(persistence.relaxed_interval_ms)),
    })
}

fn broker_config(settings: &Settings) -> BrokerConfig {
    let limits = &settings.limits;
    let persistence = &settings.persistence;
    let (max_queued_messages, max_queued_bytes_persistent) = if persistence.enabled {
        (persistence.max_queued_messages, to_usize(persistence.max_queued_bytes.0))
    } else {
        (limits.max_queued_messages, to_usize(limits.max_queued_bytes.0))
    };
    BrokerConfig {
        connect_timeout: Duration::from_secs(limits.connect_timeout_secs),
        max_inflight: limits.max_inflight_messages,
        max_queued_messages,
        max_queued_messages_clean: limits.max_queued_messages_clean,
        max_queued_bytes: to_usize(limits.max_queued_bytes.0),
        max_queued_bytes_persistent,
        global_queue_memory: to_usize(limits.global_queue_memory.0),
        max_packet_size: u32::try_from(limits.max_packet_size.0).unwrap_or(u32::MAX),
        max_keepalive: limits.max_keepalive_secs,
        max_topic_levels: limits.max_topic_levels,
        max_client_id_len: limits.max_client_id_len,
        max_retained_memory: to_usize(limits.max_retained_memory.0),
        password_file: settings.password_file(),
        acl_file: settings.acl_file(),
    }
}

/// Loads the ACL file set by `acl_file`, if any.
fn load_acl(settings: &Settings) -> anyhow::Result<Option<AclFile>> {
    let Some(path) = settings.acl_file() else { return Ok(None) };
    let acl = AclFile::load(&path).context("the broker cannot start with this ACL file (acl_file); fix it, or set acl_file = \"\" to run without ACLs")?;
    if acl.rule_count() == 0 {
        warn!(file = %path.display(), "the ACL file has no rules, so every PUBLISH and SUBSCRIBE is denied");
    } else {
        info!(file = %path.display(), rules = acl.rule_count(), "ACL file loaded");
    }
    Ok(Some(acl))
}

fn to_usize(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}; pass --data-dir with a writable path", dir.display()))
}

/// Loads the password file, or creates it with the first user `admin` if it does not exist.
fn open_password_file(path: &Path) -> anyhow::Result<PasswordFile> {
    if path.exists() {
        let report = PasswordFile::load(path)?;
        for warning in &report.warnings {
            warn!(file = %path.display(), "password file: {warning}, line ignored");
        }
        if report.file.is_empty() {
            warn!(file = %path.display(), "password file has no valid user: every connection will be refused; add one with `lpiotia-mqtt passwd add NAME`");
        }
        info!(file = %path.display(), users = report.file.len(), "password file loaded");
        return Ok(report.file);
    }
    let (password, generated) = match std::env::var(ADMIN_PASSWORD_VARIABLE) {
        Ok(password) if !password.is_empty() => (password, false),
        _ => (Alphanumeric.sample_string(&mut rand::thread_rng(), 20), true),
    };
    let mut file = PasswordFile::new();
    file.set_password(ADMIN_USER, password.as_bytes())?;
    file.save(path)?;
    info!(file = %path.display(), user = ADMIN_USER, "password file created with the first user");
    if generated {
        print_first_password(path, &password)?;
    }
    Ok(file)
}

fn print_first_password(path: &Path, password: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "Created the password file {} with the user \"{ADMIN_USER}\".", path.display())?;
    writeln!(out, "Password of {ADMIN_USER} (shown only this once): {password}")?;
    writeln!(out, "Try it: mosquitto_sub -h 127.0.0.1 -u {ADMIN_USER} -P '{password}' -t 'test/#' -v")?;
    writeln!(out, "Add users with: lpiotia-mqtt passwd add NAME")?;
    out.flush()?;
    Ok(())
}
