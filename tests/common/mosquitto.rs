//! Mosquitto's command-line clients (Debian package `mosquitto-clients`) and `mosquitto_passwd`
//! (Debian package `mosquitto`), run as processes with time limits.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{self, require_program, Output};
use super::{Broker, LineLog, ADMIN_PASSWORD, ADMIN_USER};

/// Time limit for one `mosquitto_pub` run.
const PUB_TIMEOUT: Duration = Duration::from_secs(15);

/// Time allowed for `mosquitto_sub` to connect and receive its SUBACK.
const SUBSCRIBED_TIMEOUT: Duration = Duration::from_secs(10);

/// Output format of received messages: a marker, QoS, retain flag, topic and payload.
const MESSAGE_FORMAT: &str = "MSG|%q|%r|%t|%p";

/// MQTT protocol version, as `mosquitto_pub -V` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V31,
    V311,
    V5,
}

impl Version {
    pub const ALL: [Version; 3] = [Version::V31, Version::V311, Version::V5];

    pub fn flag(self) -> &'static str {
        match self {
            Version::V31 => "mqttv31",
            Version::V311 => "mqttv311",
            Version::V5 => "mqttv5",
        }
    }

    /// Protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Version::V31 => 3,
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

/// One message printed by `mosquitto_sub`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    pub payload: String,
}

fn parse_message(line: &str) -> Option<Message> {
    let mut fields = line.strip_prefix("MSG|")?.splitn(4, '|');
    let qos = fields.next()?.parse().ok()?;
    let retain = fields.next()? == "1";
    let topic = fields.next()?.to_string();
    let payload = fields.next()?.to_string();
    Some(Message { qos, retain, topic, payload })
}

pub fn require_clients() {
    require_program("mosquitto_pub", "mosquitto-clients");
    require_program("mosquitto_sub", "mosquitto-clients");
}

/// Arguments that log in as the admin user.
pub fn admin_login() -> [&'static str; 4] {
    ["-u", ADMIN_USER, "-P", ADMIN_PASSWORD]
}

/// Runs `mosquitto_pub -h 127.0.0.1 -p PORT ARGS` and returns its output. The exit code of
/// a refused connection is the CONNACK return code (5) or reason code (for example 134).
pub fn publish(broker: &Broker, args: &[&str]) -> Output {
    require_clients();
    let port = broker.port().to_string();
    let mut command = Command::new("mosquitto_pub");
    command.args(["-h", "127.0.0.1", "-p", port.as_str()]).args(args);
    process::run(command, None, PUB_TIMEOUT)
}

/// Publishes `payload` to `topic` as admin and asserts success.
pub fn publish_ok(broker: &Broker, version: Version, topic: &str, qos: u8, payload: &str) {
    let qos = qos.to_string();
    let mut args = vec!["-V", version.flag(), "-t", topic, "-q", qos.as_str(), "-m", payload];
    args.extend(admin_login());
    let output = publish(broker, &args);
    assert!(output.success(), "mosquitto_pub failed\n{output}\n--- broker stderr ---\n{}", broker.log_tail());
}

/// A running `mosquitto_sub` whose output is collected in the background.
pub struct Subscriber {
    child: Child,
    command: String,
    stdout: LineLog,
    stderr: LineLog,
}

impl Subscriber {
    /// Starts `mosquitto_sub -d -F FORMAT -h 127.0.0.1 -p PORT ARGS` and waits until the
    /// broker has acknowledged the subscription, so that publishing may start.
    pub fn start(broker: &Broker, args: &[&str]) -> Subscriber {
        let mut subscriber = Subscriber::spawn(broker, args);
        subscriber.wait_for_suback(broker);
        subscriber
    }

    /// Starts `mosquitto_sub` like [`Subscriber::start`] without waiting for the SUBACK, for
    /// a resumed session whose queued messages may arrive, and end the client, before it.
    pub fn spawn(broker: &Broker, args: &[&str]) -> Subscriber {
        require_clients();
        require_program("stdbuf", "coreutils");
        let port = broker.port().to_string();
        // mosquitto_sub writes through C stdio, which buffers output to a pipe in blocks.
        // `stdbuf -oL` makes it flush each line, so the SUBACK line shows up when it happens.
        let mut command = Command::new("stdbuf");
        command
            .args(["-oL", "-eL", "mosquitto_sub"])
            .args(["-d", "-F", MESSAGE_FORMAT, "-h", "127.0.0.1", "-p", port.as_str()])
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
        Subscriber { child, command: description, stdout, stderr }
    }

    fn wait_for_suback(&mut self, broker: &Broker) {
        let deadline = Instant::now() + SUBSCRIBED_TIMEOUT;
        // `mosquitto_sub -d` prints `Subscribed (mid: N): QOS` once the SUBACK arrives.
        while self.stdout.find_from(0, &["Subscribed (mid"]).is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.stdout.wait_closed(Duration::from_secs(2));
                panic!(
                    "mosquitto_sub exited with {status} before its subscription was acknowledged\n{}\n--- broker stderr ---\n{}",
                    self.describe(),
                    broker.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "mosquitto_sub got no SUBACK within {SUBSCRIBED_TIMEOUT:?}\n{}\n--- broker stderr ---\n{}",
                    self.describe(),
                    broker.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Messages received so far.
    pub fn messages(&self) -> Vec<Message> {
        self.stdout.lines().iter().filter_map(|line| parse_message(line)).collect()
    }

    /// Waits until at least `count` messages have arrived; returns all messages so far, or
    /// panics with the client's output after `timeout`.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            if Instant::now() > deadline {
                panic!(
                    "mosquitto_sub received {} of {count} messages within {timeout:?}\n{}",
                    messages.len(),
                    self.describe()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit (after `-C N` or `-W SECS`) and returns its exit code
    /// and messages; kills it and panics after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> (Option<i32>, Vec<Message>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait failed") {
                self.stdout.wait_closed(Duration::from_secs(2));
                return (status.code(), self.messages());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("mosquitto_sub did not exit within {timeout:?}; killed it\n{}", self.describe());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns the command line and everything the client printed.
    pub fn describe(&self) -> String {
        format!(
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.stdout.text(),
            self.stderr.text()
        )
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a Mosquitto password file at `path` with `mosquitto_passwd -c -b`, passing
/// `hash_args` (for example `["-H", "sha512"]`) before the file name.
pub fn make_password_file(path: &Path, hash_args: &[&str], user: &str, password: &str) {
    require_program("mosquitto_passwd", "mosquitto");
    let mut command = Command::new("mosquitto_passwd");
    command.args(hash_args).arg("-c").arg("-b").arg(path).arg(user).arg(password);
    let output = process::run(command, None, Duration::from_secs(30));
    assert!(output.success(), "mosquitto_passwd failed\n{output}");
}

/// Appends `user` to an existing Mosquitto password file with `mosquitto_passwd -b`.
pub fn add_to_password_file(path: &Path, hash_args: &[&str], user: &str, password: &str) {
    require_program("mosquitto_passwd", "mosquitto");
    let mut command = Command::new("mosquitto_passwd");
    command.args(hash_args).arg("-b").arg(path).arg(user).arg(password);
    let output = process::run(command, None, Duration::from_secs(30));
    assert!(output.success(), "mosquitto_passwd failed\n{output}");
}
