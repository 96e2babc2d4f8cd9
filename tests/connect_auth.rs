//! CONNECT for each protocol version, authentication against the password file, client ids,
//! keep alive, the address allow-list, password file reloads and the `passwd` command.

mod common;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use common::mosquitto::{self, Subscriber, Version};
use common::raw::{property, ConnectOptions, PropertyValue, RawClient, CONNACK, DISCONNECT};
use common::{file_mode, wait_until, write_file, Broker, TestDir, ADMIN_PASSWORD, ADMIN_USER};

/// CONNACK return code 5 of MQTT 3.1 and 3.1.1: not authorized.
const V3_NOT_AUTHORIZED: u8 = 5;
/// MQTT 5.0 reason code 0x86: Bad User Name or Password.
const V5_BAD_USERNAME_OR_PASSWORD: u8 = 0x86;
/// MQTT 5.0 reason code 0x87: Not authorized.
const V5_NOT_AUTHORIZED: u8 = 0x87;
/// MQTT 5.0 reason code 0x8D: Keep Alive timeout.
const V5_KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
/// MQTT 5.0 CONNACK property identifier of Server Keep Alive.
const SERVER_KEEP_ALIVE: u8 = 0x13;

/// Connects with raw bytes and returns the CONNACK code; a refused connection must be
/// closed by the broker afterwards.
fn connack_code(broker: &Broker, level: u8, client_id: &str, credentials: Option<(&str, &str)>) -> u8 {
    let mut options = ConnectOptions::new(level, client_id);
    if let Some((username, password)) = credentials {
        options = options.credentials(username, password);
    }
    let (mut client, connack) = RawClient::connect(broker.addr, &options);
    if connack.code != 0 {
        let closed = client.wait_for_close(Duration::from_secs(5));
        assert!(
            matches!(&closed, Ok(packets) if packets.is_empty()),
            "after CONNACK {:#04x} the broker must close the connection without sending more, got {closed:?}",
            connack.code
        );
    }
    connack.code
}

/// Asserts a WARN line naming `client_id` after `position`, and that `secret` was never logged.
fn assert_refusal_logged(broker: &Broker, position: usize, client_id: &str, secret: &str) {
    broker.wait_for_log_from(position, &["WARN", client_id], Duration::from_secs(5));
    let leaked: Vec<String> = broker.stderr_lines().into_iter().filter(|line| line.contains(secret)).collect();
    assert!(leaked.is_empty(), "the broker logged a password: {leaked:?}");
}

fn pubsub_with_mosquitto(version: Version) {
    let broker = Broker::start("");
    let client_id = format!("sub-{}", version.flag());
    let topic = format!("connect/{}", version.flag());
    let login = mosquitto::admin_login();
    let mut args = vec!["-V", version.flag(), "-i", client_id.as_str(), "-t", topic.as_str(), "-q", "1", "-C", "1", "-W", "10"];
    args.extend(login);
    let subscriber = Subscriber::start(&broker, &args);

    mosquitto::publish_ok(&broker, version, &topic, 1, "hello");

    let (code, messages) = subscriber.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "mosquitto_sub exit code");
    assert_eq!(messages.len(), 1, "messages: {messages:?}");
    assert_eq!(messages[0].topic, topic);
    assert_eq!(messages[0].payload, "hello");

    let line = broker.wait_for_log("client connected", Duration::from_secs(5));
    assert!(line.contains("client_id="), "no client_id field in: {line}");
    broker.wait_for_log_from(0, &["client connected", &client_id], Duration::from_secs(5));
}

#[test]
fn connect_pubsub_v31() {
    pubsub_with_mosquitto(Version::V31);
}

#[test]
fn connect_pubsub_v311() {
    pubsub_with_mosquitto(Version::V311);
}

#[test]
fn connect_pubsub_v5() {
    pubsub_with_mosquitto(Version::V5);
}

#[test]
fn admin_login_all_versions() {
    let broker = Broker::start("");
    for level in [3, 4, 5] {
        let client_id = format!("admin-v{level}");
        assert_eq!(connack_code(&broker, level, &client_id, Some((ADMIN_USER, ADMIN_PASSWORD))), 0, "level {level}");
    }
}

#[test]
fn bad_password_v31() {
    let broker = Broker::start("");
    let position = broker.log_position();
    let code = connack_code(&broker, 3, "badpass-v31", Some((ADMIN_USER, "wrong-secret-31")));
    assert_eq!(code, V3_NOT_AUTHORIZED);
    assert_refusal_logged(&broker, position, "badpass-v31", "wrong-secret-31");
}

#[test]
fn bad_password_v311() {
    let broker = Broker::start("");
    let position = broker.log_position();
    let code = connack_code(&broker, 4, "badpass-v311", Some((ADMIN_USER, "wrong-secret-311")));
    assert_eq!(code, V3_NOT_AUTHORIZED);
    assert_refusal_logged(&broker, position, "badpass-v311", "wrong-secret-311");
}

#[test]
fn bad_password_v5() {
    let broker = Broker::start("");
    let position = broker.log_position();
    let code = connack_code(&broker, 5, "badpass-v5", Some((ADMIN_USER, "wrong-secret-5")));
    assert_eq!(code, V5_BAD_USERNAME_OR_PASSWORD);
    assert_refusal_logged(&broker, position, "badpass-v5", "wrong-secret-5");
}

#[test]
fn unknown_user_refused() {
    let broker = Broker::start("");
    assert_eq!(connack_code(&broker, 3, "nouser-v31", Some(("nobody", ADMIN_PASSWORD))), V3_NOT_AUTHORIZED);
    assert_eq!(connack_code(&broker, 4, "nouser-v311", Some(("nobody", ADMIN_PASSWORD))), V3_NOT_AUTHORIZED);
    assert_eq!(connack_code(&broker, 5, "nouser-v5", Some(("nobody", ADMIN_PASSWORD))), V5_BAD_USERNAME_OR_PASSWORD);
}

#[test]
fn no_credentials_refused() {
    let broker = Broker::start("");
    assert_eq!(connack_code(&broker, 3, "anon-v31", None), V3_NOT_AUTHORIZED);
    assert_eq!(connack_code(&broker, 4, "anon-v311", None), V3_NOT_AUTHORIZED);
    assert_eq!(connack_code(&broker, 5, "anon-v5", None), V5_NOT_AUTHORIZED);
}

#[test]
fn mosquitto_pub_refusal_codes() {
    let broker = Broker::start("");
    // mosquitto_pub 2.0 exits with the CONNACK return code or reason code it received.
    let cases = [
        (Version::V31, Some("wrong"), 5),
        (Version::V311, Some("wrong"), 5),
        (Version::V5, Some("wrong"), 0x86),
        (Version::V31, None, 5),
        (Version::V311, None, 5),
        (Version::V5, None, 0x87),
    ];
    for (version, password, expected) in cases {
        let mut args = vec!["-V", version.flag(), "-t", "refused/topic", "-m", "x"];
        if let Some(password) = password {
            args.extend(["-u", ADMIN_USER, "-P", password]);
        }
        let output = mosquitto::publish(&broker, &args);
        assert_eq!(output.code, Some(expected), "{version:?} with password {password:?}\n{output}");
    }
}

#[test]
fn assigned_client_id_v5() {
    let broker = Broker::start("");
    let mut assigned = Vec::new();
    for _ in 0..2 {
        let (client, connack) = RawClient::connect(broker.addr, &ConnectOptions::admin(5, ""));
        assert_eq!(connack.code, 0, "CONNACK: {connack:?}");
        match connack.property(property::ASSIGNED_CLIENT_IDENTIFIER) {
            Some(PropertyValue::Text(id)) => {
                assert!(!id.is_empty(), "empty Assigned Client Identifier");
                assigned.push(id.clone());
            }
            other => panic!("no Assigned Client Identifier in CONNACK, got {other:?}: {connack:?}"),
        }
        client.disconnect();
    }
    assert_ne!(assigned[0], assigned[1], "two connections got the same assigned client id");
}

#[test]
fn empty_client_id_v311() {
    let broker = Broker::start("");
    // MQTT 3.1.1 section 3.1.3.1: a zero-byte client id needs Clean Session 1, otherwise
    // CONNACK return code 2 (identifier rejected).
    let (client, connack) = RawClient::connect(broker.addr, &ConnectOptions::admin(4, ""));
    assert_eq!(connack.code, 0, "clean session with empty client id");
    client.disconnect();

    let (_client, connack) = RawClient::connect(broker.addr, &ConnectOptions::admin(4, "").clean(false));
    assert_eq!(connack.code, 2, "persistent session with empty client id");
}

#[test]
fn empty_client_id_v5_clean_start_0() {
    let broker = Broker::start("");
    // In MQTT 5.0 an empty client id no longer needs Clean Start 1. A server that accepts an
    // empty client id assigns one and processes the CONNECT as if the client had sent that id
    // (MQTT-3.1.3-6, MQTT-3.1.3-7), so Clean Start 0 starts a new session.
    let (client, connack) = RawClient::connect(broker.addr, &ConnectOptions::admin(5, "").clean(false));
    assert_eq!(connack.code, 0, "empty client id with Clean Start 0 refused: {connack:?}");
    assert!(!connack.session_present, "a new assigned client id cannot have a session: {connack:?}");
    match connack.property(property::ASSIGNED_CLIENT_IDENTIFIER) {
        Some(PropertyValue::Text(id)) => assert!(!id.is_empty(), "empty Assigned Client Identifier"),
        other => panic!("no Assigned Client Identifier in CONNACK, got {other:?}: {connack:?}"),
    }
    client.disconnect();
}

#[test]
fn wrong_protocol_name_refused() {
    let broker = Broker::start("");
    let mut connect = ConnectOptions::admin(4, "wrong-name").encode();
    let name_at = connect
        .windows(6)
        .position(|window| window == b"\x00\x04MQTT")
        .expect("no protocol name MQTT in the encoded CONNECT");
    connect[name_at + 5] = b'X';
    let mut client = RawClient::open(broker.addr, 4);
    client.send(&connect);

    // MQTT-3.1.2-1: a protocol name other than "MQTT" (3.1.1) ends the connection, with or
    // without a refusing CONNACK first. It must never be accepted.
    let closed = client.wait_for_close(Duration::from_secs(5));
    let packets = closed.unwrap_or_else(|packets| panic!("connection with protocol name MQTX still open after 5 s; received {packets:?}"));
    for packet in &packets {
        assert_eq!(packet.kind, CONNACK, "only a CONNACK may come before the close, got {packet:?}");
        let connack = packet.connack(4);
        assert_ne!(connack.code, 0, "CONNECT with protocol name MQTX accepted: {connack:?}");
    }
}

#[test]
fn client_id_with_slash() {
    let broker = Broker::start("");
    let client_id = "site/room-2/sensor-1";
    let mut args = vec!["-V", "mqttv311", "-i", client_id, "-t", "slash/topic", "-C", "1", "-W", "10"];
    args.extend(mosquitto::admin_login());
    let subscriber = Subscriber::start(&broker, &args);

    mosquitto::publish_ok(&broker, Version::V311, "slash/topic", 0, "with-slash");

    let (code, messages) = subscriber.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].payload, "with-slash");
    broker.wait_for_log_from(0, &["client connected", client_id], Duration::from_secs(5));
}

fn keep_alive_zero(level: u8) {
    let broker = Broker::start("");
    let mut client = RawClient::login(broker.addr, &ConnectOptions::admin(level, "idle-forever").keep_alive(0));
    // Keep alive 0 turns the keep alive mechanism off: the broker must not close an idle
    // connection. Three seconds idle exceeds 1.5 times any small keep alive a broker might
    // substitute by mistake.
    thread::sleep(Duration::from_secs(3));
    assert!(client.ping(), "connection with keep alive 0 closed after 3 s idle");
}

#[test]
fn keep_alive_zero_v311() {
    keep_alive_zero(4);
}

#[test]
fn keep_alive_zero_v5() {
    keep_alive_zero(5);
}

#[test]
fn keep_alive_expiry_closes() {
    let broker = Broker::start("");
    let start = Instant::now();
    let mut client = RawClient::login(broker.addr, &ConnectOptions::admin(4, "silent").keep_alive(2));

    let closed = client.wait_for_close(Duration::from_secs(8));
    let elapsed = start.elapsed();

    assert!(matches!(&closed, Ok(packets) if packets.is_empty()), "connection not closed after 8 s: {closed:?}");
    // MQTT 3.1.1 section 3.1.2.10: the server closes after 1.5 times the keep alive (3 s).
    assert!(elapsed >= Duration::from_millis(2900), "closed after {elapsed:?}, before 1.5 x keep alive");
    assert!(elapsed <= Duration::from_millis(4500), "closed after {elapsed:?}, long after 1.5 x keep alive");
}

#[test]
fn server_keep_alive_replaces_zero() {
    let broker = Broker::start("[limits]\nmax_keepalive_secs = 2\n");
    let start = Instant::now();
    let options = ConnectOptions::admin(5, "no-keep-alive").keep_alive(0);
    let (mut client, connack) = RawClient::connect(broker.addr, &options);
    assert_eq!(connack.code, 0, "CONNACK: {connack:?}");
    // limits.max_keepalive_secs also replaces keep alive 0 for MQTT 5.0 clients. CONNACK
    // carries Server Keep Alive 2, which the client must use instead of its own value
    // (MQTT-3.2.2-21), so the broker must enforce it as well.
    assert_eq!(connack.property(SERVER_KEEP_ALIVE), Some(&PropertyValue::Integer(2)), "Server Keep Alive in {connack:?}");

    let closed = client.wait_for_close(Duration::from_secs(8));
    let elapsed = start.elapsed();
    let packets = closed.unwrap_or_else(|packets| {
        panic!("idle connection with Server Keep Alive 2 still open after {elapsed:?}; received {packets:?}")
    });
    assert!(elapsed >= Duration::from_millis(2900), "closed after {elapsed:?}, before 1.5 x Server Keep Alive");
    assert!(elapsed <= Duration::from_millis(4500), "closed after {elapsed:?}, long after 1.5 x Server Keep Alive");
    let disconnect = packets
        .iter()
        .find(|packet| packet.kind == DISCONNECT)
        .unwrap_or_else(|| panic!("closed without DISCONNECT; received {packets:?}"));
    assert_eq!(disconnect.disconnect_reason(), V5_KEEP_ALIVE_TIMEOUT, "DISCONNECT reason code");
}

#[test]
fn address_outside_allow_list() {
    let broker = Broker::start("[listeners.lan]\nallow = [\"10.0.0.0/8\"]\n");
    let mut client = RawClient::open(broker.addr, 4);
    // The broker may close before reading CONNECT, so the write may fail.
    let _ = client.try_send(&ConnectOptions::admin(4, "outsider").encode());

    let closed = client.wait_for_close(Duration::from_secs(5));
    assert!(
        matches!(&closed, Ok(packets) if packets.is_empty()),
        "expected the connection closed without CONNACK, got {closed:?}"
    );
    broker.wait_for_log_from(0, &["WARN", "127.0.0.1"], Duration::from_secs(5));
    assert!(!broker.has_log_from(0, &["client connected"]), "a refused address was logged as connected");
}

fn mosquitto_password_file(hash_args: &[&str], hash_prefix: &str) {
    let dir = TestDir::new();
    let path = dir.passwd_path();
    mosquitto::make_password_file(&path, hash_args, "alice", "alice-secret");
    mosquitto::add_to_password_file(&path, hash_args, "bob", "bob-secret");
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = fs::read_to_string(&path).unwrap();
    for line in text.lines() {
        let hash = line.split_once(':').map(|(_, hash)| hash).unwrap_or("");
        assert!(hash.starts_with(hash_prefix), "mosquitto_passwd {hash_args:?} wrote {line:?}, expected {hash_prefix}");
    }

    let broker = Broker::start_in(dir, "");

    assert_eq!(connack_code(&broker, 4, "alice-1", Some(("alice", "alice-secret"))), 0, "alice");
    assert_eq!(connack_code(&broker, 5, "bob-1", Some(("bob", "bob-secret"))), 0, "bob");
    assert_eq!(connack_code(&broker, 4, "alice-2", Some(("alice", "bob-secret"))), V3_NOT_AUTHORIZED, "alice, wrong password");
    // The file existed, so the broker must not have added the admin user.
    assert_eq!(connack_code(&broker, 4, "admin-1", Some((ADMIN_USER, ADMIN_PASSWORD))), V3_NOT_AUTHORIZED, "admin");
}

#[test]
fn mosquitto_passwd_pbkdf2() {
    mosquitto_password_file(&[], "$7$");
}

#[test]
fn mosquitto_passwd_sha512() {
    mosquitto_password_file(&["-H", "sha512"], "$6$");
}

#[test]
fn sighup_reloads_password_file() {
    let broker = Broker::start("");
    broker.add_user("carol", "carol-secret");

    broker.sighup();

    let accepted = wait_until(Duration::from_secs(10), || {
        connack_code(&broker, 4, "carol-1", Some(("carol", "carol-secret"))) == 0
    });
    assert!(accepted, "user added with `passwd add` still refused 10 s after SIGHUP");
    assert_eq!(connack_code(&broker, 4, "admin-1", Some((ADMIN_USER, ADMIN_PASSWORD))), 0, "admin after reload");
}

#[test]
fn sighup_bad_file_keeps_users() {
    let broker = Broker::start("");
    broker.add_user("carol", "carol-secret");
    broker.sighup();
    let accepted = wait_until(Duration::from_secs(10), || {
        connack_code(&broker, 4, "carol-1", Some(("carol", "carol-secret"))) == 0
    });
    assert!(accepted, "user added with `passwd add` still refused 10 s after SIGHUP");

    write_file(&broker.data_dir().join("passwd"), "this line is not a password entry\nmallory:$9$unknown-hash-format\n");
    let position = broker.log_position();
    broker.sighup();

    // A failed reload is an error the broker catches, so it must log it.
    let logged = wait_until(Duration::from_secs(10), || {
        broker.stderr_lines().iter().skip(position).any(|line| {
            let lower = line.to_lowercase();
            (line.contains("WARN") || line.contains("ERROR")) && lower.contains("passw")
        })
    });
    assert!(logged, "no WARN or ERROR line about the password file after reloading an invalid one");

    assert_eq!(connack_code(&broker, 4, "admin-2", Some((ADMIN_USER, ADMIN_PASSWORD))), 0, "admin after bad reload");
    assert_eq!(connack_code(&broker, 4, "carol-2", Some(("carol", "carol-secret"))), 0, "carol after bad reload");
}

#[test]
fn sighup_missing_file_keeps_users() {
    let broker = Broker::start("");
    fs::remove_file(broker.data_dir().join("passwd")).unwrap();
    let position = broker.log_position();

    broker.sighup();

    broker.wait_for_log_from(position, &["SIGHUP"], Duration::from_secs(5));
    let logged = wait_until(Duration::from_secs(5), || {
        broker.stderr_lines().iter().skip(position).any(|line| line.contains("WARN") || line.contains("ERROR"))
    });
    assert!(logged, "no WARN or ERROR line after reloading a missing password file");
    assert_eq!(connack_code(&broker, 4, "admin-1", Some((ADMIN_USER, ADMIN_PASSWORD))), 0, "admin after failed reload");
}

#[test]
fn passwd_cli_add_list_delete() {
    let dir = TestDir::new();
    let passwd = dir.passwd_path();

    let output = common::passwd_command(&dir, &["add", "alice", "--password-stdin"], Some("alice-secret\n"));
    assert!(output.success(), "passwd add alice\n{output}");
    assert!(passwd.exists(), "passwd add did not create {}", passwd.display());
    assert_eq!(file_mode(&passwd), 0o600, "mode of the new password file");
    let text = fs::read_to_string(&passwd).unwrap();
    assert!(text.lines().any(|line| line.starts_with("alice:")), "no alice entry in:\n{text}");
    assert!(!text.contains("alice-secret"), "password stored in clear text:\n{text}");

    let output = common::passwd_command(&dir, &["add", "bob", "--password-stdin"], Some("bob-secret\n"));
    assert!(output.success(), "passwd add bob\n{output}");

    let output = common::passwd_command(&dir, &["list"], None);
    assert!(output.success(), "passwd list\n{output}");
    let users: Vec<&str> = output.stdout.lines().map(str::trim).collect();
    assert!(users.contains(&"alice"), "alice missing from `passwd list`:\n{output}");
    assert!(users.contains(&"bob"), "bob missing from `passwd list`:\n{output}");

    let output = common::passwd_command(&dir, &["delete", "alice"], None);
    assert!(output.success(), "passwd delete alice\n{output}");
    let output = common::passwd_command(&dir, &["list"], None);
    let users: Vec<&str> = output.stdout.lines().map(str::trim).collect();
    assert!(!users.contains(&"alice"), "alice still listed after delete:\n{output}");
    assert!(users.contains(&"bob"), "bob missing after deleting alice:\n{output}");
    assert_eq!(file_mode(&passwd), 0o600, "mode of the password file after delete");

    // The broker reads what the CLI wrote; the trailing newline on stdin is not part of it.
    let broker = Broker::start_in(dir, "");
    assert_eq!(connack_code(&broker, 4, "bob-1", Some(("bob", "bob-secret"))), 0, "bob");
    assert_eq!(connack_code(&broker, 4, "alice-1", Some(("alice", "alice-secret"))), V3_NOT_AUTHORIZED, "deleted alice");
}

#[test]
fn serve_creates_password_file_0600() {
    let broker = Broker::start("");
    let passwd = broker.data_dir().join("passwd");
    assert!(passwd.exists(), "serve did not create {}", passwd.display());
    assert_eq!(file_mode(&passwd), 0o600, "mode of the password file made by serve");
    let text = fs::read_to_string(&passwd).unwrap();
    assert!(text.lines().any(|line| line.starts_with("admin:")), "no admin entry in:\n{text}");
    assert!(!text.contains(ADMIN_PASSWORD), "password stored in clear text");
    // The password came from LPIOTIA_MQTT_ADMIN_PASSWORD, so nothing secret is printed.
    let stdout = broker.stdout_lines().join("\n");
    assert!(!stdout.contains(ADMIN_PASSWORD), "serve printed the password it was given:\n{stdout}");
}

#[test]
fn connect_timeout_closes() {
    let broker = Broker::start("[limits]\nconnect_timeout_secs = 1\n");
    let start = Instant::now();
    let mut client = RawClient::open(broker.addr, 4);

    let closed = client.wait_for_close(Duration::from_secs(6));
    let elapsed = start.elapsed();

    assert!(matches!(&closed, Ok(packets) if packets.is_empty()), "socket without CONNECT still open: {closed:?}");
    assert!(elapsed >= Duration::from_millis(900), "closed after {elapsed:?}, before the 1 s connect timeout");
    assert!(elapsed <= Duration::from_secs(3), "closed after {elapsed:?}, long after the 1 s connect timeout");
}

#[test]
fn connect_timeout_partial_connect() {
    let broker = Broker::start("[limits]\nconnect_timeout_secs = 1\n");
    let mut client = RawClient::open(broker.addr, 4);
    let connect = ConnectOptions::admin(4, "slow-writer").encode();
    // Only the first bytes of CONNECT, as a client that stalls mid-packet would send.
    client.send(&connect[..5]);

    let closed = client.wait_for_close(Duration::from_secs(6));
    assert!(matches!(&closed, Ok(packets) if packets.is_empty()), "half-sent CONNECT kept open: {closed:?}");
}
