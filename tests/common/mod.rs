//! Harness for the end-to-end tests: starts the real `lpiotia-mqtt` binary on port 0 in a
//! temporary directory, collects its log, and drives it with Mosquitto's command-line clients,
//! rumqttc and raw MQTT bytes.
//!
//! Every wait is bounded. A test that fails while a [`Broker`] is alive prints the broker's
//! stderr when the broker is dropped, so the failure message of `cargo test` shows the log.

#![allow(dead_code)]

pub mod mosquitto;
pub mod process;
pub mod raw;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Path of the broker binary that Cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_lpiotia-mqtt");

/// The user that `serve` creates when the password file does not exist yet.
pub const ADMIN_USER: &str = "admin";

/// Password given to `serve` through `LPIOTIA_MQTT_ADMIN_PASSWORD`.
pub const ADMIN_PASSWORD: &str = "admin-test-password";

/// Time allowed between spawning the broker and its `listener ready` log line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Time allowed for a clean exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Number of log lines printed when a test fails.
const LOG_TAIL_LINES: usize = 200;

/// Configuration every test broker starts from. `bind` uses port 0 so that tests run in
/// parallel, each with its own broker.
const BASE_CONFIG: &str = r#"
[limits]
connect_timeout_secs = 10
max_inflight_messages = 20
max_queued_messages = 100000
max_queued_messages_clean = 1000
max_queued_bytes = "16MiB"
global_queue_memory = "256MiB"

[listeners.lan]
kind = "tcp"
bind = "127.0.0.1:0"
allow = ["127.0.0.0/8", "::1/128"]
allow_anonymous = false

# The TLS and WebSocket listeners of the defaults, moved to free loopback ports so that
# tests can run in parallel.
[listeners.tls]
bind = "127.0.0.1:0"

[listeners.ws]
bind = "127.0.0.1:0"
"#;

/// A temporary directory holding `config.toml` and the broker's data directory.
///
/// Tests that need files in the data directory before the broker starts (a password file
/// made by `mosquitto_passwd`, for example) create a `TestDir`, fill it, and pass it to
/// [`Broker::start_in`].
pub struct TestDir {
    dir: TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("lpiotia-mqtt-test-")
            .tempdir()
            .expect("failed to create a temporary directory");
        fs::create_dir(dir.path().join("data")).expect("failed to create the data directory");
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn passwd_path(&self) -> PathBuf {
        self.data_dir().join("passwd")
    }

    /// Writes `config.toml`: the base configuration, `data_dir`, and `config_extra` merged
    /// over them table by table, so that `config_extra` can replace single keys.
    pub fn write_config(&self, config_extra: &str) {
        let mut config: toml::Table = BASE_CONFIG.parse().expect("base configuration is invalid TOML");
        config.insert(
            "data_dir".to_string(),
            toml::Value::String(self.data_dir().display().to_string()),
        );
        let extra: toml::Table = config_extra
            .parse()
            .unwrap_or_else(|error| panic!("config_extra is invalid TOML: {error}\n{config_extra}"));
        merge_tables(&mut config, extra);

        let text = toml::to_string(&config).expect("failed to serialize the test configuration");
        fs::write(self.config_path(), text).expect("failed to write config.toml");
    }
}

/// Merges `overlay` into `base`: tables merge recursively, any other value replaces the old one.
fn merge_tables(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => {
                merge_tables(base_table, overlay_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Lines read from a child's pipe by a background thread, so that the pipe never fills.
#[derive(Clone, Default)]
pub struct LineLog {
    lines: Arc<Mutex<Vec<String>>>,
    /// Set by the reader thread when the pipe reaches end of file.
    closed: Arc<AtomicBool>,
}

impl LineLog {
    /// Starts a thread that appends every line of `pipe` until it closes.
    pub fn capture(pipe: impl Read + Send + 'static) -> LineLog {
        let log = LineLog::default();
        let lines = Arc::clone(&log.lines);
        let closed = Arc::clone(&log.closed);
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                match reader.read_until(b'\n', &mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buffer).trim_end_matches(['\r', '\n']).to_string();
                        lines.lock().unwrap().push(line);
                    }
                }
            }
            closed.store(true, Ordering::SeqCst);
        });
        log
    }

    /// Waits until the pipe has closed, so that every line is stored; returns whether it did.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.closed.load(Ordering::SeqCst))
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Returns the last `count` lines, joined.
    pub fn tail(&self, count: usize) -> String {
        let lines = self.lines.lock().unwrap();
        let start = lines.len().saturating_sub(count);
        lines[start..].join("\n")
    }

    /// Returns the first line at index `from` or later that contains every one of `needles`.
    pub fn find_from(&self, from: usize, needles: &[&str]) -> Option<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .skip(from)
            .find(|line| needles.iter().all(|needle| line.contains(needle)))
            .cloned()
    }
}

/// A running broker started by a test. Dropping it kills the process.
pub struct Broker {
    child: Child,
    /// Address of the `lan` listener, read from the `listener ready` log line.
    pub addr: SocketAddr,
    pub dir: TestDir,
    stdout: LineLog,
    stderr: LineLog,
    exit_status: Option<ExitStatus>,
}

impl Broker {
    /// Starts a broker with the base configuration and `config_extra` merged over it.
    pub fn start(config_extra: &str) -> Broker {
        Broker::start_in(TestDir::new(), config_extra)
    }

    /// Starts a broker in `dir`, keeping any files the test already put there.
    pub fn start_in(dir: TestDir, config_extra: &str) -> Broker {
        dir.write_config(config_extra);
        let mut command = broker_command(&dir);
        command
            .arg("serve")
            .arg("--config")
            .arg(dir.config_path())
            .arg("--log-level")
            .arg("info")
            .env("LPIOTIA_MQTT_ADMIN_PASSWORD", ADMIN_PASSWORD);
        Broker::spawn(command, dir, "lan")
    }

    /// Spawns `command` (a `serve` command) and waits until `listener` logs `listener ready`.
    pub fn spawn(mut command: Command, dir: TestDir, listener: &str) -> Broker {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {BIN}: {error}"));
        let stdout = LineLog::capture(child.stdout.take().unwrap());
        let stderr = LineLog::capture(child.stderr.take().unwrap());

        let mut broker = Broker {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            dir,
            stdout,
            stderr,
            exit_status: None,
        };
        broker.addr = broker.wait_for_listener(listener);
        broker
    }

    fn wait_for_listener(&mut self, listener: &str) -> SocketAddr {
        let listener_field = format!("listener={listener}");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(line) = self.stderr.find_from(0, &["listener ready", &listener_field]) {
                return parse_address_field(&line)
                    .unwrap_or_else(|| panic!("no address=IP:PORT field in the log line: {line}"));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit_status = Some(status);
                panic!(
                    "broker exited with {status} before listener {listener} was ready\n--- stderr ---\n{}\n--- stdout ---\n{}",
                    self.stderr.tail(LOG_TAIL_LINES),
                    self.stdout.tail(LOG_TAIL_LINES)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {READY_TIMEOUT:?} waiting for `listener ready listener={listener}`\n--- stderr ---\n{}",
                    self.stderr.tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.data_dir()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.config_path()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lines()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lines()
    }

    /// Returns the number of stderr lines so far, to search only lines logged after some action.
    pub fn log_position(&self) -> usize {
        self.stderr.len()
    }

    /// Returns the last lines of stderr, for failure messages.
    pub fn log_tail(&self) -> String {
        self.stderr.tail(LOG_TAIL_LINES)
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_log_from(0, &[needle], timeout)
    }

    /// Waits for a stderr line, at index `from` or later, containing every one of `needles`.
    pub fn wait_for_log_from(&self, from: usize, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.stderr.find_from(from, needles) {
                return line;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for a broker log line containing {needles:?}\n--- broker stderr ---\n{}",
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns whether a stderr line at index `from` or later contains every one of `needles`.
    pub fn has_log_from(&self, from: usize, needles: &[&str]) -> bool {
        self.stderr.find_from(from, needles).is_some()
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("PID out of range");
        // SAFETY: kill(2) has no memory effects; the PID is our own child, not yet reaped.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed: {}", std::io::Error::last_os_error());
    }

    /// Sends SIGHUP, which makes the broker reload the password file.
    pub fn sighup(&self) {
        self.signal(libc::SIGHUP);
    }

    /// Sends SIGTERM and asserts a clean exit with status 0 within [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_for_exit(STOP_TIMEOUT);
        assert_eq!(
            status.code(),
            Some(0),
            "broker exited with {status} after SIGTERM, expected 0\n--- broker stderr ---\n{}",
            self.log_tail()
        );
    }

    /// Waits for the process to exit; kills it and panics after `timeout`.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on the broker failed") {
                self.exit_status = Some(status);
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "broker did not exit within {timeout:?}; killed it\n--- broker stderr ---\n{}",
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size of the broker process in KiB, from `/proc/PID/status`.
    pub fn rss_kb(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = fs::read_to_string(&path).unwrap_or_else(|error| panic!("failed to read {path}: {error}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS line in {path}"))
    }

    /// Runs `lpiotia-mqtt passwd ...` against this broker's configuration.
    pub fn passwd(&self, args: &[&str], stdin: Option<&str>) -> process::Output {
        passwd_command(&self.dir, args, stdin)
    }

    /// Adds `user` to the password file with the CLI and asserts success.
    pub fn add_user(&self, user: &str, password: &str) {
        let output = self.passwd(&["add", user, "--password-stdin"], Some(password));
        assert!(output.success(), "passwd add {user} failed\n{output}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.exit_status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            // The test harness shows this output beside the panic message.
            eprintln!(
                "--- broker stderr (last {LOG_TAIL_LINES} lines) ---\n{}\n--- broker stdout ---\n{}",
                self.stderr.tail(LOG_TAIL_LINES),
                self.stdout.tail(LOG_TAIL_LINES)
            );
        }
    }
}

/// Builds a command for the broker binary that runs in `dir` with no inherited `LPIOTIA_MQTT`
/// variables and no `RUST_LOG`, so the environment of the test run cannot change the setup.
pub fn broker_command(dir: &TestDir) -> Command {
    let mut command = Command::new(BIN);
    command.current_dir(dir.path());
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("LPIOTIA_MQTT") || key_text == "RUST_LOG" {
            command.env_remove(&key);
        }
    }
    command
}

/// Runs `lpiotia-mqtt passwd ARGS --config DIR/config.toml`, feeding `stdin` if given.
pub fn passwd_command(dir: &TestDir, args: &[&str], stdin: Option<&str>) -> process::Output {
    if !dir.config_path().exists() {
        dir.write_config("");
    }
    let mut command = broker_command(dir);
    command.arg("passwd").args(args).arg("--config").arg(dir.config_path());
    process::run(command, stdin, Duration::from_secs(30))
}

/// Extracts `IP:PORT` from an `address=IP:PORT` log field, with or without quotes.
pub fn parse_address_field(line: &str) -> Option<SocketAddr> {
    let start = line.find("address=")? + "address=".len();
    let value: String = line[start..].chars().take_while(|c| !c.is_whitespace()).collect();
    value.trim_matches('"').parse().ok()
}

/// Polls `condition` every 50 ms until it is true or `timeout` passes, and returns whether it became true.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `text` to `path`, creating parent directories.
pub fn write_file(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    let mut file = fs::File::create(path).unwrap_or_else(|error| panic!("failed to create {}: {error}", path.display()));
    file.write_all(text.as_bytes()).unwrap();
}

/// Permission bits (`0o777` mask) of `path`.
pub fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let metadata = fs::metadata(path).unwrap_or_else(|error| panic!("failed to stat {}: {error}", path.display()));
    metadata.permissions().mode() & 0o777
}
