//! Helpers for the TLS and certificate tests: addresses of the TLS and WebSocket listeners,
//! the `certs` command and Mosquitto's clients over TLS. The `openssl` command (Debian
//! package `openssl`) makes the certificates that the CLI cannot: expired ones and ones from
//! another CA.
//!
//! A test crate that uses this module declares `mod common;` before `mod tls_support;`.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::mosquitto::{require_clients, Version};
use crate::common::process::{self, require_program, Output};
use crate::common::{broker_command, parse_address_field, Broker, LineLog, TestDir, ADMIN_PASSWORD, ADMIN_USER};

/// Time limit for one `mosquitto_pub`, `curl`, `openssl` or `certs` run.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// Time allowed for `mosquitto_sub` to connect over TLS and receive its SUBACK.
const SUBSCRIBED_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for a log line that follows an action of the test.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(5);

/// Prefix of the broker's WARN line for a failed TLS handshake; the rustls reason follows.
pub const HANDSHAKE_FAILED: &str = "connection refused: TLS handshake failed";

/// Returns the address of `listener` from its `listener ready` log line.
pub fn listener_addr(broker: &Broker, listener: &str) -> SocketAddr {
    // The trailing space keeps `listener=ws` from matching a listener named `ws2`.
    let field = format!("listener={listener} ");
    let line = broker.wait_for_log_from(0, &["listener ready", &field], LOG_TIMEOUT);
    parse_address_field(&line).unwrap_or_else(|| panic!("no address=IP:PORT field in the log line: {line}"))
}

/// Runs `lpiotia-mqtt --data-dir DATA_DIR certs ARGS` with standard input closed.
pub fn certs(dir: &TestDir, args: &[&str]) -> Output {
    let mut command = broker_command(dir);
    command.arg("--data-dir").arg(dir.data_dir()).arg("certs").args(args);
    process::run(command, None, RUN_TIMEOUT)
}

/// Runs `certs ARGS` and asserts success.
pub fn certs_ok(dir: &TestDir, args: &[&str]) -> Output {
    let output = certs(dir, args);
    assert!(output.success(), "certs {args:?} failed\n{output}");
    output
}

/// Issues the client certificate `name` with `certs client NAME` and returns its files.
pub fn issue_client(dir: &TestDir, name: &str) -> TlsClient {
    certs_ok(dir, &["client", name]);
    TlsClient::issued(&dir.data_dir(), name)
}

/// Sends SIGHUP and waits until the TLS listener logs that it reloaded its files.
pub fn reload_tls(broker: &Broker) {
    let position = broker.log_position();
    broker.sighup();
    broker.wait_for_log_from(position, &["TLS certificate, key, CA and CRL reloaded", "listener=tls"], LOG_TIMEOUT);
}

/// Waits for the broker's handshake failure line on the `tls` listener, logged at or after
/// `position`, that contains `reason`; returns the line.
pub fn expect_handshake_failure(broker: &Broker, position: usize, reason: &str) -> String {
    let line = broker.wait_for_log_from(position, &[HANDSHAKE_FAILED, "listener=tls"], LOG_TIMEOUT);
    assert!(line.contains("WARN"), "handshake failure not logged at WARN: {line}");
    assert!(line.contains("peer=127.0.0.1:"), "no peer field in: {line}");
    assert!(line.contains(reason), "expected the reason {reason:?} in: {line}");
    line
}

/// Files a TLS client presents: the CA that verifies the server and, unless left out on
/// purpose, a client certificate and its key.
#[derive(Clone, Debug)]
pub struct TlsClient {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsClient {
    /// Returns the files that `certs client NAME` wrote to `clients/NAME/`.
    pub fn issued(data_dir: &Path, name: &str) -> TlsClient {
        let dir = data_dir.join("clients").join(name);
        let client = TlsClient {
            ca: dir.join("ca.crt"),
            cert: Some(dir.join(format!("{name}.crt"))),
            key: Some(dir.join(format!("{name}.key"))),
        };
        for path in [&client.ca, client.cert.as_ref().unwrap(), client.key.as_ref().unwrap()] {
            assert!(path.is_file(), "certs client {name} did not write {}", path.display());
        }
        client
    }

    /// Returns a client that trusts `ca` and presents `cert` with `key`.
    pub fn with_certificate(ca: &Path, cert: &Path, key: &Path) -> TlsClient {
        TlsClient { ca: ca.to_path_buf(), cert: Some(cert.to_path_buf()), key: Some(key.to_path_buf()) }
    }

    /// Returns a client that trusts `ca` and presents no certificate.
    pub fn without_certificate(ca: &Path) -> TlsClient {
        TlsClient { ca: ca.to_path_buf(), cert: None, key: None }
    }

    /// `--cafile CA [--cert CERT --key KEY]` for Mosquitto's clients.
    fn mosquitto_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--cafile".into(), self.ca.clone().into()];
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            args.extend(["--cert".into(), cert.clone().into(), "--key".into(), key.clone().into()]);
        }
        args
    }

    /// Runs `mosquitto_pub -h 127.0.0.1 -p PORT TLS-ARGS ARGS` and returns its output. A
    /// refused CONNECT ends it with the CONNACK return code (5) or reason code (134, 135).
    pub fn publish(&self, addr: SocketAddr, args: &[&str]) -> Output {
        require_clients();
        let port = addr.port().to_string();
        let mut command = Command::new("mosquitto_pub");
        command.args(["-h", "127.0.0.1", "-p", port.as_str()]).args(self.mosquitto_args()).args(args);
        process::run(command, None, RUN_TIMEOUT)
    }

    /// Publishes `payload` at QoS 1 with `-V version`, logged in as `username`/`password`.
    pub fn publish_as(&self, addr: SocketAddr, version: Version, username: &str, password: &str, payload: &str) -> Output {
        let args = ["-V", version.flag(), "-t", "tls/test", "-q", "1", "-m", payload, "-u", username, "-P", password];
        self.publish(addr, &args)
    }

    /// Publishes `payload` at QoS 1 as the admin user.
    pub fn publish_admin(&self, addr: SocketAddr, version: Version, payload: &str) -> Output {
        self.publish_as(addr, version, ADMIN_USER, ADMIN_PASSWORD, payload)
    }

    /// Starts `mosquitto_sub` over TLS with `ARGS` and waits for its SUBACK.
    pub fn subscribe(&self, addr: SocketAddr, args: &[&str]) -> TlsSubscriber {
        TlsSubscriber::start(addr, self, args)
    }
}

/// Asserts that `output` is a successful `mosquitto_pub` run; prints the broker log if not.
pub fn assert_published(output: &Output, broker: &Broker) {
    assert!(output.success(), "mosquitto_pub over TLS failed\n{output}\n--- broker stderr ---\n{}", broker.log_tail());
}

/// A running `mosquitto_sub` over TLS whose output is collected in the background.
pub struct TlsSubscriber {
    child: Child,
    command: String,
    stdout: LineLog,
    stderr: LineLog,
}

impl TlsSubscriber {
    fn start(addr: SocketAddr, client: &TlsClient, args: &[&str]) -> TlsSubscriber {
        require_clients();
        require_program("stdbuf", "coreutils");
        let port = addr.port().to_string();
        // `stdbuf -oL` makes mosquitto_sub flush each line, so the SUBACK line shows at once.
        let mut command = Command::new("stdbuf");
        command
            .args(["-oL", "-eL", "mosquitto_sub", "-d", "-F", "MSG|%t|%p", "-h", "127.0.0.1", "-p", port.as_str()])
            .args(client.mosquitto_args())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let description = format!("{command:?}");
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {description}: {error}"));
        let stdout = LineLog::capture(child.stdout.take().unwrap());
        let stderr = LineLog::capture(child.stderr.take().unwrap());
        let mut subscriber = TlsSubscriber { child, command: description, stdout, stderr };
        subscriber.wait_for_suback();
        subscriber
    }

    fn wait_for_suback(&mut self) {
        let deadline = Instant::now() + SUBSCRIBED_TIMEOUT;
        // `mosquitto_sub -d` prints `Subscribed (mid: N): QOS` once the SUBACK arrives.
        while self.stdout.find_from(0, &["Subscribed (mid"]).is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.stdout.wait_closed(Duration::from_secs(2));
                self.stderr.wait_closed(Duration::from_secs(2));
                panic!("mosquitto_sub exited with {status} before its SUBACK\n{}", self.describe());
            }
            assert!(Instant::now() < deadline, "mosquitto_sub got no SUBACK within {SUBSCRIBED_TIMEOUT:?}\n{}", self.describe());
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns the messages received so far, as `TOPIC|PAYLOAD`.
    pub fn messages(&self) -> Vec<String> {
        self.stdout
            .lines()
            .iter()
            .filter_map(|line| line.strip_prefix("MSG|").map(str::to_owned))
            .collect()
    }

    /// Waits until `count` messages have arrived and returns them; panics after `timeout`.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto_sub received {} of {count} messages within {timeout:?}\n{}",
                messages.len(),
                self.describe()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn describe(&self) -> String {
        format!("{}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.command, self.stdout.text(), self.stderr.text())
    }
}

impl Drop for TlsSubscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `openssl ARGS` in `dir` and returns its output, whatever its exit status.
pub fn openssl_output(dir: &Path, args: &[&str]) -> Output {
    require_program("openssl", "openssl");
    let mut command = Command::new("openssl");
    command.current_dir(dir).args(args);
    process::run(command, None, RUN_TIMEOUT)
}

/// Runs `openssl ARGS` in `dir` and asserts success.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    let output = openssl_output(dir, args);
    assert!(output.success(), "openssl {args:?} failed\n{output}");
    output
}

/// Validity period of a certificate signed by [`OpensslCa::sign_client`].
#[derive(Clone, Copy, Debug)]
pub enum Validity {
    /// From now for this many days.
    Days(u32),
    /// From `start` to `end`, both as `YYYYMMDDHHMMSSZ`.
    Between { start: &'static str, end: &'static str },
}

/// `openssl ca` settings: any subject with a common name, and client-certificate extensions
/// like those of `certs client` (not a CA, digital signature, extended key usage clientAuth).
const OPENSSL_CA_CONFIG: &str = "\
[ca]
default_ca = test_ca

[test_ca]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none
x509_extensions = client_extensions

[any_name]
commonName = supplied

[client_extensions]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
";

/// A CA whose certificate and key are PEM files that the `openssl` command can sign with.
pub struct OpensslCa {
    /// Directory that receives the working files and the certificates signed.
    work_dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl OpensslCa {
    /// Uses an existing CA, such as the broker's `ca.crt` and unencrypted `ca.key`.
    pub fn existing(work_dir: &Path, cert: &Path, key: &Path) -> OpensslCa {
        fs::create_dir_all(work_dir).unwrap();
        OpensslCa { work_dir: work_dir.to_path_buf(), cert: cert.to_path_buf(), key: key.to_path_buf() }
    }

    /// Creates a new self-signed ECDSA P-256 CA named `common_name`, valid for 30 days.
    pub fn create(work_dir: &Path, common_name: &str) -> OpensslCa {
        fs::create_dir_all(work_dir).unwrap();
        let subject = format!("/CN={common_name}");
        openssl(
            work_dir,
            &[
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.crt", "-subj", &subject, "-days", "30",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        OpensslCa { work_dir: work_dir.to_path_buf(), cert: work_dir.join("ca.crt"), key: work_dir.join("ca.key") }
    }

    /// Signs a new ECDSA P-256 client certificate for `common_name`; returns its certificate
    /// and key files. Each call works in its own directory, with its own `openssl ca` database.
    pub fn sign_client(&self, common_name: &str, validity: Validity) -> (PathBuf, PathBuf) {
        let dir = self.work_dir.join(format!("client-{common_name}-{}", unique_suffix()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("openssl-ca.cnf"), OPENSSL_CA_CONFIG).unwrap();
        fs::write(dir.join("index.txt"), "").unwrap();
        fs::write(dir.join("serial"), "01\n").unwrap();

        let subject = format!("/CN={common_name}");
        openssl(
            &dir,
            &[
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "client.key", "-out", "client.csr", "-subj", &subject,
            ],
        );

        let ca_cert = self.cert.display().to_string();
        let ca_key = self.key.display().to_string();
        let days = match validity {
            Validity::Days(count) => count.to_string(),
            Validity::Between { .. } => String::new(),
        };
        let mut args = vec![
            "ca", "-batch", "-notext", "-rand_serial", "-config", "openssl-ca.cnf",
            "-cert", &ca_cert, "-keyfile", &ca_key, "-in", "client.csr", "-out", "client.crt",
        ];
        match validity {
            Validity::Days(_) => args.extend(["-days", days.as_str()]),
            Validity::Between { start, end } => args.extend(["-startdate", start, "-enddate", end]),
        }
        openssl(&dir, &args);
        (dir.join("client.crt"), dir.join("client.key"))
    }
}

/// Returns a number that differs between calls in one process, for directory names.
fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Returns the SHA-256 fingerprint of a PEM certificate as `openssl x509 -fingerprint`
/// prints it, in upper case without colons.
pub fn openssl_sha256_fingerprint(cert: &Path) -> String {
    let dir = cert.parent().unwrap_or(Path::new("."));
    let cert_text = cert.display().to_string();
    let output = openssl(dir, &["x509", "-noout", "-fingerprint", "-sha256", "-in", &cert_text]);
    // OpenSSL 3.0 prints `sha256 Fingerprint=AB:CD:...`.
    let value = output
        .stdout
        .split_once('=')
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_else(|| panic!("no `=` in the openssl fingerprint output: {output}"));
    normalize_fingerprint(&value)
}

/// Removes colons and spaces and upper-cases a hexadecimal fingerprint.
pub fn normalize_fingerprint(text: &str) -> String {
    text.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect::<String>().to_uppercase()
}
