//! MQTT over TLS and the HTTPS side of the WebSocket-over-TLS listener: Mosquitto's clients
//! with client certificates, the certificates and passwords the broker must refuse,
//! `certificate_must_match_username`, idle TLS connections, and `curl` against the `ws`
//! listener.
//!
//! Needs the Debian packages mosquitto-clients, openssl, curl and coreutils.

mod common;
mod tls_support;

use std::fs;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::mosquitto::Version;
use common::process::{self, require_program};
use common::{wait_until, Broker, ADMIN_PASSWORD, ADMIN_USER};
use tls_support::{
    assert_published, expect_handshake_failure, issue_client, listener_addr, reload_tls, certs_ok, OpensslCa, TlsClient,
    Validity, LOG_TIMEOUT, RUN_TIMEOUT,
};

/// MQTT 3.1.1 CONNACK return code 5, which `mosquitto_pub` returns as its exit status.
const V3_NOT_AUTHORIZED: i32 = 5;
/// MQTT 5.0 reason code 0x86, Bad User Name or Password, returned as the exit status.
const V5_BAD_USERNAME_OR_PASSWORD: i32 = 0x86;
/// MQTT 5.0 reason code 0x87, Not authorized, returned as the exit status.
const V5_NOT_AUTHORIZED: i32 = 0x87;

/// Starts a broker with the default listeners and issues the client certificate `name`.
fn broker_with_client(config_extra: &str, name: &str) -> (Broker, SocketAddr, TlsClient) {
    let broker = Broker::start(config_extra);
    let addr = listener_addr(&broker, "tls");
    let client = issue_client(&broker.dir, name);
    (broker, addr, client)
}

/// Sends one message with protocol `version` from a publisher to a subscriber, both over TLS
/// with client certificates.
fn pubsub_over_tls(version: Version) {
    let (broker, addr, client) = broker_with_client("", "sensor-1");
    let topic = format!("tls/{}", version.flag());
    let subscriber = client.subscribe(
        addr,
        &["-V", version.flag(), "-t", &topic, "-q", "1", "-C", "1", "-W", "15", "-u", ADMIN_USER, "-P", ADMIN_PASSWORD],
    );

    let payload = format!("over TLS with {}", version.flag());
    let output = client.publish(
        addr,
        &["-V", version.flag(), "-t", &topic, "-q", "1", "-m", &payload, "-u", ADMIN_USER, "-P", ADMIN_PASSWORD],
    );
    assert_published(&output, &broker);

    let messages = subscriber.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(messages, vec![format!("{topic}|{payload}")], "messages received over TLS");
    broker.wait_for_log_from(0, &["client connected", "listener=tls"], LOG_TIMEOUT);
}

#[test]
fn tls_pubsub_v31() {
    pubsub_over_tls(Version::V31);
}

#[test]
fn tls_pubsub_v311() {
    pubsub_over_tls(Version::V311);
}

#[test]
fn tls_pubsub_v5() {
    pubsub_over_tls(Version::V5);
}

#[test]
fn tls_refuses_no_certificate() {
    let broker = Broker::start("");
    let addr = listener_addr(&broker, "tls");
    let client = TlsClient::without_certificate(&broker.data_dir().join("ca.crt"));

    let position = broker.log_position();
    let output = client.publish_admin(addr, Version::V311, "no certificate");

    assert!(!output.success(), "a client without a certificate was accepted\n{output}");
    expect_handshake_failure(&broker, position, "peer sent no certificates");
    assert!(
        !broker.has_log_from(position, &["client connected"]),
        "a client without a certificate got to CONNECT\n{}",
        broker.log_tail()
    );
}

#[test]
fn tls_refuses_expired_certificate() {
    let broker = Broker::start("");
    let addr = listener_addr(&broker, "tls");
    let data_dir = broker.data_dir();
    let ca = OpensslCa::existing(&broker.dir.path().join("openssl"), &data_dir.join("ca.crt"), &data_dir.join("ca.key"));

    // A certificate made the same way with current dates must work, so that the refusal
    // below comes from the dates alone.
    let (cert, key) = ca.sign_client("current-sensor", Validity::Days(30));
    let current = TlsClient::with_certificate(&ca.cert, &cert, &key);
    assert_published(&current.publish_admin(addr, Version::V311, "current"), &broker);

    let (cert, key) = ca.sign_client("expired-sensor", Validity::Between { start: "20200101000000Z", end: "20210101000000Z" });
    let expired = TlsClient::with_certificate(&ca.cert, &cert, &key);
    let position = broker.log_position();
    let output = expired.publish_admin(addr, Version::V311, "expired");

    assert!(!output.success(), "an expired client certificate was accepted\n{output}");
    expect_handshake_failure(&broker, position, "certificate expired");
}

#[test]
fn tls_refuses_foreign_ca_certificate() {
    let broker = Broker::start("");
    let addr = listener_addr(&broker, "tls");
    let foreign_ca = OpensslCa::create(&broker.dir.path().join("foreign-ca"), "Foreign Test CA");
    let (cert, key) = foreign_ca.sign_client("sensor-1", Validity::Days(30));
    // The client trusts the broker's CA, so only the client certificate is wrong.
    let client = TlsClient::with_certificate(&broker.data_dir().join("ca.crt"), &cert, &key);

    let position = broker.log_position();
    let output = client.publish_admin(addr, Version::V311, "foreign CA");

    assert!(!output.success(), "a certificate from another CA was accepted\n{output}");
    expect_handshake_failure(&broker, position, "UnknownIssuer");
}

#[test]
fn tls_refuses_revoked_certificate() {
    let (broker, addr, revoked) = broker_with_client("", "sensor-1");
    let unrevoked = issue_client(&broker.dir, "sensor-2");
    assert_published(&revoked.publish_admin(addr, Version::V311, "before revoke"), &broker);

    certs_ok(&broker.dir, &["revoke", "sensor-1"]);
    reload_tls(&broker);

    let position = broker.log_position();
    let output = revoked.publish_admin(addr, Version::V311, "after revoke");
    assert!(!output.success(), "a revoked certificate was accepted after SIGHUP\n{output}");
    expect_handshake_failure(&broker, position, "Revoked");

    assert_published(&unrevoked.publish_admin(addr, Version::V311, "not revoked"), &broker);
}

#[test]
fn tls_wrong_password_refused() {
    let (broker, addr, client) = broker_with_client("", "sensor-1");

    let position = broker.log_position();
    let output = client.publish_as(addr, Version::V311, ADMIN_USER, "wrong-password", "v311");
    assert_eq!(output.code, Some(V3_NOT_AUTHORIZED), "MQTT 3.1.1 exit status (CONNACK code)\n{output}");
    assert!(output.stderr.contains("not authorised"), "mosquitto_pub output for CONNACK 5\n{output}");
    broker.wait_for_log_from(position, &["connection refused: bad username or password", "listener=tls"], LOG_TIMEOUT);

    let position = broker.log_position();
    let output = client.publish_as(addr, Version::V5, ADMIN_USER, "wrong-password", "v5");
    assert_eq!(output.code, Some(V5_BAD_USERNAME_OR_PASSWORD), "MQTT 5.0 exit status (CONNACK reason code)\n{output}");
    assert!(output.stderr.contains("Bad User Name or Password"), "mosquitto_pub output for reason 0x86\n{output}");
    broker.wait_for_log_from(position, &["connection refused: bad username or password", "listener=tls"], LOG_TIMEOUT);

    let leaked: Vec<String> = broker.stderr_lines().into_iter().filter(|line| line.contains("wrong-password")).collect();
    assert!(leaked.is_empty(), "the broker logged a password: {leaked:?}");
}

#[test]
fn cn_mismatch_refused_when_required() {
    let config = "[listeners.tls]\ncertificate_must_match_username = true\n";
    let (broker, addr, client) = broker_with_client(config, "sensor-1");

    let position = broker.log_position();
    let output = client.publish_admin(addr, Version::V311, "admin with the sensor-1 certificate");
    assert_eq!(output.code, Some(V3_NOT_AUTHORIZED), "MQTT 3.1.1 exit status\n{output}");
    let line = broker.wait_for_log_from(position, &["connection refused: certificate Common Name", "listener=tls"], LOG_TIMEOUT);
    assert!(line.contains("\"sensor-1\""), "the refusal does not name the certificate's Common Name: {line}");
    assert!(line.contains("\"admin\""), "the refusal does not name the username: {line}");

    let output = client.publish_admin(addr, Version::V5, "admin with the sensor-1 certificate");
    assert_eq!(output.code, Some(V5_NOT_AUTHORIZED), "MQTT 5.0 exit status\n{output}");

    // The username that equals the certificate's Common Name is accepted.
    broker.add_user("sensor-1", "sensor-1-password");
    reload_tls(&broker);
    let output = client.publish_as(addr, Version::V311, "sensor-1", "sensor-1-password", "matching CN");
    assert_published(&output, &broker);
}

#[test]
fn cn_mismatch_accepted_when_not_required() {
    let config = "[listeners.tls]\ncertificate_must_match_username = false\n";
    let (broker, addr, client) = broker_with_client(config, "sensor-1");

    for version in Version::ALL {
        let output = client.publish_admin(addr, version, "admin with the sensor-1 certificate");
        assert_published(&output, &broker);
    }
}

/// Idle TCP connections opened on the TLS port, none of which sends a ClientHello.
const IDLE_CONNECTIONS: usize = 1000;

/// Publishes timed before the idle connections are opened, and again after. The test compares
/// the medians of the two groups, so one run slowed by another test does not decide the result.
const TIMED_RUNS: usize = 5;

/// Target for the delay the idle connections may add to one full TLS connect, CONNECT,
/// QoS 1 PUBLISH and DISCONNECT.
const TARGET_ADDED_DELAY: Duration = Duration::from_millis(100);

/// Allowance on top of the target for a loaded 2-core CI machine that runs other tests and
/// builds at the same time, and for the 10 ms polling of the process runner. A broker that
/// handled handshakes one at a time would instead stall for the 60 s handshake timeout.
const CI_MARGIN: Duration = Duration::from_millis(400);

#[test]
fn idle_tls_connections_do_not_delay_new_clients() {
    // The broker inherits this process's limit, so raise it before starting the broker.
    let needed_files = IDLE_CONNECTIONS as u64 + 512;
    raise_open_files_limit(needed_files);
    // 60 s is far longer than the test, so no idle connection is closed by the timeout.
    let (broker, addr, client) = broker_with_client("[listeners.tls]\nhandshake_timeout_secs = 60\n", "sensor-1");
    let broker_limit = open_files_limit(broker.pid());
    assert!(
        broker_limit >= needed_files,
        "the broker may open only {broker_limit} files, too few for {IDLE_CONNECTIONS} idle connections; raise RLIMIT_NOFILE"
    );

    let baseline = median_publish_time(&broker, addr, &client, "baseline");

    let files_before = open_file_count(broker.pid());
    let idle = open_idle_connections(addr, IDLE_CONNECTIONS);
    // Accepted connections hold a descriptor each in the broker, so this proves that the
    // broker accepted them all and is now waiting for their ClientHello.
    let accepted = wait_until(Duration::from_secs(20), || open_file_count(broker.pid()) >= files_before + IDLE_CONNECTIONS);
    assert!(
        accepted,
        "the broker holds {} descriptors, expected at least {} after {IDLE_CONNECTIONS} idle connections",
        open_file_count(broker.pid()),
        files_before + IDLE_CONNECTIONS
    );

    let loaded = median_publish_time(&broker, addr, &client, "with idle connections");

    let closed = idle.iter().filter(|stream| !is_open(stream)).count();
    assert_eq!(closed, 0, "the broker closed {closed} of the idle connections during the test");
    assert!(
        !broker.has_log_from(0, &["TLS handshake not finished"]),
        "a handshake timed out, so the timeout and not the broker's design let the client in\n{}",
        broker.log_tail()
    );

    let added = loaded.saturating_sub(baseline);
    eprintln!("TLS publish, median of {TIMED_RUNS}: {baseline:?} before, {loaded:?} with {IDLE_CONNECTIONS} idle connections");
    assert!(
        added < TARGET_ADDED_DELAY + CI_MARGIN,
        "{IDLE_CONNECTIONS} idle TLS connections added {added:?} to a publish (baseline {baseline:?}, with idle connections {loaded:?}); allowed {:?}",
        TARGET_ADDED_DELAY + CI_MARGIN
    );
}

/// Returns the median duration of [`TIMED_RUNS`] `mosquitto_pub` runs over TLS.
fn median_publish_time(broker: &Broker, addr: SocketAddr, client: &TlsClient, label: &str) -> Duration {
    let mut durations: Vec<Duration> = (0..TIMED_RUNS)
        .map(|run| {
            let started = Instant::now();
            let output = client.publish_admin(addr, Version::V311, &format!("{label} {run}"));
            let elapsed = started.elapsed();
            assert_published(&output, broker);
            elapsed
        })
        .collect();
    durations.sort();
    durations[TIMED_RUNS / 2]
}

/// Opens `count` TCP connections to `addr` that send nothing.
fn open_idle_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut streams = Vec::with_capacity(count);
    for index in 0..count {
        assert!(Instant::now() < deadline, "opened only {index} of {count} connections within 30 s");
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|error| panic!("idle connection {index} to {addr} failed: {error}"));
        streams.push(stream);
    }
    streams
}

/// Returns whether the peer has neither closed nor reset `stream`; it must have sent nothing.
fn is_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("set_nonblocking failed");
    let mut byte = [0u8; 1];
    match (&*stream).read(&mut byte) {
        Err(error) if error.kind() == ErrorKind::WouldBlock => true,
        Ok(0) | Err(_) => false,
        Ok(_) => panic!("the broker sent data before the client's ClientHello"),
    }
}

/// Raises this process's soft RLIMIT_NOFILE to at least `minimum`, up to the hard limit.
fn raise_open_files_limit(minimum: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0, "getrlimit failed");
        if limit.rlim_cur >= minimum as libc::rlim_t {
            return;
        }
        assert!(
            limit.rlim_max >= minimum as libc::rlim_t,
            "the hard open-file limit {} is below the {minimum} this test needs; raise it (ulimit -Hn)",
            limit.rlim_max
        );
        limit.rlim_cur = minimum as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0, "setrlimit failed");
    }
}

/// Returns the soft open-file limit of process `pid`, from `/proc/PID/limits`.
fn open_files_limit(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/limits");
    let text = fs::read_to_string(&path).unwrap_or_else(|error| panic!("failed to read {path}: {error}"));
    let line = text
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no `Max open files` line in {path}"));
    let soft = line.trim_start_matches("Max open files").split_whitespace().next().unwrap();
    if soft == "unlimited" {
        return u64::MAX;
    }
    soft.parse().unwrap_or_else(|error| panic!("bad soft limit {soft:?} in {path}: {error}"))
}

/// Returns the number of open descriptors of process `pid`.
fn open_file_count(pid: u32) -> usize {
    let path = format!("/proc/{pid}/fd");
    fs::read_dir(&path).unwrap_or_else(|error| panic!("failed to list {path}: {error}")).count()
}

/// Runs `curl` over HTTPS with a client certificate, saving the body to `body_file`;
/// returns the HTTP status.
fn curl_get(addr: SocketAddr, client: &TlsClient, path: &str, body_file: &Path) -> u16 {
    require_program("curl", "curl");
    let port = addr.port();
    // `--resolve` pins localhost to the address the listener is bound to, so curl neither
    // tries ::1 first nor sends an IP address as the server name.
    let resolve = format!("localhost:{port}:{}", addr.ip());
    let url = format!("https://localhost:{port}{path}");
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", "--max-time", "10", "--resolve", &resolve])
        .arg("--cacert")
        .arg(&client.ca)
        .arg("--cert")
        .arg(client.cert.as_ref().unwrap())
        .arg("--key")
        .arg(client.key.as_ref().unwrap())
        .arg("--output")
        .arg(body_file)
        .args(["--write-out", "%{http_code}", &url]);
    let output = process::run(command, None, RUN_TIMEOUT);
    assert!(output.success(), "curl {url} failed\n{output}");
    output.stdout.trim().parse().unwrap_or_else(|_| panic!("curl printed no HTTP status\n{output}"))
}

#[test]
fn wss_get_serves_status_and_ca() {
    let broker = Broker::start("");
    let ws_addr = listener_addr(&broker, "ws");
    let client = issue_client(&broker.dir, "browser");
    let body_file = broker.dir.path().join("status.txt");
    let ca_file = broker.dir.path().join("downloaded-ca.crt");

    let status = curl_get(ws_addr, &client, "/", &body_file);
    assert_eq!(status, 200, "HTTP status of GET /");
    let body = fs::read_to_string(&body_file).unwrap();
    assert!(body.contains("lpiotia-mqtt"), "status page without the product name: {body:?}");

    let status = curl_get(ws_addr, &client, "/ca.crt", &ca_file);
    assert_eq!(status, 200, "HTTP status of GET /ca.crt");
    let served = fs::read(&ca_file).unwrap();
    let on_disk = fs::read(broker.data_dir().join("ca.crt")).unwrap();
    assert!(served.starts_with(b"-----BEGIN CERTIFICATE-----"), "GET /ca.crt is not a PEM certificate: {:?}", String::from_utf8_lossy(&served));
    assert_eq!(served, on_disk, "GET /ca.crt differs from data/ca.crt");

    broker.wait_for_log_from(0, &["answered HTTP GET", "listener=ws", "path=/ca.crt"], LOG_TIMEOUT);
}
