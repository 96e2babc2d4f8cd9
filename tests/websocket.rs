//! End-to-end tests of the `ws` listener: MQTT over WebSocket over TLS, with a client
//! certificate and a password. The clients are Python paho-mqtt, Node MQTT.js, headless
//! Chromium with MQTT.js's browser bundle, and a raw Python client. The raw client sends split
//! and batched frames and the connections that the listener must reject.
//!
//! The clients live in `tests/websocket/`. They print one line per step on stdout, which
//! these tests wait for with a time limit each. What they need beyond Mosquitto's clients:
//! python3 with paho-mqtt 2.x, Node.js with `npm ci` run in `tests/websocket`, and for the
//! browser test the Debian packages `chromium` and `libnss3-tools`, and root, because the
//! test writes a Chromium policy file under /etc/chromium/policies/managed.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::mosquitto::{self, Version};
use common::process::{self, require_program};
use common::{parse_address_field, write_file, Broker, LineLog, ADMIN_PASSWORD, ADMIN_USER};

/// Folder of the Python, JavaScript and HTML clients.
const CLIENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/websocket");

/// Time allowed for one step of a client: connecting, subscribing, receiving a message.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Time allowed for a raw client run, which makes a few round trips at most.
const RAW_TIMEOUT: Duration = Duration::from_secs(20);

/// Password of the PKCS#12 files that the tests issue.
const P12_PASSWORD: &str = "p12-test-password";

/// Directory of Chromium's managed policies on Debian.
const CHROMIUM_POLICY_DIR: &str = "/etc/chromium/policies/managed";

/// A broker with its `ws` listener, and a client certificate issued by its CA.
struct WssBroker {
    broker: Broker,
    /// Port of the `ws` listener, read from its `listener ready` log line.
    ws_port: u16,
    client: ClientFiles,
}

/// Files of one client certificate, as `lpiotia-mqtt certs client NAME` writes them.
struct ClientFiles {
    name: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    p12: PathBuf,
}

impl WssBroker {
    /// Starts a broker with the test configuration and issues a client certificate `client_name`.
    fn start(client_name: &str) -> WssBroker {
        let broker = Broker::start("");
        let line = broker.wait_for_log("listener ready listener=ws", Duration::from_secs(5));
        let ws_port = parse_address_field(&line)
            .unwrap_or_else(|| panic!("no address=IP:PORT field in the log line: {line}"))
            .port();
        let client = issue_client_certificate(&broker, client_name);
        WssBroker { broker, ws_port, client }
    }

    /// Arguments that give a client the CA, its certificate and its key.
    fn tls_args(&self) -> Vec<String> {
        vec![
            "--ca".into(),
            path_arg(&self.client.ca),
            "--cert".into(),
            path_arg(&self.client.cert),
            "--key".into(),
            path_arg(&self.client.key),
        ]
    }

    /// Runs `raw_wss.py MODE ARGS` against the `ws` listener with the client certificate
    /// and the admin login, and returns its output.
    fn run_raw(&self, mode: &str, args: &[&str]) -> process::Output {
        require_python();
        let mut command = Command::new("python3");
        command
            .arg(client_script("raw_wss.py"))
            .arg(mode)
            .args(["--port", &self.ws_port.to_string()])
            .args(self.tls_args())
            .args(["--username", ADMIN_USER, "--password", ADMIN_PASSWORD])
            .args(args);
        process::run(command, None, RAW_TIMEOUT)
    }
}

/// Runs `lpiotia-mqtt --data-dir D certs client NAME --p12-password-file F` and checks the
/// four files it must write.
fn issue_client_certificate(broker: &Broker, name: &str) -> ClientFiles {
    let password_file = broker.dir.path().join("p12-password");
    write_file(&password_file, &format!("{P12_PASSWORD}\n"));
    let mut command = common::broker_command(&broker.dir);
    command
        .arg("--config")
        .arg(broker.config_path())
        .arg("--data-dir")
        .arg(broker.data_dir())
        .args(["certs", "client", name, "--p12-password-file"])
        .arg(&password_file);
    let output = process::run(command, None, Duration::from_secs(30));
    assert!(output.success(), "certs client {name} failed\n{output}");

    let dir = broker.data_dir().join("clients").join(name);
    let files = ClientFiles {
        name: name.to_string(),
        ca: dir.join("ca.crt"),
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        p12: dir.join(format!("{name}.p12")),
    };
    for path in [&files.ca, &files.cert, &files.key, &files.p12] {
        assert!(path.is_file(), "certs client {name} did not write {}\n{output}", path.display());
    }
    files
}

fn client_script(name: &str) -> PathBuf {
    Path::new(CLIENTS_DIR).join(name)
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// Returns `label` made unique to this moment and process, so a stale message cannot pass a test.
fn unique_suffix(label: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock before 1970").as_nanos();
    format!("{label}-{}-{nanos}", std::process::id())
}

/// Panics with the install command when python3 or paho-mqtt 2.x is missing.
fn require_python() {
    require_program("python3", "python3");
}

fn require_paho() {
    require_python();
    let mut command = Command::new("python3");
    command.args([
        "-c",
        "import sys, paho.mqtt; sys.exit(0 if int(paho.mqtt.__version__.split('.')[0]) >= 2 else 1)",
    ]);
    let output = process::run(command, None, Duration::from_secs(30));
    assert!(
        output.success(),
        "python3 has no paho-mqtt 2.x: install it with `python3 -m pip install paho-mqtt==2.1.0`\n{output}"
    );
}

/// Panics with the install command when Node.js or a package of `tests/websocket` is missing.
fn require_node_package(package: &str) {
    require_program("node", "nodejs");
    let manifest = Path::new(CLIENTS_DIR).join("node_modules").join(package).join("package.json");
    assert!(
        manifest.is_file(),
        "the npm package {package} is not installed in {CLIENTS_DIR}: run `npm ci` there \
         (npm comes with the Debian package npm)"
    );
}

/// A client program whose stdout lines are read while it runs. Dropping it kills the process.
struct ClientProcess {
    child: Child,
    description: String,
    stdout: LineLog,
    stderr: LineLog,
}

impl ClientProcess {
    fn spawn(mut command: Command) -> ClientProcess {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let description = format!("{command:?}");
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {description}: {error}"));
        let stdout = LineLog::capture(child.stdout.take().unwrap());
        let stderr = LineLog::capture(child.stderr.take().unwrap());
        ClientProcess { child, description, stdout, stderr }
    }

    /// Waits for a stdout line that starts with `prefix` and returns it. Panics with the
    /// client's output and the broker's log when the client exits first or `timeout` passes.
    fn wait_for_line(&mut self, prefix: &str, timeout: Duration, broker: &Broker) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.stdout.lines().into_iter().find(|line| line.starts_with(prefix)) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.stdout.wait_closed(Duration::from_secs(2));
                self.stderr.wait_closed(Duration::from_secs(2));
                if let Some(line) = self.stdout.lines().into_iter().find(|line| line.starts_with(prefix)) {
                    return line;
                }
                panic!(
                    "client exited with {status} before printing `{prefix}`\n{}\n--- broker stderr ---\n{}",
                    self.describe(),
                    broker.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "client printed no `{prefix}` line within {timeout:?}\n{}\n--- broker stderr ---\n{}",
                    self.describe(),
                    broker.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the client to exit and asserts status 0.
    fn wait_success(&mut self, timeout: Duration, broker: &Broker) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on a client failed") {
                break status;
            }
            if Instant::now() > deadline {
                panic!(
                    "client did not exit within {timeout:?}\n{}\n--- broker stderr ---\n{}",
                    self.describe(),
                    broker.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.stderr.wait_closed(Duration::from_secs(2));
        assert!(
            status.success(),
            "client exited with {status}\n{}\n--- broker stderr ---\n{}",
            self.describe(),
            broker.log_tail()
        );
    }

    fn describe(&self) -> String {
        format!(
            "{}\n--- client stdout ---\n{}\n--- client stderr ---\n{}",
            self.description,
            self.stdout.text(),
            self.stderr.text()
        )
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drives a client that follows the protocol of `paho_client.py` and `mqttjs_client.js`:
/// its own message comes back, then a message published by mosquitto_pub on the `lan`
/// listener reaches it.
fn exchange_messages(wss: &WssBroker, mut client: ClientProcess, topic: &str, own_payload: &str) {
    let broker = &wss.broker;
    client.wait_for_line("connected", STEP_TIMEOUT, broker);
    let subscribed = client.wait_for_line("subscribed", STEP_TIMEOUT, broker);
    assert_eq!(subscribed, "subscribed 1", "granted QoS of a QoS 1 subscription");

    let own = client.wait_for_line("own-message ", STEP_TIMEOUT, broker);
    assert_eq!(own, format!("own-message {topic} {own_payload}"), "the client's own message");
    client.wait_for_line("ready", STEP_TIMEOUT, broker);

    let external_payload = unique_suffix("from-lan");
    mosquitto::publish_ok(broker, Version::V311, topic, 1, &external_payload);
    let received = client.wait_for_line("message ", STEP_TIMEOUT, broker);
    assert_eq!(
        received,
        format!("message {topic} {external_payload}"),
        "message published by mosquitto_pub on the lan listener"
    );
    client.wait_success(STEP_TIMEOUT, broker);
}

/// Runs `paho_client.py` over WSS with MQTT `protocol` ("3.1", "3.1.1" or "5").
fn paho_exchange(wss: &WssBroker, protocol: &str, subprotocol: Option<&str>, client_id: &str) {
    require_paho();
    mosquitto::require_clients();
    let topic = format!("wss/paho/{}", unique_suffix(protocol));
    let own_payload = unique_suffix("own");

    let mut command = Command::new("python3");
    command
        .arg(client_script("paho_client.py"))
        .args(["--port", &wss.ws_port.to_string(), "--protocol", protocol])
        .args(wss.tls_args())
        .args(["--username", ADMIN_USER, "--password", ADMIN_PASSWORD])
        .args(["--client-id", client_id, "--topic", &topic, "--payload", &own_payload]);
    if let Some(subprotocol) = subprotocol {
        command.args(["--subprotocol", subprotocol]);
    }
    exchange_messages(wss, ClientProcess::spawn(command), &topic, &own_payload);
}

/// Asserts the `client connected` log line of `client_id` on the `ws` listener with `protocol`.
fn assert_connected_over_ws(broker: &Broker, client_id: &str, protocol: &str) {
    let client_field = format!("client_id={client_id} ");
    let line = broker.wait_for_log_from(0, &["client connected", &client_field], Duration::from_secs(5));
    assert!(line.contains("listener=ws"), "client {client_id} connected on another listener: {line}");
    assert!(
        line.contains(&format!("protocol=\"{protocol}\"")),
        "client {client_id} connected with another protocol than {protocol}: {line}"
    );
}

#[test]
fn paho_wss_v311() {
    let wss = WssBroker::start("paho311");
    paho_exchange(&wss, "3.1.1", None, "paho-wss-v311");
    assert_connected_over_ws(&wss.broker, "paho-wss-v311", "3.1.1");
}

#[test]
fn paho_wss_v5() {
    let wss = WssBroker::start("paho5");
    paho_exchange(&wss, "5", None, "paho-wss-v5");
    assert_connected_over_ws(&wss.broker, "paho-wss-v5", "5.0");
}

#[test]
fn mqtt31_over_wss() {
    let wss = WssBroker::start("paho31");

    let output = wss.run_raw("handshake", &["--subprotocol", "mqttv3.1"]);
    assert!(output.success(), "handshake with subprotocol mqttv3.1 failed\n{output}");
    assert!(output.stdout.lines().any(|line| line == "status 101"), "upgrade status\n{output}");
    assert!(
        output.stdout.lines().any(|line| line == "subprotocol mqttv3.1"),
        "the broker must echo subprotocol mqttv3.1\n{output}"
    );

    paho_exchange(&wss, "3.1", Some("mqttv3.1"), "paho-wss-v31");
    assert_connected_over_ws(&wss.broker, "paho-wss-v31", "3.1");
}

#[test]
fn mqttjs_wss_node() {
    require_node_package("mqtt");
    mosquitto::require_clients();
    let wss = WssBroker::start("mqttjs");

    for (protocol_version, protocol) in [("4", "3.1.1"), ("5", "5.0")] {
        let client_id = format!("mqttjs-wss-v{protocol_version}");
        let topic = format!("wss/mqttjs/{}", unique_suffix(protocol_version));
        let own_payload = unique_suffix("own");
        let mut command = Command::new("node");
        command
            .arg(client_script("mqttjs_client.js"))
            .args(["--port", &wss.ws_port.to_string(), "--protocol-version", protocol_version])
            .args(wss.tls_args())
            .args(["--username", ADMIN_USER, "--password", ADMIN_PASSWORD])
            .args(["--client-id", &client_id, "--topic", &topic, "--payload", &own_payload]);
        exchange_messages(&wss, ClientProcess::spawn(command), &topic, &own_payload);
        assert_connected_over_ws(&wss.broker, &client_id, protocol);
    }
}

#[test]
fn subprotocol_mqtt_echoed() {
    let wss = WssBroker::start("echo");
    let output = wss.run_raw("handshake", &["--subprotocol", "mqtt"]);
    assert!(output.success(), "handshake with subprotocol mqtt failed\n{output}");
    assert!(output.stdout.lines().any(|line| line == "status 101"), "upgrade status\n{output}");
    assert!(
        output.stdout.lines().any(|line| line == "subprotocol mqtt"),
        "the broker must echo subprotocol mqtt\n{output}"
    );
}

#[test]
fn wrong_subprotocol_gets_400() {
    let wss = WssBroker::start("bogus");
    let position = wss.broker.log_position();
    let output = wss.run_raw("handshake", &["--subprotocol", "bogus"]);
    assert!(output.success(), "handshake client failed\n{output}");
    assert!(
        output.stdout.lines().any(|line| line == "status 400"),
        "subprotocol bogus must get HTTP 400\n{output}\n--- broker stderr ---\n{}",
        wss.broker.log_tail()
    );
    assert!(
        output.stdout.lines().any(|line| line == "subprotocol none"),
        "a refused upgrade must not name a subprotocol\n{output}"
    );
    wss.broker
        .wait_for_log_from(position, &["WARN", "listener=ws", "bogus"], Duration::from_secs(5));
}

#[test]
fn text_frame_closes_connection() {
    let wss = WssBroker::start("text");
    let output = wss.run_raw("text-frame", &["--client-id", "wss-text-frame"]);
    assert!(output.success(), "text-frame client failed\n{output}");
    assert!(output.stdout.lines().any(|line| line == "connack 0"), "CONNACK before the text frame\n{output}");

    let closed = output
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("closed "))
        .unwrap_or_else(|| panic!("no `closed` line\n{output}"))
        .to_string();
    assert!(
        !closed.starts_with("still-open"),
        "a text frame must close the connection, got `{closed}`\n{output}\n--- broker stderr ---\n{}",
        wss.broker.log_tail()
    );
    assert!(
        !output.stdout.lines().any(|line| line.starts_with("unexpected-data")),
        "the broker sent data after the text frame\n{output}"
    );

    let line = wss
        .broker
        .wait_for_log_from(0, &["client disconnected", "client_id=wss-text-frame"], Duration::from_secs(5));
    assert!(line.contains("text frame"), "the disconnect reason must name the text frame: {line}");
}

#[test]
fn missing_client_certificate_fails_tls() {
    let wss = WssBroker::start("nocert");
    for tls_max in ["1.3", "1.2"] {
        let position = wss.broker.log_position();
        let output = wss.run_raw("no-client-cert", &["--tls-max", tls_max]);
        assert!(output.success(), "no-client-cert client failed (TLS {tls_max})\n{output}");
        assert!(
            output.stdout.lines().any(|line| line.starts_with("tls-refused ")),
            "a client without certificate must be refused during TLS (TLS {tls_max})\n{output}\n--- broker stderr ---\n{}",
            wss.broker.log_tail()
        );
        assert!(
            !output.stdout.lines().any(|line| line.starts_with("status ")),
            "a client without certificate got an HTTP response (TLS {tls_max})\n{output}"
        );
        wss.broker.wait_for_log_from(
            position,
            &["listener=ws", "TLS handshake failed"],
            Duration::from_secs(5),
        );
    }
}

#[test]
fn https_get_status_page_and_ca() {
    let wss = WssBroker::start("get");

    let status_page = wss.broker.dir.path().join("status-page.txt");
    let output = wss.run_raw("get", &["--path", "/", "--output", &path_arg(&status_page)]);
    assert!(output.success(), "GET / failed\n{output}");
    assert!(output.stdout.lines().any(|line| line == "status 200"), "GET / status\n{output}");
    let page = fs::read_to_string(&status_page).expect("status page is not UTF-8");
    assert!(page.contains("/mqtt"), "the status page must name the MQTT path: {page:?}");

    let ca_copy = wss.broker.dir.path().join("ca-from-http.crt");
    let output = wss.run_raw("get", &["--path", "/ca.crt", "--output", &path_arg(&ca_copy)]);
    assert!(output.success(), "GET /ca.crt failed\n{output}");
    assert!(output.stdout.lines().any(|line| line == "status 200"), "GET /ca.crt status\n{output}");
    let served = fs::read(&ca_copy).unwrap();
    let on_disk = fs::read(wss.broker.data_dir().join("ca.crt")).unwrap();
    assert!(served == on_disk, "GET /ca.crt must return data_dir/ca.crt byte for byte");
}

#[test]
fn split_and_batched_packets() {
    let wss = WssBroker::start("split");
    let topic = format!("wss/raw/{}", unique_suffix("split"));
    let payload = unique_suffix("batched");
    let output = wss.run_raw(
        "split-batched",
        &["--client-id", "wss-split", "--topic", &topic, "--payload", &payload],
    );
    assert!(
        output.success(),
        "split-batched client failed\n{output}\n--- broker stderr ---\n{}",
        wss.broker.log_tail()
    );
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert!(lines.contains(&"connack 0"), "CONNACK to a CONNECT split across two frames\n{output}");
    assert!(
        lines.contains(&"suback 000100"),
        "SUBACK (packet id 1, QoS 0) to a SUBSCRIBE batched with a PUBLISH\n{output}"
    );
    let expected_publish = format!("publish {topic} {payload}");
    assert!(
        lines.contains(&expected_publish.as_str()),
        "the PUBLISH batched after the SUBSCRIBE must come back\n{output}"
    );
    assert!(lines.contains(&"pingresp"), "PINGRESP to a PINGREQ sharing its frame\n{output}");
    let expected_straddling = format!("publish {topic} {payload}-straddling");
    assert!(
        lines.contains(&expected_straddling.as_str()),
        "the PUBLISH split across the PINGREQ's frame and the next must come back\n{output}"
    );
}

/// A Chromium managed-policy file, removed when the guard is dropped, even on panic.
struct PolicyFile {
    path: PathBuf,
}

impl PolicyFile {
    /// Writes a policy that makes Chromium send a client certificate to `https://localhost:PORT`
    /// without asking, the only host it applies to.
    fn auto_select_certificate(port: u16) -> PolicyFile {
        let dir = Path::new(CHROMIUM_POLICY_DIR);
        if let Err(error) = fs::create_dir_all(dir) {
            panic!("failed to create {CHROMIUM_POLICY_DIR} (the browser test needs root): {error}");
        }
        let path = dir.join(format!("lpiotia-mqtt-test-{}-{port}.json", std::process::id()));
        // The policy value is a list of JSON strings, each a pattern and a certificate filter.
        let rule = format!(r#"{{"pattern":"https://localhost:{port}","filter":{{}}}}"#);
        let policy = format!("{{\"AutoSelectCertificateForUrls\": [{}]}}\n", json_string(&rule));
        if let Err(error) = fs::write(&path, policy) {
            panic!("failed to write {} (the browser test needs root): {error}", path.display());
        }
        PolicyFile { path }
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_file(&self.path) {
            eprintln!("failed to remove the Chromium policy {}: {error}", self.path.display());
        }
    }
}

/// Quotes `text` as a JSON string. `text` must not contain control characters.
fn json_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Creates an NSS database in `home/.pki/nssdb`, where Chromium on Linux looks for it, that
/// trusts the broker's CA and contains the client certificate and key from the PKCS#12 file.
fn make_nss_database(home: &Path, client: &ClientFiles) {
    require_program("certutil", "libnss3-tools");
    require_program("pk12util", "libnss3-tools");
    let nssdb = home.join(".pki").join("nssdb");
    fs::create_dir_all(&nssdb).unwrap();
    let database = format!("sql:{}", nssdb.display());

    let steps: [Vec<String>; 3] = [
        vec!["certutil".into(), "-d".into(), database.clone(), "-N".into(), "--empty-password".into()],
        vec![
            "certutil".into(),
            "-d".into(),
            database.clone(),
            "-A".into(),
            "-n".into(),
            "lpiotia-ca".into(),
            "-t".into(),
            "C,,".into(),
            "-i".into(),
            path_arg(&client.ca),
        ],
        vec![
            "pk12util".into(),
            "-i".into(),
            path_arg(&client.p12),
            "-d".into(),
            database.clone(),
            "-W".into(),
            P12_PASSWORD.into(),
        ],
    ];
    for step in steps {
        let mut command = Command::new(&step[0]);
        command.args(&step[1..]).env("HOME", home);
        let output = process::run(command, None, Duration::from_secs(30));
        assert!(output.success(), "NSS database setup failed\n{output}");
    }

    let mut command = Command::new("certutil");
    command.args(["-d", &database, "-L"]).env("HOME", home);
    let listing = process::run(command, None, Duration::from_secs(30));
    assert!(
        listing.stdout.contains(&format!("CN={}", client.name)),
        "the client certificate is not in the NSS database\n{listing}"
    );
}

#[test]
fn browser_chromium_wss() {
    require_program("chromium", "chromium");
    require_node_package("playwright-core");
    require_node_package("mqtt");
    mosquitto::require_clients();
    let wss = WssBroker::start("browser");

    let home = wss.broker.dir.path().join("browser-home");
    let profile = wss.broker.dir.path().join("chromium-profile");
    fs::create_dir_all(&profile).unwrap();
    make_nss_database(&home, &wss.client);
    let _policy = PolicyFile::auto_select_certificate(wss.ws_port);

    let client_id = "chromium-wss";
    let topic = format!("wss/browser/{}", unique_suffix("chromium"));
    let mut command = Command::new("node");
    command
        .arg(client_script("browser_run.js"))
        .args(["--port", &wss.ws_port.to_string()])
        .args(["--username", ADMIN_USER, "--password", ADMIN_PASSWORD])
        .args(["--client-id", client_id, "--topic", &topic])
        .arg("--user-data-dir")
        .arg(&profile)
        .args(["--timeout", "40"])
        .env("HOME", &home);
    let mut browser = ClientProcess::spawn(command);

    browser.wait_for_line("subscribed", Duration::from_secs(40), &wss.broker);
    let get_line = wss
        .broker
        .wait_for_log_from(0, &["answered HTTP GET", "listener=ws", "path=/ "], Duration::from_secs(5));
    assert!(get_line.contains("status=200"), "the page's HTTPS GET of / must succeed: {get_line}");
    assert_connected_over_ws(&wss.broker, client_id, "3.1.1");

    let payload = unique_suffix("to-browser");
    mosquitto::publish_ok(&wss.broker, Version::V311, &topic, 1, &payload);
    let received = browser.wait_for_line("message ", Duration::from_secs(10), &wss.broker);
    assert_eq!(received, format!("message {topic} {payload}"), "message shown by the page");
    browser.wait_success(Duration::from_secs(10), &wss.broker);
}
