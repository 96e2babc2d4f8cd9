//! The `certs` command end to end: a CA and server certificate made by `certs init`, client
//! certificates that Mosquitto's clients connect with, revocation applied on SIGHUP, the
//! listing, fingerprints, overwrite protection and a passphrase-protected CA key.
//!
//! Needs the Debian packages mosquitto-clients, openssl and coreutils.

mod common;
mod tls_support;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::mosquitto::{self, Subscriber, Version};
use common::{file_mode, write_file, Broker, TestDir};
use tls_support::{
    assert_published, certs, certs_ok, expect_handshake_failure, listener_addr, normalize_fingerprint, openssl,
    openssl_output, openssl_sha256_fingerprint, reload_tls, TlsClient,
};

/// Arguments of `certs init` for a CA without passphrase whose server certificate names the
/// loopback address the tests connect to.
const INIT_ARGS: [&str; 6] = ["init", "--no-passphrase", "--dns", "localhost", "--ip", "127.0.0.1"];

/// Runs `certs init` with [`INIT_ARGS`] in a new data directory.
fn init_dir() -> TestDir {
    let dir = TestDir::new();
    certs_ok(&dir, &INIT_ARGS);
    dir
}

/// Issues the client certificate `name` with a PKCS#12 password from a file.
fn issue_client(dir: &TestDir, name: &str) -> TlsClient {
    let password_file = dir.path().join(format!("{name}.p12-password"));
    write_file(&password_file, &format!("{name}-p12-secret\n"));
    let password_arg = password_file.display().to_string();
    certs_ok(dir, &["client", name, "--p12-password-file", &password_arg]);
    TlsClient::issued(&dir.data_dir(), name)
}

/// Starts the broker on a data directory prepared by `certs`; returns it and the TLS address.
fn start_broker(dir: TestDir) -> (Broker, SocketAddr) {
    let broker = Broker::start_in(dir, "");
    let addr = listener_addr(&broker, "tls");
    (broker, addr)
}

/// Returns the `certs list` row whose first two columns are `kind` and `name`, split into
/// columns at whitespace. Client names contain no spaces, so this works for clients.
fn list_row(listing: &str, kind: &str, name: &str) -> Vec<String> {
    listing
        .lines()
        .map(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|columns| columns.len() > 2 && columns[0] == kind && columns[1] == name)
        .unwrap_or_else(|| panic!("no `{kind} {name}` row in `certs list`:\n{listing}"))
}

#[test]
fn certs_init_client_connect() {
    let dir = init_dir();
    let data_dir = dir.data_dir();
    let client = issue_client(&dir, "sensor-1");

    for name in ["ca.crt", "ca.key", "server.crt", "server.key", "crl.pem"] {
        assert!(data_dir.join(name).is_file(), "certs init did not write {name}");
    }
    let p12 = data_dir.join("clients/sensor-1/sensor-1.p12");
    assert!(p12.is_file(), "certs client did not write {}", p12.display());
    for secret in [data_dir.join("ca.key"), data_dir.join("server.key"), data_dir.join("clients/sensor-1/sensor-1.key"), p12.clone()] {
        assert_eq!(file_mode(&secret), 0o600, "mode of {}", secret.display());
    }

    let server_cert = data_dir.join("server.crt").display().to_string();
    let show_output = certs_ok(&dir, &["show", &server_cert]);
    assert!(show_output.stdout.contains("DNS:localhost"), "server certificate without DNS:localhost\n{show_output}");
    assert!(show_output.stdout.contains("IP:127.0.0.1"), "server certificate without IP:127.0.0.1\n{show_output}");

    // The PKCS#12 file opens with the password from the file, and not without it.
    let p12_text = p12.display().to_string();
    let password = dir.path().join("sensor-1.p12-password").display().to_string();
    openssl(dir.path(), &["pkcs12", "-in", &p12_text, "-passin", &format!("file:{password}"), "-noout"]);
    let wrong = openssl_output(dir.path(), &["pkcs12", "-in", &p12_text, "-passin", "pass:not-the-password", "-noout"]);
    assert!(!wrong.success(), "the PKCS#12 file opened with a wrong password\n{wrong}");

    let (broker, addr) = start_broker(dir);
    let topic = "certs/sensor-1";
    let mut args = vec!["-V", "mqttv311", "-t", topic, "-q", "1", "-C", "1", "-W", "15"];
    args.extend(mosquitto::admin_login());
    let subscriber = Subscriber::start(&broker, &args);

    for version in Version::ALL {
        assert_published(&client.publish_admin(addr, version, "from sensor-1"), &broker);
    }
    let output = client.publish(addr, &["-t", topic, "-q", "1", "-m", "over TLS", "-u", common::ADMIN_USER, "-P", common::ADMIN_PASSWORD]);
    assert_published(&output, &broker);

    let (code, messages) = subscriber.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "mosquitto_sub exit status");
    assert_eq!(messages.len(), 1, "messages: {messages:?}");
    assert_eq!(messages[0].payload, "over TLS");
}

#[test]
fn certs_revoke_then_sighup_refuses() {
    let dir = init_dir();
    let revoked = issue_client(&dir, "sensor-1");
    let unrevoked = issue_client(&dir, "sensor-2");
    let (broker, addr) = start_broker(dir);
    assert_published(&revoked.publish_admin(addr, Version::V311, "before revoke"), &broker);

    let output = certs_ok(&broker.dir, &["revoke", "sensor-1"]);
    assert!(output.stdout.contains("sensor-1"), "revoke output does not name the client\n{output}");
    assert!(output.stderr.contains("SIGHUP"), "revoke does not say how to apply it\n{output}");
    reload_tls(&broker);

    let position = broker.log_position();
    let output = revoked.publish_admin(addr, Version::V311, "after revoke");
    assert!(!output.success(), "the revoked sensor-1 connected after SIGHUP\n{output}");
    expect_handshake_failure(&broker, position, "Revoked");

    assert_published(&unrevoked.publish_admin(addr, Version::V311, "sensor-2 after revoke"), &broker);
}

#[test]
fn certs_list_and_fingerprint() {
    let dir = init_dir();
    issue_client(&dir, "sensor-1");

    let listing = certs_ok(&dir, &["list"]).stdout;
    let ca_row = listing.lines().find(|line| line.starts_with("ca ")).unwrap_or_else(|| panic!("no ca row:\n{listing}"));
    assert!(ca_row.contains("valid"), "CA not valid in `certs list`: {ca_row}");
    let server_row = listing.lines().find(|line| line.starts_with("server ")).unwrap_or_else(|| panic!("no server row:\n{listing}"));
    assert!(server_row.contains("valid"), "server certificate not valid in `certs list`: {server_row}");
    assert_eq!(list_row(&listing, "client", "sensor-1")[2], "valid", "sensor-1 before revoke:\n{listing}");

    certs_ok(&dir, &["revoke", "sensor-1"]);
    let listing = certs_ok(&dir, &["list"]).stdout;
    assert_eq!(list_row(&listing, "client", "sensor-1")[2], "revoked", "sensor-1 after revoke:\n{listing}");

    let output = certs_ok(&dir, &["fingerprint"]);
    let ca_line = output
        .stdout
        .lines()
        .find(|line| line.starts_with("CA ") && line.contains("SHA-256"))
        .unwrap_or_else(|| panic!("no CA SHA-256 line\n{output}"));
    let printed = ca_line.split_whitespace().nth(2).unwrap_or_else(|| panic!("no fingerprint in: {ca_line}"));
    let expected = openssl_sha256_fingerprint(&dir.data_dir().join("ca.crt"));
    assert_eq!(normalize_fingerprint(printed), expected, "CA fingerprint of `certs fingerprint` and of openssl");
}

#[test]
fn certs_init_refuses_overwrite() {
    let dir = init_dir();
    let ca_cert = dir.data_dir().join("ca.crt");
    let original = fs::read(&ca_cert).unwrap();

    let output = certs(&dir, &INIT_ARGS);
    assert!(!output.success(), "a second `certs init` succeeded\n{output}");
    let named = output.stderr.contains(&ca_cert.display().to_string())
        || output.stderr.contains(&dir.data_dir().join("ca.key").display().to_string());
    assert!(named, "the error does not name the existing CA file\n{output}");
    assert_eq!(fs::read(&ca_cert).unwrap(), original, "a refused `certs init` changed ca.crt");

    let mut forced = INIT_ARGS.to_vec();
    forced.push("--force");
    certs_ok(&dir, &forced);
    assert_ne!(fs::read(&ca_cert).unwrap(), original, "`certs init --force` kept the old CA");
}

#[test]
fn certs_passphrase_protected_ca() {
    let dir = TestDir::new();
    let passphrase_file = dir.path().join("ca-passphrase");
    write_file(&passphrase_file, "correct horse battery staple\n");
    let passphrase_arg = passphrase_file.display().to_string();
    certs_ok(&dir, &["init", "--passphrase-file", &passphrase_arg, "--dns", "localhost", "--ip", "127.0.0.1"]);
    let ca_key = fs::read_to_string(dir.data_dir().join("ca.key")).unwrap();
    assert!(ca_key.contains("ENCRYPTED PRIVATE KEY"), "ca.key is not an encrypted PKCS#8 key:\n{ca_key}");

    let output = certs(&dir, &["client", "x"]);
    assert!(!output.success(), "`certs client` signed without the CA passphrase\n{output}");
    assert!(output.stderr.contains("encrypted"), "the error does not say the CA key is encrypted\n{output}");
    assert!(output.stderr.contains("--passphrase-file"), "the error does not name --passphrase-file\n{output}");
    assert_no_client_files(&dir.data_dir(), "x");

    let wrong_file = dir.path().join("wrong-passphrase");
    write_file(&wrong_file, "not-the-ca-passphrase\n");
    let wrong_arg = wrong_file.display().to_string();
    let output = certs(&dir, &["client", "x", "--passphrase-file", &wrong_arg]);
    assert!(!output.success(), "`certs client` signed with a wrong CA passphrase\n{output}");
    assert!(output.stderr.contains("wrong passphrase"), "the error does not say the passphrase is wrong\n{output}");
    assert_no_client_files(&dir.data_dir(), "x");

    certs_ok(&dir, &["client", "x", "--passphrase-file", &passphrase_arg]);
    let client = TlsClient::issued(&dir.data_dir(), "x");

    // The server certificate that init signed with the encrypted key serves clients.
    let (broker, addr) = start_broker(dir);
    assert_published(&client.publish_admin(addr, Version::V311, "signed with a passphrase"), &broker);
}

fn assert_no_client_files(data_dir: &Path, name: &str) {
    let cert = data_dir.join("clients").join(name).join(format!("{name}.crt"));
    assert!(!cert.exists(), "a failed `certs client` left {}", cert.display());
}
