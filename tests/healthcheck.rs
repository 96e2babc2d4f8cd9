//! `lpiotia-mqtt healthcheck`: exit status 0 when a broker replies to CONNECT with a
//! CONNACK, 1 with a one-line reason otherwise.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{self, Output};
use common::{broker_command, Broker, TestDir, BIN};

/// Upper bound for one healthcheck run: its own 3 s limit plus process start.
const RUN_TIMEOUT: Duration = Duration::from_secs(15);

fn healthcheck(args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command.arg("healthcheck").args(args);
    process::run(command, None, RUN_TIMEOUT)
}

/// Returns a loopback port that had no listener a moment ago.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind a free port");
    listener.local_addr().unwrap().port()
}

fn assert_one_line_failure(output: &Output, expected: &str) {
    assert_eq!(output.code, Some(1), "{output}");
    assert_eq!(output.stderr.trim().lines().count(), 1, "reason is not one line\n{output}");
    assert!(output.stderr.contains(expected), "stderr lacks {expected:?}\n{output}");
}

#[test]
fn running_broker_is_healthy() {
    let broker = Broker::start("");
    let address = broker.addr.to_string();

    let output = healthcheck(&["--address", &address]);

    assert!(output.success(), "{output}");
    assert!(output.stdout.contains("CONNACK"), "{output}");
    // No credentials were sent, so the default listener refuses the client.
    assert!(output.stdout.contains("return code 5"), "{output}");
}

#[test]
fn default_address_from_settings() {
    // The check resolves 0.0.0.0 to 127.0.0.1, so the broker binds the unspecified address.
    let port = closed_port();
    let broker = Broker::start(&format!("[listeners.lan]\nbind = \"0.0.0.0:{port}\"\n"));
    assert_eq!(broker.port(), port);

    let mut command = broker_command(&broker.dir);
    command.arg("healthcheck").arg("--config").arg(broker.config_path());
    let output = process::run(command, None, RUN_TIMEOUT);

    assert!(output.success(), "{output}");
    assert!(output.stdout.contains(&format!("127.0.0.1:{port}")), "{output}");
}

#[test]
fn anonymous_listener_reports_accepted() {
    let broker = Broker::start("[listeners.lan]\nallow_anonymous = true\n");
    let address = broker.addr.to_string();

    let output = healthcheck(&["--address", &address]);

    assert!(output.success(), "{output}");
    assert!(output.stdout.contains("return code 0: accepted"), "{output}");
}

#[test]
fn closed_port_is_unhealthy() {
    let address = format!("127.0.0.1:{}", closed_port());

    let output = healthcheck(&["--address", &address]);

    assert_one_line_failure(&output, &address);
}

#[test]
fn silent_server_times_out() {
    // The kernel completes the TCP handshake for the backlog, but nothing ever replies.
    let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind a free port");
    let address: SocketAddr = listener.local_addr().unwrap();
    let start = Instant::now();

    let output = healthcheck(&["--address", &address.to_string()]);

    assert_one_line_failure(&output, "timed out after 3 s");
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    drop(listener);
}

#[test]
fn tls_listener_is_not_plain_mqtt() {
    let broker = Broker::start("");
    let tls_line = broker.wait_for_log_from(0, &["listener ready", "listener=tls"], Duration::from_secs(5));
    let tls_address = common::parse_address_field(&tls_line).expect("tls listener address");

    let output = healthcheck(&["--address", &tls_address.to_string()]);

    assert_eq!(output.code, Some(1), "{output}");
    assert_eq!(output.stderr.trim().lines().count(), 1, "{output}");
}

#[test]
fn port_zero_in_settings_needs_address() {
    // The test configuration binds every listener to port 0.
    let dir = TestDir::new();
    dir.write_config("");
    let mut command = broker_command(&dir);
    command.arg("healthcheck").arg("--config").arg(dir.config_path());

    let output = process::run(command, None, RUN_TIMEOUT);

    assert_one_line_failure(&output, "pass --address");
}

#[test]
fn invalid_address_is_rejected() {
    let output = healthcheck(&["--address", "no-port-here"]);

    assert_one_line_failure(&output, "invalid --address");
}
