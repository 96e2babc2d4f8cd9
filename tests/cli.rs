//! The command line: `check-config`, first start without any configuration, global flags,
//! and clean exit on signals.

mod common;

use std::fs;
use std::time::Duration;

use common::process;
use common::raw::{ConnectOptions, RawClient};
use common::{broker_command, file_mode, Broker, TestDir, ADMIN_USER};

fn check_config(dir: &TestDir, env: &[(&str, &str)]) -> process::Output {
    let mut command = broker_command(dir);
    command.arg("check-config").arg("--config").arg(dir.config_path());
    for (key, value) in env {
        command.env(key, value);
    }
    process::run(command, None, Duration::from_secs(30))
}

/// Returns the line of `text` that mentions `key`, for checking a printed setting.
fn line_with<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find(|line| line.contains(key))
}

#[test]
fn check_config_prints_effective_config() {
    let dir = TestDir::new();
    dir.write_config("[limits]\nconnect_timeout_secs = 7\n");

    let output = check_config(&dir, &[]);

    assert!(output.success(), "{output}");
    let line = line_with(&output.stdout, "connect_timeout_secs").unwrap_or_else(|| panic!("connect_timeout_secs not printed\n{output}"));
    assert!(line.contains('7'), "connect_timeout_secs from the file not in effect: {line}");
    let line = line_with(&output.stdout, "max_queued_messages_clean").unwrap_or_else(|| panic!("max_queued_messages_clean not printed\n{output}"));
    assert!(line.contains("1000"), "max_queued_messages_clean: {line}");
}

#[test]
fn check_config_env_overrides_file() {
    let dir = TestDir::new();
    dir.write_config("[limits]\nconnect_timeout_secs = 7\n");

    let output = check_config(&dir, &[("LPIOTIA_MQTT__LIMITS__CONNECT_TIMEOUT_SECS", "9")]);

    assert!(output.success(), "{output}");
    let line = line_with(&output.stdout, "connect_timeout_secs").unwrap_or_else(|| panic!("connect_timeout_secs not printed\n{output}"));
    assert!(line.contains('9'), "value from the environment not in effect: {line}");
    assert!(!line.contains('7'), "value from the file still in effect: {line}");
}

#[test]
fn check_config_names_unknown_key() {
    let dir = TestDir::new();
    dir.write_config("[limits]\nconect_timeout_secs = 5\n");

    let output = check_config(&dir, &[]);

    assert!(!output.success(), "a misspelt key was accepted\n{output}");
    let text = format!("{}\n{}", output.stdout, output.stderr);
    assert!(text.contains("conect_timeout_secs"), "the error does not name the unknown key\n{output}");
}

#[test]
fn check_config_names_bad_value() {
    let dir = TestDir::new();
    dir.write_config("[limits]\nmax_queued_bytes = \"lots\"\n");

    let output = check_config(&dir, &[]);

    assert!(!output.success(), "an invalid size was accepted\n{output}");
    let text = format!("{}\n{}", output.stdout, output.stderr);
    assert!(text.contains("max_queued_bytes"), "the error does not name the invalid key\n{output}");
}

/// Starts `serve` in `dir` with no configuration file and no admin password, binding
/// every default listener to a free loopback port.
// NOTE: a listener added to the defaults needs its own line here, or parallel tests
// collide on its fixed port.
fn serve_without_config(dir: TestDir) -> Broker {
    let mut command = broker_command(&dir);
    command
        .arg("serve")
        .env("LPIOTIA_MQTT__LISTENERS__LAN__BIND", "127.0.0.1:0")
        .env("LPIOTIA_MQTT__LISTENERS__TLS__BIND", "127.0.0.1:0")
        .env("LPIOTIA_MQTT__LISTENERS__WS__BIND", "127.0.0.1:0");
    Broker::spawn(command, dir, "lan")
}

/// Returns whether `password` logs in as admin.
fn admin_accepts(broker: &Broker, password: &str) -> bool {
    let options = ConnectOptions::new(4, "bootstrap-check").credentials(ADMIN_USER, password);
    let (client, connack) = RawClient::connect(broker.addr, &options);
    client.drop_connection();
    connack.code == 0
}

#[test]
fn serve_without_config_bootstraps() {
    let dir = TestDir::new();
    fs::remove_dir(dir.data_dir()).unwrap();
    let mut broker = serve_without_config(dir);

    let passwd = broker.dir.path().join("data").join("passwd");
    assert!(passwd.exists(), "serve did not create ./data/passwd");
    assert_eq!(file_mode(&passwd), 0o600, "mode of ./data/passwd");

    // The password is printed once on stdout; find the word of stdout that logs in.
    let stdout = broker.stdout_lines().join("\n");
    let mut candidates: Vec<&str> = Vec::new();
    for word in stdout.split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '`') {
        let word = word.trim_end_matches(['.', ',', ';']);
        candidates.push(word);
        candidates.extend(word.split(':'));
    }
    candidates.retain(|word| word.len() >= 8);
    let password = candidates
        .iter()
        .find(|word| admin_accepts(&broker, word))
        .unwrap_or_else(|| panic!("no word of stdout logs in as admin; stdout:\n{stdout}"))
        .to_string();
    let logged = broker.stderr_lines().iter().any(|line| line.contains(&password));
    assert!(!logged, "the admin password appears in the log");
    broker.stop();

    // A second start finds the password file and prints no password.
    let dir = std::mem::replace(&mut broker.dir, TestDir::new());
    drop(broker);
    let broker = serve_without_config(dir);
    let stdout = broker.stdout_lines().join("\n");
    assert!(!stdout.contains(&password), "second start printed the password again:\n{stdout}");
    assert!(admin_accepts(&broker, &password), "admin password from the first start no longer accepted");
}

#[test]
fn data_dir_flag_overrides_config() {
    let dir = TestDir::new();
    dir.write_config("");
    let other = dir.path().join("other-data");
    let mut command = broker_command(&dir);
    command
        .arg("serve")
        .arg("--config")
        .arg(dir.config_path())
        .arg("--data-dir")
        .arg(&other)
        .env("LPIOTIA_MQTT_ADMIN_PASSWORD", common::ADMIN_PASSWORD);
    let broker = Broker::spawn(command, dir, "lan");

    assert!(other.join("passwd").exists(), "--data-dir {} not used", other.display());
    assert!(!broker.data_dir().join("passwd").exists(), "data_dir from the file used despite --data-dir");
}

#[test]
fn sigterm_exits_cleanly() {
    let mut broker = Broker::start("");
    let _client = RawClient::login_admin(broker.addr, 4, "connected-at-exit");
    broker.stop();
}

#[test]
fn sigint_exits_cleanly() {
    let mut broker = Broker::start("");
    let _client = RawClient::login_admin(broker.addr, 5, "connected-at-exit");
    broker.signal(libc::SIGINT);
    let status = broker.wait_for_exit(common::STOP_TIMEOUT);
    assert_eq!(status.code(), Some(0), "exit status after SIGINT: {status}");
}

#[test]
fn log_has_no_ansi_escapes() {
    let broker = Broker::start("");
    let _client = RawClient::login_admin(broker.addr, 4, "colour-check");
    broker.wait_for_log("client connected", Duration::from_secs(5));
    let coloured: Vec<String> = broker.stderr_lines().into_iter().filter(|line| line.contains('\u{1b}')).collect();
    assert!(coloured.is_empty(), "ANSI escape codes in a log written to a pipe: {coloured:?}");
}
