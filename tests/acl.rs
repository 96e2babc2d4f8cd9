//! Topic ACLs (`acl_file`, Mosquitto's format) on the real broker: refused subscriptions
//! and publications with each protocol's codes, messages and retained messages filtered
//! per reader, `%u` patterns, wills, the reload on SIGHUP, and a malformed file.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::raw::{encode_publish, ConnectOptions, RawClient, Will, PUBACK};
use common::{broker_command, write_file, Broker, TestDir};

const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "alice-test-password";

/// How long a test waits to be sure a message does not arrive.
const QUIET: Duration = Duration::from_millis(500);

/// ACL of most tests. alice reads sensors except a private part and writes her command
/// topic. The pattern gives each user a device subtree, and admin may do anything.
const ACL: &str = "\
# Who may touch which topics.
user alice
topic read sensors/#
topic deny sensors/private/#
topic write cmd/alice

user admin
topic readwrite #

pattern readwrite devices/%u/#
";

/// Starts a broker with `acl` as its ACL file and the user alice added.
fn start_with_acl(acl: &str) -> Broker {
    let dir = TestDir::new();
    let acl_path = dir.path().join("acl");
    write_file(&acl_path, acl);
    let broker = Broker::start_in(dir, &format!("acl_file = {:?}\n", acl_path.display().to_string()));
    let from = broker.log_position();
    broker.add_user(ALICE, ALICE_PASSWORD);
    broker.sighup();
    broker.wait_for_log_from(from, &["password file reloaded"], Duration::from_secs(10));
    broker
}

fn acl_path(broker: &Broker) -> std::path::PathBuf {
    broker.dir.path().join("acl")
}

fn alice(broker: &Broker, level: u8, client_id: &str) -> RawClient {
    RawClient::login(broker.addr, &ConnectOptions::new(level, client_id).credentials(ALICE, ALICE_PASSWORD))
}

/// Sends a QoS 1 PUBLISH and returns the PUBACK reason code (0 when the PUBACK has none).
/// Other packets read meanwhile are dropped, so `client` should not be a subscriber.
fn publish_qos1_reason(client: &mut RawClient, level: u8, topic: &str, packet_id: u16) -> u8 {
    client.send(&encode_publish(level, topic, 1, false, packet_id, b"x"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let packet = client.read_packet(remaining).unwrap_or_else(|error| panic!("no PUBACK for {topic}: {error:?}"));
        if packet.kind == PUBACK {
            assert_eq!(packet.packet_id(), packet_id, "PUBACK for the wrong packet id");
            return packet.body.get(2).copied().unwrap_or(0);
        }
    }
}

fn topics(client: &mut RawClient) -> Vec<String> {
    client.drain_publishes(QUIET).into_iter().map(|publish| publish.topic).collect()
}

// A filter the ACL does not allow to read gets 0x80 in a 3.1.1 SUBACK and 0x87 (Not
// authorized) in a 5.0 SUBACK; allowed filters in the same SUBSCRIBE are granted.
#[test]
fn subscribe_outside_acl_refused() {
    let broker = start_with_acl(ACL);
    let mut v311 = alice(&broker, 4, "acl-sub-4");
    assert_eq!(v311.subscribe(&[("sensors/#", 1), ("secret/#", 1), ("#", 0)]), vec![1, 0x80, 0x80]);
    let mut v5 = alice(&broker, 5, "acl-sub-5");
    assert_eq!(v5.subscribe(&[("sensors/+/temp", 0), ("secret/#", 1)]), vec![0, 0x87]);
    assert!(broker.has_log_from(0, &["subscription refused", "secret/#"]), "{}", broker.log_tail());
}

// A PUBLISH the ACL does not allow is dropped: 3.1.1 gets its normal PUBACK (it has no
// refusal code), 5.0 gets PUBACK 0x87. An allowed topic still reaches subscribers.
#[test]
fn publish_outside_acl_dropped() {
    let broker = start_with_acl(ACL);
    let mut watcher = RawClient::login_admin(broker.addr, 4, "acl-watch");
    watcher.subscribe_ok(&[("#", 0)]);

    let mut v311 = alice(&broker, 4, "acl-pub-4");
    assert_eq!(publish_qos1_reason(&mut v311, 4, "secret/x", 1), 0);
    let mut v5 = alice(&broker, 5, "acl-pub-5");
    assert_eq!(publish_qos1_reason(&mut v5, 5, "sensors/fake", 1), 0x87);
    assert_eq!(publish_qos1_reason(&mut v5, 5, "cmd/alice", 2), 0);
    assert_eq!(topics(&mut watcher), vec!["cmd/alice".to_string()]);
}

// Read access is checked for every message sent, retained ones included: a subscription
// to sensors/# never carries sensors/private/... to alice.
#[test]
fn denied_topics_filtered_on_delivery() {
    let broker = start_with_acl(ACL);
    let mut admin = RawClient::login_admin(broker.addr, 4, "acl-admin");
    admin.publish("sensors/private/retained", 1, true, b"hidden");
    admin.publish("sensors/open/retained", 1, true, b"shown");

    let mut reader = alice(&broker, 4, "acl-reader");
    reader.subscribe_ok(&[("sensors/#", 1)]);
    assert_eq!(topics(&mut reader), vec!["sensors/open/retained".to_string()]);

    admin.publish("sensors/private/live", 1, false, b"hidden");
    admin.publish("sensors/open/live", 1, false, b"shown");
    assert_eq!(topics(&mut reader), vec!["sensors/open/live".to_string()]);
}

// `pattern ... devices/%u/#` gives each user their own subtree and no other user's.
#[test]
fn pattern_fills_username_level() {
    let broker = start_with_acl(ACL);
    let mut reader = alice(&broker, 5, "acl-pattern-reader");
    assert_eq!(reader.subscribe(&[("devices/alice/#", 1), ("devices/bob/#", 1), ("devices/+/x", 1)]), vec![1, 0x87, 0x87]);
    let mut writer = alice(&broker, 5, "acl-pattern-writer");
    assert_eq!(publish_qos1_reason(&mut writer, 5, "devices/alice/led", 1), 0);
    assert_eq!(publish_qos1_reason(&mut writer, 5, "devices/bob/led", 2), 0x87);
    assert_eq!(topics(&mut reader), vec!["devices/alice/led".to_string()]);
}

// A will on a topic the client may not write is refused at CONNECT: 5.0 gets 0x87, 3.1.1
// return code 5 (not authorized).
#[test]
fn will_outside_acl_refused() {
    let broker = start_with_acl(ACL);
    for (level, code) in [(5, 0x87), (4, 0x05)] {
        let options = ConnectOptions::new(level, &format!("acl-will-{level}"))
            .credentials(ALICE, ALICE_PASSWORD)
            .will(Will::new("secret/will", "gone"));
        let (_, connack) = RawClient::connect(broker.addr, &options);
        assert_eq!(connack.code, code, "level {level}: {connack:?}");
    }
    let allowed = ConnectOptions::new(4, "acl-will-ok").credentials(ALICE, ALICE_PASSWORD).will(Will::new("cmd/alice", "gone"));
    assert_eq!(RawClient::connect(broker.addr, &allowed).1.code, 0);
}

// An ACL file without rules denies everything, even to admin.
#[test]
fn empty_acl_denies_everything() {
    let broker = start_with_acl("# nothing allowed yet\n");
    let mut admin = RawClient::login_admin(broker.addr, 5, "acl-empty");
    assert_eq!(admin.subscribe(&[("#", 0), ("a/b", 1)]), vec![0x87, 0x87]);
    assert_eq!(publish_qos1_reason(&mut admin, 5, "a/b", 1), 0x87);
}

// SIGHUP reloads the ACL file and removes the subscriptions it no longer allows; the
// client stays connected and its other subscriptions keep working.
#[test]
fn reload_rechecks_subscriptions() {
    let broker = start_with_acl(ACL);
    let mut reader = alice(&broker, 4, "acl-reload");
    reader.subscribe_ok(&[("sensors/#", 0), ("devices/alice/#", 0)]);
    let mut admin = RawClient::login_admin(broker.addr, 4, "acl-reload-admin");
    admin.publish("sensors/a", 1, false, b"before");
    assert_eq!(topics(&mut reader), vec!["sensors/a".to_string()]);

    write_file(&acl_path(&broker), &ACL.replace("topic read sensors/#\n", ""));
    let from = broker.log_position();
    broker.sighup();
    broker.wait_for_log_from(from, &["ACL file reloaded"], Duration::from_secs(10));
    assert!(broker.has_log_from(from, &["subscription removed", "sensors/#"]), "{}", broker.log_tail());

    admin.publish("sensors/a", 1, false, b"after");
    admin.publish("devices/alice/x", 1, false, b"still");
    assert_eq!(topics(&mut reader), vec!["devices/alice/x".to_string()]);
}

// A reload that meets a malformed file keeps the rules in force and logs the reason.
#[test]
fn reload_of_malformed_file_keeps_rules() {
    let broker = start_with_acl(ACL);
    write_file(&acl_path(&broker), "user alice\ntopic red sensors/#\n");
    let from = broker.log_position();
    broker.sighup();
    let line = broker.wait_for_log_from(from, &["ACL file not reloaded"], Duration::from_secs(10));
    assert!(line.contains("line 2"), "{line}");
    let mut client = alice(&broker, 5, "acl-kept");
    assert_eq!(client.subscribe(&[("sensors/#", 0), ("secret/#", 0)]), vec![0, 0x87]);
}

/// Runs `lpiotia-mqtt ARGS` in `dir` and returns (exit success, stderr), killing it after
/// 20 s if it has not exited by then.
fn run_to_exit(dir: &TestDir, args: &[&str]) -> (bool, String) {
    let mut command = broker_command(dir);
    command.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("failed to start lpiotia-mqtt");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait failed").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lpiotia-mqtt {args:?} still runs after 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("failed to collect output");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn write_config_with_acl(dir: &TestDir, acl_path: &Path) {
    dir.write_config(&format!("acl_file = {:?}\n", acl_path.display().to_string()));
}

// A malformed ACL file stops the broker at start and check-config, naming the line, the
// text and the fix; a missing file names its path.
#[test]
fn malformed_acl_file_refused_at_start() {
    let dir = TestDir::new();
    let acl_path = dir.path().join("acl");
    write_file(&acl_path, "user alice\ntopic read sensors/#\ntopic read a/#/b\n");
    write_config_with_acl(&dir, &acl_path);
    let config = dir.config_path().display().to_string();
    for args in [vec!["serve", "--config", &config], vec!["check-config", "--config", &config]] {
        let (success, stderr) = run_to_exit(&dir, &args);
        assert!(!success, "{args:?} accepted a malformed ACL file:\n{stderr}");
        assert!(stderr.contains("line 3"), "{args:?}:\n{stderr}");
        assert!(stderr.contains("a/#/b"), "{args:?}:\n{stderr}");
    }
    // The ACL file is read before anything is created, the first user included.
    assert!(!dir.passwd_path().exists(), "serve created {} before refusing the ACL file", dir.passwd_path().display());

    write_file(&acl_path, "# every rule removed\n");
    let (success, stderr) = run_to_exit(&dir, &["check-config", "--config", &config]);
    assert!(success, "{stderr}");
    assert!(stderr.contains("has no rules"), "no warning for an ACL file without rules:\n{stderr}");

    std::fs::remove_file(&acl_path).unwrap();
    let (success, stderr) = run_to_exit(&dir, &["check-config", "--config", &config]);
    assert!(!success, "check-config accepted a missing ACL file:\n{stderr}");
    assert!(stderr.contains(&acl_path.display().to_string()), "{stderr}");
}
