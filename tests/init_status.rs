//! Deployment commands end to end: `init` (flags and a real terminal, English and French),
//! `status`, the `$SYS` topics it reads, `uninstall --dry-run`, and the systemd
//! notifications of `serve`.

mod common;

use std::fs;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mosquitto::{self, Subscriber};
use common::process::{self, Output};
use common::{broker_command, file_mode, parse_address_field, passwd_command, Broker, TestDir, BIN};

/// Time limit of one `init`, `status` or `uninstall` run.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit for one expected piece of output on the terminal.
const PTY_TIMEOUT_MS: u64 = 30_000;
/// Time allowed for a change to show in the `$SYS` topics, published every second here.
const SYS_TIMEOUT: Duration = Duration::from_secs(15);
/// Broker settings for the tests that read `$SYS`: one publication per second.
const SYS_EVERY_SECOND: &str = "sys_interval_secs = 1";

const ADMIN_PASSWORD: &str = "init-admin-pw";
const INFLUXDB_PASSWORD: &str = "influx-pw-1";

/// Locale variables that choose the language of `init`; every test sets its own.
const LOCALE_VARIABLES: [&str; 4] = ["LANG", "LC_ALL", "LC_MESSAGES", "LANGUAGE"];

/// Builds `lpiotia-mqtt ARGS` run in `dir`, without inherited broker or locale variables.
fn command_in(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.current_dir(dir).args(args);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("LPIOTIA_MQTT") || key_text == "RUST_LOG" || key_text == "NOTIFY_SOCKET" {
            command.env_remove(&key);
        }
    }
    for name in LOCALE_VARIABLES {
        command.env_remove(name);
    }
    command
}

fn run(command: Command, stdin: Option<&str>) -> Output {
    process::run(command, stdin, RUN_TIMEOUT)
}

/// Paths that `init` writes under one directory, as the tests pass them.
struct InitLayout {
    root: PathBuf,
}

impl InitLayout {
    fn new(root: &Path) -> InitLayout {
        fs::write(root.join("admin-pw"), format!("{ADMIN_PASSWORD}\n")).unwrap();
        fs::write(root.join("influx-pw"), format!("{INFLUXDB_PASSWORD}\n")).unwrap();
        InitLayout { root: root.to_path_buf() }
    }

    fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    fn config_file(&self) -> PathBuf {
        self.config_dir().join("config.toml")
    }

    /// Returns a data directory that does not exist before `init`, so that its mode is init's.
    fn data_dir(&self) -> PathBuf {
        self.root.join("broker-data")
    }

    fn env_file(&self) -> PathBuf {
        self.config_dir().join(".env")
    }

    fn data(&self, name: &str) -> PathBuf {
        self.data_dir().join(name)
    }

    /// Arguments of a complete `init --yes`; the first user is the default, admin.
    fn yes_args(&self) -> Vec<String> {
        let path = |path: PathBuf| path.display().to_string();
        [
            "init",
            "--yes",
            "--config-dir",
            &path(self.config_dir()),
            "--data-dir",
            &path(self.data_dir()),
            "--dns",
            "mqtt.example.test",
            "--ip",
            "192.0.2.10",
            "--no-ca-passphrase",
            "--admin-password-file",
            &path(self.root.join("admin-pw")),
            "--influxdb-user",
            "influx-admin",
            "--influxdb-password-file",
            &path(self.root.join("influx-pw")),
            "--influxdb-org",
            "test-org",
            "--influxdb-bucket",
            "test-bucket",
            "--clients",
            "sensor-1,brain",
            "--lan-address",
            "192.0.2.10",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect()
    }

    fn init(&self, extra: &[&str], lang: &str) -> Output {
        let mut args = self.yes_args();
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut command = command_in(&self.root, &args);
        command.env("LANG", lang);
        run(command, None)
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Returns the value of `NAME='value'` in a `.env` file.
fn env_value(env_text: &str, name: &str) -> Option<String> {
    env_text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix('=')?;
        Some(value.trim_matches('\'').to_owned())
    })
}

fn verify_password(passwd: &Path, user: &str, password: &str) -> bool {
    let report = lpiotia_auth::PasswordFile::load(passwd).expect("password file loads");
    report.file.verify(user, password.as_bytes())
}

#[test]
fn init_yes_writes_files_with_modes() {
    let dir = tempfile::tempdir().unwrap();
    let layout = InitLayout::new(dir.path());
    let output = layout.init(&[], "C.UTF-8");
    assert!(output.success(), "{output}");

    assert_eq!(file_mode(&layout.data_dir()), 0o700, "data directory");
    assert_eq!(file_mode(&layout.config_file()), 0o644, "config.toml");
    for secret in ["ca.key", "server.key", "passwd", "clients/sensor-1/sensor-1.key", "clients/brain/brain.p12"] {
        assert_eq!(file_mode(&layout.data(secret)), 0o600, "{secret}");
    }
    for public in ["ca.crt", "server.crt", "crl.pem", "clients/sensor-1/sensor-1.crt", "clients/brain/ca.crt"] {
        assert!(layout.data(public).is_file(), "{public} missing");
    }
    assert_eq!(file_mode(&layout.env_file()), 0o600, ".env");

    let config = read(&layout.config_file());
    let expected = format!("data_dir = \"{}\"", layout.data_dir().display());
    assert!(config.lines().any(|line| line == expected), "config.toml lacks `{expected}`:\n{config}");

    let env_text = read(&layout.env_file());
    let expected_env = [
        ("LAN_ADDRESS", "192.0.2.10"),
        ("LPIOTIA_MQTT_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("DOCKER_INFLUXDB_INIT_USERNAME", "influx-admin"),
        ("DOCKER_INFLUXDB_INIT_PASSWORD", INFLUXDB_PASSWORD),
        ("DOCKER_INFLUXDB_INIT_ORG", "test-org"),
        ("DOCKER_INFLUXDB_INIT_BUCKET", "test-bucket"),
        ("DOCKER_INFLUXDB_INIT_RETENTION", ""),
    ];
    for (name, value) in expected_env {
        assert_eq!(env_value(&env_text, name).as_deref(), Some(value), "{name} in .env:\n{env_text}");
    }
    let token = env_value(&env_text, "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN").expect("admin token in .env");
    assert!(token.len() >= 32, "admin token too short: {token:?}");

    assert!(verify_password(&layout.data("passwd"), "admin", ADMIN_PASSWORD));

    // The summary names the CA and its fingerprint, the one `certs fingerprint` prints.
    let fingerprint = run(
        command_in(dir.path(), &["certs", "fingerprint", "--data-dir", &layout.data_dir().display().to_string()]),
        None,
    );
    assert!(fingerprint.success(), "{fingerprint}");
    let ca_line = fingerprint.stdout.lines().find(|line| line.starts_with("CA")).expect("CA line");
    let ca_fingerprint = ca_line.split_whitespace().nth(2).expect("fingerprint field");
    assert!(
        output.stdout.contains(ca_fingerprint),
        "summary lacks the CA fingerprint {ca_fingerprint}:\n{}",
        output.stdout
    );
    assert!(output.stdout.contains(&layout.data("ca.crt").display().to_string()), "{}", output.stdout);
    assert!(output.stdout.contains("Setup done."), "{}", output.stdout);

    let show = run(command_in(dir.path(), &["certs", "show", &layout.data("server.crt").display().to_string()]), None);
    assert!(show.stdout.contains("mqtt.example.test"), "server certificate names:\n{show}");
    assert!(show.stdout.contains("192.0.2.10"), "server certificate names:\n{show}");
}

#[test]
fn init_config_serves_user_and_certificates() {
    mosquitto::require_clients();
    let test_dir = TestDir::new();
    let layout = InitLayout::new(test_dir.path());
    let output = layout.init(&[], "C.UTF-8");
    assert!(output.success(), "{output}");

    let mut command = broker_command(&test_dir);
    command
        .arg("serve")
        .arg("--config")
        .arg(layout.config_file())
        .env("LPIOTIA_MQTT__LISTENERS__LAN__BIND", "127.0.0.1:0")
        .env("LPIOTIA_MQTT__LISTENERS__TLS__BIND", "127.0.0.1:0")
        .env("LPIOTIA_MQTT__LISTENERS__WS__BIND", "127.0.0.1:0");
    let broker = Broker::spawn(command, test_dir, "lan");
    assert!(
        !broker.stdout_lines().iter().any(|line| line.contains("Created the password file")),
        "serve made its own password file instead of using init's"
    );

    let plain = mosquitto::publish(&broker, &["-u", "admin", "-P", ADMIN_PASSWORD, "-t", "init/plain", "-m", "1"]);
    assert!(plain.success(), "admin created by init was refused\n{plain}\n{}", broker.log_tail());
    let wrong = mosquitto::publish(&broker, &["-u", "admin", "-P", "not-the-password", "-t", "init/plain", "-m", "1"]);
    assert!(!wrong.success(), "a wrong password was accepted\n{wrong}");

    let tls_line = broker.wait_for_log_from(0, &["listener ready", "listener=tls"], Duration::from_secs(5));
    let tls_addr = parse_address_field(&tls_line).expect("TLS listener address");
    let client_dir = layout.data("clients/sensor-1");
    let mut tls = Command::new("mosquitto_pub");
    tls.args(["-h", "127.0.0.1", "-p", &tls_addr.port().to_string()])
        .arg("--cafile")
        .arg(layout.data("ca.crt"))
        .arg("--cert")
        .arg(client_dir.join("sensor-1.crt"))
        .arg("--key")
        .arg(client_dir.join("sensor-1.key"))
        .args(["-u", "admin", "-P", ADMIN_PASSWORD, "-t", "init/tls", "-m", "1"]);
    let tls_output = run(tls, None);
    assert!(tls_output.success(), "TLS with init's certificates failed\n{tls_output}\n{}", broker.log_tail());
}

#[test]
fn init_rerun_keeps_files_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let layout = InitLayout::new(dir.path());
    let first = layout.init(&[], "C.UTF-8");
    assert!(first.success(), "{first}");
    let kept = ["ca.crt", "ca.key", "server.crt", "server.key", "clients/sensor-1/sensor-1.crt"];
    let before: Vec<String> = kept.iter().map(|name| read(&layout.data(name))).collect();
    let config_before = read(&layout.config_file());
    let env_before = read(&layout.env_file());

    // A second user and a different password file: the existing user keeps its password.
    fs::write(dir.path().join("admin-pw"), "another-password\n").unwrap();
    let second = layout.init(&["--admin-user", "operator"], "C.UTF-8");
    assert!(second.success(), "{second}");
    for (name, text) in kept.iter().zip(&before) {
        assert_eq!(&read(&layout.data(name)), text, "{name} changed without --force");
    }
    assert_eq!(read(&layout.config_file()), config_before, "config.toml changed without --force");
    assert_eq!(read(&layout.env_file()), env_before, ".env changed without --force");
    assert!(verify_password(&layout.data("passwd"), "admin", ADMIN_PASSWORD), "admin lost its password");
    assert!(verify_password(&layout.data("passwd"), "operator", "another-password"), "operator not added");
    for message in ["Keeping the CA", "Keeping the server certificate", "Keeping the client certificate"] {
        assert!(second.stdout.contains(message), "no `{message}` in:\n{}", second.stdout);
    }
    assert!(second.stdout.contains(&format!("Keeping {}", layout.env_file().display())), "{}", second.stdout);

    // The existing admin with a wrong password file is an error, not a silent change.
    let mismatch = layout.init(&[], "C.UTF-8");
    assert!(!mismatch.success(), "init accepted a password that is not admin's\n{mismatch}");
    assert!(mismatch.stderr.contains("--force"), "{mismatch}");

    let forced = layout.init(&["--force"], "C.UTF-8");
    assert!(forced.success(), "{forced}");
    assert_ne!(read(&layout.data("ca.crt")), before[0], "--force kept the CA");
    assert_ne!(read(&layout.data("ca.key")), before[1], "--force kept the CA key");
    assert_ne!(read(&layout.env_file()), env_before, "--force kept .env");
    assert!(verify_password(&layout.data("passwd"), "admin", "another-password"), "--force did not set the password");
}

#[test]
fn init_rejects_values_compose_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let layout = InitLayout::new(dir.path());
    let cases = [("short7!", "fewer than 8 characters"), ("it's-a-password", "single quote")];
    for (password, reason) in cases {
        fs::write(dir.path().join("influx-pw"), format!("{password}\n")).unwrap();
        let output = layout.init(&[], "C.UTF-8");
        assert!(!output.success(), "InfluxDB password {password:?} accepted\n{output}");
        assert!(output.stderr.contains(reason), "{output}");
        assert!(!layout.data_dir().exists(), "init wrote files before rejecting {password:?}");
    }
}

#[test]
fn init_summary_language_follows_lc_all() {
    let cases = [
        (&[("LANG", "fr_FR.UTF-8")][..], "Configuration terminée."),
        (&[("LANG", "fr_FR.UTF-8"), ("LC_ALL", "C")][..], "Setup done."),
        (&[("LANG", "C"), ("LC_ALL", "fr_CA.UTF-8")][..], "Configuration terminée."),
        (&[("LANG", "en_GB.UTF-8")][..], "Setup done."),
    ];
    for (variables, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let layout = InitLayout::new(dir.path());
        let args = layout.yes_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut command = command_in(dir.path(), &args);
        command.envs(variables.iter().copied());
        let output = run(command, None);
        assert!(output.success(), "{variables:?}\n{output}");
        assert!(output.stdout.contains(expected), "{variables:?}: expected `{expected}` in:\n{}", output.stdout);
    }
}

/// Returns `text` as rexpect's reader stores terminal output: one `char` per byte, so that
/// UTF-8 text with accents matches.
fn as_pty_text(text: &str) -> String {
    text.bytes().map(char::from).collect()
}

/// Drives `init` on a pseudo-terminal: waits for each prompt and answers it.
struct Terminal {
    session: rexpect::session::PtySession,
}

impl Terminal {
    fn start(dir: &Path, lang: &str) -> Terminal {
        let config_dir = dir.join("config").display().to_string();
        let data_dir = dir.join("broker-data").display().to_string();
        let mut command = command_in(dir, &["init", "--config-dir", &config_dir, "--data-dir", &data_dir]);
        command.env("LANG", lang);
        let session = rexpect::session::spawn_command(command, Some(PTY_TIMEOUT_MS)).expect("spawn init on a pty");
        Terminal { session }
    }

    fn expect(&mut self, text: &str) {
        if let Err(error) = self.session.exp_string(&as_pty_text(text)) {
            panic!("init did not print {text:?}: {error}");
        }
    }

    fn answer(&mut self, prompt: &str, reply: &str) {
        self.expect(prompt);
        self.session.send_line(reply).expect("write to the pty");
    }

    /// Waits for the end of output and returns everything printed since the last match.
    fn finish(mut self) -> String {
        let rest = self.session.exp_eof().unwrap_or_else(|error| panic!("init did not exit: {error}"));
        let status = self.session.process().wait().expect("wait for init");
        assert!(format!("{status:?}").ends_with(", 0)"), "init exited with {status:?}\n{rest}");
        rest
    }
}

#[test]
fn init_interactive_in_french() {
    let dir = tempfile::tempdir().unwrap();
    let mut terminal = Terminal::start(dir.path(), "fr_FR.UTF-8");
    terminal.expect("Première configuration de lpiotia-mqtt");
    terminal.answer("Noms d'hôte du certificat serveur", "mqtt.exemple.test");
    terminal.answer("Adresses IP du certificat serveur", "127.0.0.1, 192.0.2.30");
    terminal.answer("Phrase secrète de la nouvelle clé de l'AC (vide : aucune)", "");
    terminal.answer("Nom d'utilisateur [admin]", "brain");
    terminal.answer("Mot de passe de brain (vide : en générer un)", "pw-brain-1");
    terminal.answer("Mot de passe, à nouveau", "pw-brain-1");
    terminal.answer("Nom d'utilisateur InfluxDB [admin]", "");
    terminal.answer("Mot de passe InfluxDB (vide : en générer un)", "");
    terminal.answer("Organisation InfluxDB [iotiaquarium]", "labo");
    terminal.answer("Bucket InfluxDB [aquarium]", "");
    terminal.answer("Adresse sur le réseau local", "192.0.2.30");
    terminal.answer("Certificats clients à créer maintenant, noms séparés par des virgules [aucun]", "capteur-1");
    terminal.expect("Configuration terminée.");
    terminal.expect("Mot de passe généré pour InfluxDB admin");
    terminal.expect("Son empreinte SHA-256");
    terminal.finish();

    let data_dir = dir.path().join("broker-data");
    assert!(verify_password(&data_dir.join("passwd"), "brain", "pw-brain-1"), "brain not created with its password");
    let env_text = read(&dir.path().join("config/.env"));
    assert_eq!(env_value(&env_text, "DOCKER_INFLUXDB_INIT_ORG").as_deref(), Some("labo"));
    assert_eq!(env_value(&env_text, "DOCKER_INFLUXDB_INIT_BUCKET").as_deref(), Some("aquarium"));
    assert_eq!(env_value(&env_text, "LAN_ADDRESS").as_deref(), Some("192.0.2.30"));
    assert_eq!(env_value(&env_text, "LPIOTIA_MQTT_ADMIN_PASSWORD").as_deref(), Some("pw-brain-1"));
    let influxdb_password = env_value(&env_text, "DOCKER_INFLUXDB_INIT_PASSWORD").unwrap_or_default();
    assert!(influxdb_password.len() >= 8, "generated InfluxDB password too short: {influxdb_password:?}");
    assert!(data_dir.join("clients/capteur-1/capteur-1.crt").is_file(), "client certificate missing");
    assert!(!read(&data_dir.join("ca.key")).contains("ENCRYPTED"), "CA key encrypted without a passphrase");

    let show =
        run(command_in(dir.path(), &["certs", "show", &data_dir.join("server.crt").display().to_string()]), None);
    let names = show.stdout.lines().find(|line| line.starts_with("names:")).unwrap_or_default().to_owned();
    assert!(names.contains("mqtt.exemple.test"), "{show}");
    assert!(names.contains("192.0.2.30"), "{show}");
    assert!(!names.contains("localhost"), "the typed list did not replace the defaults: {names}");
}

#[test]
fn init_interactive_in_english() {
    let dir = tempfile::tempdir().unwrap();
    let mut terminal = Terminal::start(dir.path(), "en_US.UTF-8");
    terminal.expect("lpiotia-mqtt first-run setup");
    terminal.answer("Host names for the server certificate, comma-separated [", "");
    terminal.answer("IP addresses for the server certificate, comma-separated [", "");
    terminal.answer("Passphrase of the new CA key (empty: none)", "ca-secret");
    terminal.answer("Passphrase again", "ca-secret");
    terminal.answer("User name [admin]", "");
    terminal.answer("Password of admin (empty: generate one)", "first-try");
    terminal.answer("Password again", "typo");
    terminal.expect("The two entries differ; try again.");
    terminal.answer("Password of admin (empty: generate one)", "pw-admin-2");
    terminal.answer("Password again", "pw-admin-2");
    terminal.answer("InfluxDB user name [admin]", "influx");
    terminal.answer("InfluxDB password (empty: generate one)", "pw-influx");
    terminal.answer("Password again", "pw-influx");
    terminal.answer("InfluxDB organization [iotiaquarium]", "");
    terminal.answer("InfluxDB bucket [aquarium]", "tanks");
    terminal.answer("LAN address on which the Compose stack publishes its ports [", "not-an-address");
    terminal.expect("Invalid answer");
    terminal.answer("LAN address on which the Compose stack publishes its ports [", "192.0.2.40");
    terminal.answer("Client certificates to create now, comma-separated names [none]", "");
    terminal.expect("Setup done.");
    terminal.expect("SHA-256 fingerprint");
    terminal.finish();

    let data_dir = dir.path().join("broker-data");
    assert!(verify_password(&data_dir.join("passwd"), "admin", "pw-admin-2"));
    assert!(read(&data_dir.join("ca.key")).contains("ENCRYPTED"), "CA key not encrypted with the passphrase");
    let env_text = read(&dir.path().join("config/.env"));
    assert_eq!(env_value(&env_text, "DOCKER_INFLUXDB_INIT_USERNAME").as_deref(), Some("influx"));
    assert_eq!(env_value(&env_text, "DOCKER_INFLUXDB_INIT_PASSWORD").as_deref(), Some("pw-influx"));
    assert_eq!(env_value(&env_text, "DOCKER_INFLUXDB_INIT_BUCKET").as_deref(), Some("tanks"));
    assert_eq!(env_value(&env_text, "LAN_ADDRESS").as_deref(), Some("192.0.2.40"));
    assert!(!data_dir.join("clients").join("none").exists());
}

/// Writes a config and a password file with `users` into `dir`, for a broker started later.
fn add_users(dir: &TestDir, users: &[(&str, &str)]) {
    dir.write_config(SYS_EVERY_SECOND);
    for (user, password) in users {
        let output = passwd_command(dir, &["add", user, "--password-stdin"], Some(&format!("{password}\n")));
        assert!(output.success(), "passwd add {user} failed\n{output}");
    }
}

fn status_once(broker: &Broker, password: &str) -> Output {
    let port = broker.port().to_string();
    let command = command_in(
        Path::new("/"),
        &[
            "status",
            "--once",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--username",
            "admin",
            "--password-stdin",
            "--timeout",
            "10",
        ],
    );
    run(command, Some(&format!("{password}\n")))
}

#[test]
fn status_once_lists_clients_and_refusals() {
    let dir = TestDir::new();
    let users = [("admin", "status-admin"), ("alice", "pw-alice"), ("bob", "pw-bob"), ("carol", "pw-carol")];
    add_users(&dir, &users);
    let broker = Broker::start_in(dir, SYS_EVERY_SECOND);
    let clients = [
        ("tank-sensor-1", "alice", "pw-alice"),
        ("tank-sensor-2", "bob", "pw-bob"),
        ("brain-main", "carol", "pw-carol"),
    ];
    let _subscribers: Vec<Subscriber> = clients
        .iter()
        .map(|(id, user, password)| {
            Subscriber::start(&broker, &["-i", id, "-u", user, "-P", password, "-t", "aquarium/#"])
        })
        .collect();
    let refused =
        mosquitto::publish(&broker, &["-i", "intruder-1", "-u", "alice", "-P", "wrong", "-t", "x", "-m", "y"]);
    assert!(!refused.success(), "a wrong password was accepted\n{refused}");

    // $SYS is published every second, so the clients appear within a few snapshots.
    let deadline = Instant::now() + SYS_TIMEOUT;
    let output = loop {
        let output = status_once(&broker, "status-admin");
        assert!(output.success(), "{output}\n{}", broker.log_tail());
        let complete =
            clients.iter().all(|(id, _, _)| output.stdout.contains(id)) && output.stdout.contains("intruder-1");
        if complete || Instant::now() > deadline {
            break output;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    for (id, user, _) in clients {
        let row = output.stdout.lines().find(|line| line.starts_with(id));
        let row = row.unwrap_or_else(|| panic!("no row for client {id} in:\n{}", output.stdout));
        assert!(row.split_whitespace().nth(1) == Some(user), "row of {id} lacks username {user}: {row}");
        assert!(row.contains("127.0.0.1:"), "row of {id} lacks the address: {row}");
        assert!(row.split_whitespace().nth(3) == Some("lan"), "row of {id} lacks the listener: {row}");
    }
    let refusal = output.stdout.lines().find(|line| line.contains("intruder-1"));
    let refusal = refusal.unwrap_or_else(|| panic!("no refusal of intruder-1 in:\n{}", output.stdout));
    assert!(refusal.contains("127.0.0.1:"), "refusal without address: {refusal}");
    assert!(refusal.to_lowercase().contains("password"), "refusal without reason: {refusal}");
    assert!(
        output.stdout.contains(&format!("lpiotia-mqtt version {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        output.stdout
    );
    assert!(output.stdout.contains("connections refused"), "{}", output.stdout);

    let wrong = status_once(&broker, "not-the-password");
    assert!(!wrong.success(), "status connected with a wrong password\n{wrong}");
    assert!(wrong.stderr.contains("refused"), "{wrong}");
    assert!(wrong.stderr.contains("password"), "{wrong}");
}

/// Returns the payloads of `topic` received by `subscriber`, in order.
fn payloads(subscriber: &Subscriber, topic: &str) -> Vec<String> {
    subscriber.messages().into_iter().filter(|message| message.topic == topic).map(|message| message.payload).collect()
}

/// Waits until `subscriber` receives `topic` with `payload` after the first `skip` payloads.
fn wait_for_payload(subscriber: &Subscriber, topic: &str, skip: usize, payload: &str) -> usize {
    let deadline = Instant::now() + SYS_TIMEOUT;
    loop {
        let received = payloads(subscriber, topic);
        if let Some(index) = received.iter().skip(skip).position(|value| value == payload) {
            return skip + index + 1;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} never became {payload} within {SYS_TIMEOUT:?}; received {received:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sys_topics_track_version_and_connected_clients() {
    let dir = TestDir::new();
    add_users(&dir, &[("admin", "sys-admin")]);
    let broker = Broker::start_in(dir, SYS_EVERY_SECOND);
    let login = ["-u", "admin", "-P", "sys-admin"];
    let mut args = vec!["-t", "$SYS/broker/version", "-t", "$SYS/broker/clients/connected"];
    args.extend(login);
    let watcher = Subscriber::start(&broker, &args);

    let version = format!("lpiotia-mqtt version {}", env!("CARGO_PKG_VERSION"));
    wait_for_payload(&watcher, "$SYS/broker/version", 0, &version);
    // The watcher is the only client.
    let seen = wait_for_payload(&watcher, "$SYS/broker/clients/connected", 0, "1");

    let mut other_args = vec!["-i", "second-client", "-t", "other/#"];
    other_args.extend(login);
    let other = Subscriber::start(&broker, &other_args);
    let seen = wait_for_payload(&watcher, "$SYS/broker/clients/connected", seen, "2");
    drop(other);
    wait_for_payload(&watcher, "$SYS/broker/clients/connected", seen, "1");
}

#[test]
fn uninstall_dry_run_deletes_data_only_with_purge() {
    let dir = TestDir::new();
    dir.write_config("");
    let config = dir.config_path().display().to_string();
    let data_dir = dir.data_dir().display().to_string();

    let plain = run(command_in(Path::new("/"), &["uninstall", "--dry-run", "--config", &config]), None);
    assert!(plain.success(), "{plain}");
    assert!(
        !plain.stdout.contains(&format!("delete  {data_dir} ")),
        "data directory deleted without --purge:\n{plain}"
    );
    assert!(plain.stdout.contains(&format!("keep    {data_dir} ")), "data directory not listed as kept:\n{plain}");

    let purge = run(command_in(Path::new("/"), &["uninstall", "--dry-run", "--purge", "--config", &config]), None);
    assert!(purge.success(), "{purge}");
    assert!(purge.stdout.contains(&format!("delete  {data_dir} (data directory")), "no data directory in:\n{purge}");
    let config_dir = dir.path().display().to_string();
    assert!(
        purge.stdout.contains(&format!("delete  {config_dir} (config directory")),
        "no config directory in:\n{purge}"
    );
    assert!(purge.stdout.contains("Dry run: nothing was changed."), "{purge}");
    assert!(dir.data_dir().is_dir(), "--dry-run deleted the data directory");
    assert!(dir.config_path().is_file(), "--dry-run deleted the config file");

    // Without a terminal and without --yes, a real run refuses to go on.
    let unconfirmed = run(command_in(Path::new("/"), &["uninstall", "--purge", "--config", &config]), None);
    assert!(!unconfirmed.success(), "uninstall ran without confirmation\n{unconfirmed}");
    assert!(dir.data_dir().is_dir(), "uninstall deleted the data directory without confirmation");
}

/// Collects the datagrams that `serve` sends to a notification socket.
struct NotifyListener {
    socket: UnixDatagram,
    received: Vec<String>,
}

impl NotifyListener {
    fn new(socket: UnixDatagram) -> NotifyListener {
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        NotifyListener { socket, received: Vec::new() }
    }

    /// Waits for a message that matches `expected` after the first `skip` messages, and
    /// returns the number of messages up to and including it.
    fn wait_for(&mut self, skip: usize, expected: impl Fn(&str) -> bool, what: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(index) = self.received.iter().skip(skip).position(|message| expected(message)) {
                return skip + index + 1;
            }
            assert!(Instant::now() < deadline, "no {what} within 10 s; received {:?}", self.received);
            let mut buffer = [0u8; 4096];
            if let Ok(length) = self.socket.recv(&mut buffer) {
                self.received.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
            }
        }
    }
}

fn serve_with_notify_socket(dir: TestDir, socket_variable: &str) -> Broker {
    dir.write_config(SYS_EVERY_SECOND);
    let mut command = broker_command(&dir);
    command
        .arg("serve")
        .arg("--config")
        .arg(dir.config_path())
        .env("LPIOTIA_MQTT_ADMIN_PASSWORD", common::ADMIN_PASSWORD)
        .env("NOTIFY_SOCKET", socket_variable);
    Broker::spawn(command, dir, "lan")
}

#[test]
fn serve_notifies_systemd_of_its_state() {
    let dir = TestDir::new();
    let path = dir.path().join("notify.sock");
    let mut listener = NotifyListener::new(UnixDatagram::bind(&path).unwrap());
    let mut broker = serve_with_notify_socket(dir, &path.display().to_string());

    let seen = listener.wait_for(0, |message| message == "READY=1", "READY=1");
    listener.wait_for(0, |message| message.starts_with("STATUS=") && message.ends_with(" clients connected"), "STATUS");

    broker.sighup();
    let seen = listener.wait_for(seen, |message| message == "RELOADING=1", "RELOADING=1 after SIGHUP");
    listener.wait_for(seen, |message| message == "READY=1", "READY=1 after the reload");

    broker.stop();
    listener.wait_for(0, |message| message == "STOPPING=1", "STOPPING=1");
}

#[test]
fn serve_notifies_abstract_socket() {
    let name = format!("lpiotia-mqtt-test-{}", std::process::id());
    let address = UnixSocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let mut listener = NotifyListener::new(UnixDatagram::bind_addr(&address).unwrap());
    let mut broker = serve_with_notify_socket(TestDir::new(), &format!("@{name}"));
    listener.wait_for(0, |message| message == "READY=1", "READY=1 on an abstract socket");
    broker.stop();
}
