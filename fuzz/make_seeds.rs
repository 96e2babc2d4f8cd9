//! Writes the seed corpus of the fuzz targets into `fuzz/seeds/TARGET/`.
//!
//! The connection seeds are built with the packet encoder of the conformance tests, so they
//! follow the same layouts. The first byte of each selects the CONNECT that the `connection`
//! target sends before the rest (see that target). Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds`.
//! Files are overwritten, and files that this program did not write are left alone.

use std::fs;
use std::path::Path;

#[allow(dead_code)]
#[path = "../tests/conformance_support/encode.rs"]
mod encode;

use encode::{ack, first, options, packet, prop, publish, subscribe, unsubscribe, Body, Connect, Props};

/// Credentials of the one user of the `connection` target's password file.
const USERNAME: &str = "m6";
const PASSWORD: &[u8] = b"pw6";

/// First byte of a connection seed: which CONNECT the target sends before the rest.
const RAW: u8 = 0;
const AFTER_V311: u8 = 1;
const AFTER_V5: u8 = 2;
const AFTER_V31: u8 = 3;

fn main() {
    let seeds = Path::new("fuzz/seeds");
    assert!(seeds.is_dir(), "run from the repository root: {} not found", seeds.display());

    let mut written = 0;
    for (name, bytes) in connection_seeds() {
        write(&seeds.join("connection"), &name, &bytes);
        written += 1;
    }
    for (name, text) in password_file_seeds() {
        write(&seeds.join("password_file"), &name, text.as_bytes());
        written += 1;
    }
    for (name, text) in config_seeds() {
        write(&seeds.join("config"), &name, text.as_bytes());
        written += 1;
    }
    println!("wrote {written} seed files under {}", seeds.display());
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap_or_else(|error| panic!("failed to create {}: {error}", dir.display()));
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap_or_else(|error| panic!("failed to write {}: {error}", path.display()));
}

/// Returns `mode` followed by the packets.
fn seed(mode: u8, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = vec![mode];
    for packet in packets {
        bytes.extend_from_slice(packet);
    }
    bytes
}

fn connection_seeds() -> Vec<(String, Vec<u8>)> {
    let none = Props::new();
    let mut seeds = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| seeds.push((format!("{name}.bin"), bytes));

    // A first packet of every kind the broker must tell apart, with nothing after it.
    let logged_in = Connect::v311("seed-login").username(USERNAME).password(PASSWORD);
    add("raw-connect-v311", seed(RAW, &[Connect::v311("seed-311").encode()]));
    add("raw-connect-v311-login", seed(RAW, &[logged_in.encode()]));
    add("raw-connect-v311-bad-password", seed(RAW, &[Connect::v311("seed-bad").username(USERNAME).password(b"wrong").encode()]));
    add("raw-connect-v311-persistent", seed(RAW, &[Connect::v311("seed-persist").clean(false).encode()]));
    add("raw-connect-v311-empty-id", seed(RAW, &[Connect::v311("").encode()]));
    add(
        "raw-connect-v311-will",
        seed(RAW, &[Connect::v311("seed-will").will("seed/will", b"gone", 1, true).encode(), vec![first::PINGREQ, 0x00]]),
    );
    let mut mqisdp = Connect::v311("seed-31");
    mqisdp.protocol_name = b"MQIsdp".to_vec();
    mqisdp.level = 3;
    add("raw-connect-v31", seed(RAW, &[mqisdp.encode()]));
    let mut level_six = Connect::v311("seed-level-6");
    level_six.level = 6;
    add("raw-connect-level-6", seed(RAW, &[level_six.encode()]));
    let mut wrong_name = Connect::v311("seed-mqtx");
    wrong_name.protocol_name = b"MQTX".to_vec();
    add("raw-connect-wrong-name", seed(RAW, &[wrong_name.encode()]));
    add("raw-connect-reserved-flag", seed(RAW, &[Connect::v311("seed-flag").flags(0x03).encode()]));
    let v5_props = Props::new()
        .four(prop::SESSION_EXPIRY_INTERVAL, 30)
        .two(prop::RECEIVE_MAXIMUM, 4)
        .four(prop::MAXIMUM_PACKET_SIZE, 1024)
        .two(prop::TOPIC_ALIAS_MAXIMUM, 2)
        .byte(prop::REQUEST_PROBLEM_INFORMATION, 1)
        .byte(prop::REQUEST_RESPONSE_INFORMATION, 1)
        .user("k", "v");
    let will_props = Props::new()
        .four(prop::WILL_DELAY_INTERVAL, 5)
        .byte(prop::PAYLOAD_FORMAT_INDICATOR, 1)
        .str(prop::CONTENT_TYPE, "text/plain")
        .str(prop::RESPONSE_TOPIC, "seed/reply")
        .string(prop::CORRELATION_DATA, b"\x01\x02");
    add(
        "raw-connect-v5-properties",
        seed(RAW, &[Connect::v5("seed-5").props(v5_props).will("seed/will5", b"w", 2, false).will_props(will_props).encode()]),
    );
    add("raw-connect-v5-empty-id", seed(RAW, &[Connect::v5("").keep_alive(0).encode()]));
    add(
        "raw-connect-v5-auth-method",
        seed(RAW, &[Connect::v5("seed-auth").props(Props::new().str(prop::AUTHENTICATION_METHOD, "SCRAM-SHA-1")).encode()]),
    );
    add(
        "raw-connect-truncated",
        seed(RAW, &[Connect::v311("seed-truncated").encode()[..9].to_vec()]),
    );
    add("raw-publish-first", seed(RAW, &[publish(4, b"a", 0, false, 0, &none, b"x")]));
    add("raw-remaining-length-5-bytes", seed(RAW, &[vec![first::PUBLISH, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]]));
    add("raw-connect-huge-length", seed(RAW, &[vec![first::CONNECT, 0xFF, 0xFF, 0xFF, 0x7F]]));
    add(
        "raw-connect-then-subscribe",
        seed(RAW, &[logged_in.encode(), subscribe(4, 1, &none, &[("seed/#", 1)]), publish(4, b"seed/a", 1, false, 2, &none, b"x")]),
    );

    // MQTT 3.1.1 after the target's CONNECT.
    add(
        "v311-subscribe-publish",
        seed(
            AFTER_V311,
            &[
                subscribe(4, 1, &none, &[("fuzz/+/x", 1), ("fuzz/#", 2)]),
                publish(4, b"fuzz/a/x", 0, false, 0, &none, b"q0"),
                publish(4, b"fuzz/a/x", 1, false, 2, &none, b"q1"),
                publish(4, b"fuzz/a/x", 2, false, 3, &none, b"q2"),
                ack(first::PUBREL, 3),
                ack(first::PUBACK, 1),
                ack(first::PUBREC, 2),
                ack(first::PUBCOMP, 2),
                vec![first::PINGREQ, 0x00],
                unsubscribe(4, 4, &["fuzz/#", "fuzz/+/x"]),
                vec![first::DISCONNECT, 0x00],
            ],
        ),
    );
    add(
        "v311-retained",
        seed(
            AFTER_V311,
            &[
                publish(4, b"fuzz/retained", 1, true, 1, &none, b"kept"),
                subscribe(4, 2, &none, &[("fuzz/retained", 1)]),
                publish(4, b"fuzz/retained", 0, true, 0, &none, b""),
            ],
        ),
    );
    add(
        "v311-shared-and-sys",
        seed(AFTER_V311, &[subscribe(4, 1, &none, &[("$share/group/fuzz/t", 1), ("$SYS/#", 0)]), publish(4, b"fuzz/t", 1, false, 2, &none, b"x")]),
    );
    add("v311-publish-wildcard-topic", seed(AFTER_V311, &[publish(4, b"fuzz/+", 0, false, 0, &none, b"x")]));
    add("v311-qos2-resend", seed(AFTER_V311, &[publish(4, b"fuzz/q", 2, false, 9, &none, b"a"), publish(4, b"fuzz/q", 2, false, 9, &none, b"b"), ack(first::PUBREL, 9)]));
    add("v311-second-connect", seed(AFTER_V311, &[Connect::v311("seed-twice").encode()]));
    add("v311-reserved-type-0", seed(AFTER_V311, &[vec![0x00, 0x00]]));
    add("v311-pingreq-flags", seed(AFTER_V311, &[vec![0xC1, 0x00]]));
    add("v311-disconnect-flags", seed(AFTER_V311, &[vec![0xE2, 0x00]]));
    add("v311-client-sends-connack", seed(AFTER_V311, &[vec![first::CONNACK, 0x02, 0x00, 0x00]]));
    add("v311-publish-topic-past-end", seed(AFTER_V311, &[vec![first::PUBLISH, 0x04, 0x00, 0x10, b'a', b'b']]));
    add("v311-subscribe-no-filter", seed(AFTER_V311, &[packet(first::SUBSCRIBE, &[0x00, 0x01])]));
    add("v311-subscribe-missing-options", seed(AFTER_V311, &[packet(first::SUBSCRIBE, &Body::new().u16(1).str("a/b").bytes)]));
    add("v311-unsubscribe-trailing-byte", seed(AFTER_V311, &[packet(first::UNSUBSCRIBE, &Body::new().u16(1).str("a").u8(0).bytes)]));
    add("v311-invalid-utf8-topic", seed(AFTER_V311, &[publish(4, b"fuzz/\xC0\xAF", 0, false, 0, &none, b"x")]));
    add("v311-puback-truncated", seed(AFTER_V311, &[vec![first::PUBACK, 0x01, 0x00]]));

    // MQTT 5.0 after the target's CONNECT.
    let publish_props = Props::new()
        .byte(prop::PAYLOAD_FORMAT_INDICATOR, 1)
        .four(prop::MESSAGE_EXPIRY_INTERVAL, 60)
        .str(prop::CONTENT_TYPE, "text/plain")
        .str(prop::RESPONSE_TOPIC, "fuzz/reply")
        .string(prop::CORRELATION_DATA, b"id-1")
        .user("k", "v");
    add(
        "v5-subscribe-publish-properties",
        seed(
            AFTER_V5,
            &[
                subscribe(5, 1, &Props::new().varint(prop::SUBSCRIPTION_IDENTIFIER, 7), &[("fuzz/#", options(2, false, true, 0))]),
                publish(5, b"fuzz/p", 1, true, 2, &publish_props, b"{}"),
                publish(5, b"fuzz/p", 2, false, 3, &publish_props, b"{}"),
                packet(first::PUBREL, &Body::new().u16(3).u8(0).props(&Props::new().str(prop::REASON_STRING, "ok")).bytes),
                ack(first::PUBACK, 1),
                unsubscribe(5, 4, &["fuzz/#"]),
            ],
        ),
    );
    let alias = Props::new().two(prop::TOPIC_ALIAS, 1);
    add(
        "v5-topic-alias",
        seed(AFTER_V5, &[publish(5, b"fuzz/alias", 1, false, 1, &alias, b"1"), publish(5, b"", 1, false, 2, &alias, b"2")]),
    );
    add("v5-topic-alias-zero", seed(AFTER_V5, &[publish(5, b"fuzz/a", 0, false, 0, &Props::new().two(prop::TOPIC_ALIAS, 0), b"x")]));
    add("v5-topic-alias-unmapped", seed(AFTER_V5, &[publish(5, b"", 0, false, 0, &alias, b"x")]));
    add(
        "v5-no-local-retain-handling",
        seed(
            AFTER_V5,
            &[
                publish(5, b"fuzz/r", 1, true, 1, &none, b"r"),
                subscribe(5, 2, &none, &[("fuzz/r", options(1, true, false, 1)), ("$share/g/fuzz/r", options(1, false, false, 2))]),
                subscribe(5, 3, &none, &[("fuzz/r", options(1, true, true, 0))]),
            ],
        ),
    );
    add(
        "v5-disconnect-with-will",
        seed(AFTER_V5, &[packet(first::DISCONNECT, &Body::new().u8(0x04).props(&Props::new().four(prop::SESSION_EXPIRY_INTERVAL, 0)).bytes)]),
    );
    add("v5-disconnect-expiry-after-zero", seed(AFTER_V5, &[packet(first::DISCONNECT, &Body::new().u8(0).props(&Props::new().four(prop::SESSION_EXPIRY_INTERVAL, 10)).bytes)]));
    add("v5-auth", seed(AFTER_V5, &[packet(first::AUTH, &Body::new().u8(0x18).props(&Props::new().str(prop::AUTHENTICATION_METHOD, "x")).bytes)]));
    add("v5-receive-maximum-exceeded", seed(AFTER_V5, &(1..=24).map(|id| publish(5, b"fuzz/rm", 2, false, id, &none, b"x")).collect::<Vec<_>>()));
    add("v5-duplicate-property", seed(AFTER_V5, &[publish(5, b"fuzz/d", 0, false, 0, &Props::new().byte(prop::PAYLOAD_FORMAT_INDICATOR, 0).byte(prop::PAYLOAD_FORMAT_INDICATOR, 1), b"x")]));
    add("v5-subscription-id-zero", seed(AFTER_V5, &[subscribe(5, 1, &Props::new().varint(prop::SUBSCRIPTION_IDENTIFIER, 0), &[("fuzz/z", 0)])]));
    add("v5-subscribe-bad-varint", seed(AFTER_V5, &[packet(first::SUBSCRIBE, &Body::new().u16(1).raw(b"\xF8\x88\x80\x80\x80").str("a").u8(0).bytes)]));
    add("v5-reserved-type-0", seed(AFTER_V5, &[vec![0x00, 0x00]]));
    add("v5-pingreq-flags", seed(AFTER_V5, &[vec![0xC8, 0x00]]));
    add("v5-client-sends-suback", seed(AFTER_V5, &[vec![first::SUBACK, 0x04, 0x00, 0x01, 0x00, 0x00]]));

    // MQTT 3.1 after the target's CONNECT.
    add(
        "v31-subscribe-publish",
        seed(
            AFTER_V31,
            &[
                subscribe(4, 1, &none, &[("fuzz/31", 2)]),
                publish(4, b"fuzz/31", 2, false, 2, &none, b"x"),
                ack(first::PUBREL, 2),
                vec![first::DISCONNECT, 0x00],
            ],
        ),
    );
    add("v31-remaining-length-5-bytes", seed(AFTER_V31, &[vec![first::PINGREQ, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]]));
    seeds
}

fn password_file_seeds() -> Vec<(String, String)> {
    // mosquitto_passwd 2.0.11 output for user "m7" with password "pw7" and for "m6" with "pw6",
    // as in the auth crate's tests.
    const M7: &str = "$7$101$SdJHmL3FEUEg/ls8$NFtWdoYf6wjNUogXQnxUaF4YO3dEz0Lmr77XQx19If55gioS54gRTP/zBB0F6LwF/Vk1XMitOuZ04867xRRurw==";
    const M6: &str = "$6$FK/aUGEUm7ZDnxew$LntYfuCC1HxC+gN7u4eYI8XJ7P7G1HvEf9Rp+dnG823Wqu4oMdBt2wROuLwlRBwYAOQ0UX+rdILU4gRXU/yWRA==";
    let mut file = lpiotia_auth::PasswordFile::new();
    file.set_password("alice", b"wonderland").expect("set a password");
    let argon2id = file.to_text();
    let fixture = fs::read_to_string("auth/tests/fixtures/mosquitto_passwd").expect("read the auth test fixture");

    vec![
        ("mosquitto-fixture.txt".into(), fixture),
        ("mosquitto-7.txt".into(), format!("m7:{M7}\n")),
        ("mosquitto-6.txt".into(), format!("m6:{M6}\n")),
        ("argon2id.txt".into(), argon2id.clone()),
        ("mixed-comments-crlf.txt".into(), format!("# users\r\n\r\nm7:{M7}\r\n  m6 : {M6}  \r\n{}", argon2id.replace('\n', "\r\n"))),
        ("duplicates.txt".into(), format!("m7:{M7}\nm7:{M6}\n{argon2id}m6:{M6}\n")),
        (
            "malformed.txt".into(),
            [
                "plain:secret",
                "nocolonhunter3",
                ":$6$c2FsdA==$aGFzaA==",
                "zero:$7$0$c2FsdA==$aGFzaA==",
                "big:$7$99999999999$c2FsdA==$aGFzaA==",
                "short:$7$101$c2FsdA==$aGFzaA==",
                "crypt:$6$rounds=5000$salt$hash",
                "argon2i:$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
                "oldversion:$argon2id$v=18$m=16,t=2,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
                "lowmemory:$argon2id$v=19$m=1,t=2,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
                "badchars:$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$***",
                "sp ace:$6$c2FsdA==$aGFzaA==",
            ]
            .join("\n"),
        ),
    ]
}

fn config_seeds() -> Vec<(String, String)> {
    let defaults = fs::read_to_string("config/defaults.toml").expect("read config/defaults.toml");
    vec![
        ("defaults.toml".into(), defaults),
        (
            "listeners.toml".into(),
            r#"
[limits]
max_queued_bytes = "1000"
max_packet_size = 65536

[listeners.lan]
bind = "127.0.0.1:1883"
allow = ["127.0.0.0/8", "::1"]

[listeners.tls]
kind = "tls"
bind = "0.0.0.0:8883"
key_file = "/etc/certs/server.key"
allow = ["10.1.2.3/8", "::1"]

[listeners.ws]
enabled = false

[listeners.extra]
kind = "ws"
bind = "[::]:9001"
path = "/mqtt"
handshake_timeout_secs = 5
max_fragment_size = 1400
"#
            .into(),
        ),
        ("unknown-key.toml".into(), "[listeners.lan]\nbnid = 1\n".into()),
        ("bad-bind.toml".into(), "[listeners.lan]\nbind = \"abc\"\n".into()),
        ("bad-cidr.toml".into(), "[listeners.lan]\nallow = [\"10.0.0.0/33\"]\n".into()),
        ("wrong-type.toml".into(), "[limits]\nmax_inflight_messages = \"many\"\nmax_topic_levels = -1\n".into()),
        ("scalar-for-table.toml".into(), "limits = 5\n".into()),
        ("duplicate-bind.toml".into(), "[listeners.two]\nkind = \"tcp\"\nbind = \"0.0.0.0:1883\"\n".into()),
        ("persistence.toml".into(), "log_level = \"debug\"\n\n[persistence]\nmode = \"relaxed\"\nrelaxed_interval_ms = 50\n".into()),
        ("syntax-error.toml".into(), "[limits\nmax_inflight_messages = 1\n".into()),
    ]
}
