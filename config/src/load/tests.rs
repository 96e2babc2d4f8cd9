use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::*;
use crate::{ByteSize, ListenerKind, LogLevel};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("create temporary config file");
    file.write_all(text.as_bytes()).expect("write config file");
    file
}

/// Loads `toml` as the config file, with `variables` as the environment.
fn load_toml(toml: &str, variables: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let file = write_config(toml);
    load_from(Some(file.path()), &env(variables))
}

fn load_env(variables: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    load_from(None, &env(variables))
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Unwraps an `InvalidValue` error into (key, value, expected, origin).
fn invalid_value(
    result: Result<Settings, ConfigError>,
) -> (String, String, String, Option<String>) {
    match result {
        Err(ConfigError::InvalidValue {
            key,
            value,
            expected,
            origin,
        }) => (key, value, expected, origin),
        other => panic!("expected an invalid value error, got {other:?}"),
    }
}

/// Unwraps an `UnknownKey` error into (key, origin).
fn unknown_key(result: Result<Settings, ConfigError>) -> (String, Option<String>) {
    match result {
        Err(ConfigError::UnknownKey { key, origin, .. }) => (key, origin),
        other => panic!("expected an unknown key error, got {other:?}"),
    }
}

#[test]
fn defaults_load() {
    let settings = load_env(&[]).expect("defaults load");
    let from_toml: Settings =
        toml::from_str(crate::default_toml()).expect("defaults parse as TOML");
    assert_eq!(settings, from_toml);

    assert_eq!(settings.data_dir, PathBuf::from("./data"));
    assert_eq!(settings.log_level, LogLevel::Info);
    assert_eq!(settings.limits.connect_timeout_secs, 10);
    assert_eq!(settings.limits.max_queued_bytes, ByteSize(16 << 20));
    assert_eq!(
        settings.limits.max_packet_size,
        ByteSize(crate::MQTT_MAX_PACKET_SIZE)
    );

    let lan = &settings.listeners["lan"];
    assert_eq!(settings.listeners.len(), 3);
    assert_eq!(lan.kind, ListenerKind::Tcp);
    assert_eq!(lan.bind, addr("0.0.0.0:1883"));
    assert_eq!(lan.allow.len(), 8);
    assert!(lan.allow.contains(&net("192.168.0.0/16")));
    assert!(lan.allow.contains(&net("fe80::/10")));
    assert!(!lan.allow_anonymous);
    assert!(lan.enabled);
    assert!(lan.require_certificate);
    assert_eq!(lan.path, "/mqtt");
    assert_eq!(lan.cert_file, None);

}

#[test]
fn password_file_defaults_to_data_dir() {
    let settings = load_env(&[("LPIOTIA_MQTT__DATA_DIR", "/srv/mqtt")]).unwrap();
    assert_eq!(settings.password_file(), PathBuf::from("/srv/mqtt/passwd"));

    let settings = load_env(&[("LPIOTIA_MQTT__PASSWORD_FILE", "/etc/mqtt/users")]).unwrap();
    assert_eq!(settings.password_file(), PathBuf::from("/etc/mqtt/users"));
}

#[test]
fn toml_overrides_defaults() {
    let settings = load_toml(
        r#"
        data_dir = "/var/lib/lpiotia-mqtt"
        log_level = "debug"

        [limits]
        max_inflight_messages = 50
        max_queued_bytes = "1GiB"
        global_queue_memory = 1048576

        [listeners.lan]
        bind = "127.0.0.1:11883"

        [listeners.tls]
        kind = "tls"
        bind = "0.0.0.0:8883"
        cert_file = "/etc/certs/server.crt"
        key_file = "/etc/certs/server.key"
        "#,
        &[],
    )
    .expect("config loads");

    assert_eq!(settings.data_dir, PathBuf::from("/var/lib/lpiotia-mqtt"));
    assert_eq!(settings.log_level, LogLevel::Debug);
    assert_eq!(settings.limits.max_inflight_messages, 50);
    assert_eq!(settings.limits.max_queued_bytes, ByteSize(1 << 30));
    assert_eq!(settings.limits.global_queue_memory, ByteSize(1_048_576));
    // Keys the file does not set keep their defaults.
    assert_eq!(settings.limits.connect_timeout_secs, 10);

    let lan = &settings.listeners["lan"];
    assert_eq!(lan.bind, addr("127.0.0.1:11883"));
    assert_eq!(lan.kind, ListenerKind::Tcp, "kind comes from the defaults");
    assert_eq!(lan.allow.len(), 8, "allow comes from the defaults");

    let tls = &settings.listeners["tls"];
    assert_eq!(tls.kind, ListenerKind::Tls);
    assert_eq!(tls.bind, addr("0.0.0.0:8883"));
    assert_eq!(
        tls.allow,
        vec![net("0.0.0.0/0"), net("::/0")],
        "new listener allows any address"
    );
    assert_eq!(tls.key_file, Some(PathBuf::from("/etc/certs/server.key")));
    assert_eq!(tls.ca_file, None);
    assert!(tls.enabled);
    assert!(tls.require_certificate);
    assert_eq!(tls.path, "/mqtt");
}

#[test]
fn toml_allow_replaces_default_list() {
    let settings = load_toml("[listeners.lan]\nallow = [\"10.0.0.0/8\"]\n", &[]).unwrap();
    assert_eq!(settings.listeners["lan"].allow, vec![net("10.0.0.0/8")]);
}

#[test]
fn env_overrides_file_and_defaults() {
    let settings = load_toml(
        "data_dir = \"/from/file\"\n[limits]\nmax_inflight_messages = 30\n",
        &[
            ("LPIOTIA_MQTT__LIMITS__MAX_INFLIGHT_MESSAGES", "50"),
            ("LPIOTIA_MQTT__LISTENERS__LAN__BIND", "127.0.0.1:0"),
            (
                "LPIOTIA_MQTT__LISTENERS__LAN__ALLOW",
                "10.0.0.0/8,127.0.0.1",
            ),
            ("LPIOTIA_MQTT__LISTENERS__LAN__ALLOW_ANONYMOUS", "true"),
            ("LPIOTIA_MQTT__LIMITS__MAX_QUEUED_BYTES", "4MiB"),
            ("LPIOTIA_MQTT__DATA_DIR", "/data"),
        ],
    )
    .expect("config loads");

    assert_eq!(settings.data_dir, PathBuf::from("/data"));
    assert_eq!(settings.limits.max_inflight_messages, 50);
    assert_eq!(settings.limits.max_queued_bytes, ByteSize(4 << 20));
    let lan = &settings.listeners["lan"];
    assert_eq!(lan.bind, addr("127.0.0.1:0"));
    assert_eq!(lan.allow, vec![net("10.0.0.0/8"), net("127.0.0.1/32")]);
    assert!(lan.allow_anonymous);
}

#[test]
fn env_list_single_entry_and_spaces() {
    let settings =
        load_env(&[("LPIOTIA_MQTT__LISTENERS__LAN__ALLOW", "192.168.1.0/24, ::1")]).unwrap();
    assert_eq!(
        settings.listeners["lan"].allow,
        vec![net("192.168.1.0/24"), net("::1/128")]
    );

    let settings = load_env(&[("LPIOTIA_MQTT__LISTENERS__LAN__ALLOW", "127.0.0.1")]).unwrap();
    assert_eq!(settings.listeners["lan"].allow, vec![net("127.0.0.1/32")]);
}

#[test]
fn env_value_with_comma_not_split() {
    // Only list keys are split, so a comma elsewhere stays part of the value.
    let settings = load_env(&[
        ("LPIOTIA_MQTT__DATA_DIR", "/data/a,b"),
        (
            "LPIOTIA_MQTT__LISTENERS__LAN__ALLOW",
            "10.0.0.0/8,127.0.0.1",
        ),
    ])
    .unwrap();
    assert_eq!(settings.data_dir, PathBuf::from("/data/a,b"));
}

#[test]
fn env_adds_listener() {
    let settings = load_env(&[
        ("LPIOTIA_MQTT__LISTENERS__MY_WS__KIND", "ws"),
        ("LPIOTIA_MQTT__LISTENERS__MY_WS__BIND", "[::1]:8080"),
        ("LPIOTIA_MQTT__LISTENERS__MY_WS__PATH", "/broker"),
    ])
    .expect("config loads");
    let listener = &settings.listeners["my_ws"];
    assert_eq!(listener.kind, ListenerKind::Ws);
    assert_eq!(listener.bind, addr("[::1]:8080"));
    assert_eq!(listener.path, "/broker");
    assert_eq!(listener.allow, vec![net("0.0.0.0/0"), net("::/0")]);
}

#[test]
fn env_ignores_other_variables() {
    let settings = load_env(&[
        ("LPIOTIA_MQTT_ADMIN_PASSWORD", "hunter2-not-config"),
        ("LPIOTIA_MQTT_DATA_DIR", "/one-underscore"),
        ("HOME", "/root"),
    ])
    .expect("other variables are ignored");
    assert_eq!(settings, load_env(&[]).unwrap());
}

#[test]
fn unknown_top_level_key() {
    let file = write_config("data_dir = \"/data\"\nbogus_key = 1\n");
    let result = load_from(Some(file.path()), &[]);
    let error = result.as_ref().unwrap_err().to_string();
    let (key, origin) = unknown_key(result);
    assert_eq!(key, "bogus_key");
    assert_eq!(origin, Some(file.path().display().to_string()));
    assert!(error.contains("bogus_key"), "{error}");
    assert!(
        error.contains("data_dir"),
        "message lists the known keys: {error}"
    );
}

#[test]
fn unknown_listener_key() {
    let (key, _) = unknown_key(load_toml("[listeners.lan]\nbnid = \"0.0.0.0:1\"\n", &[]));
    assert_eq!(key, "listeners.lan.bnid");

    let (key, origin) = unknown_key(load_env(&[("LPIOTIA_MQTT__LISTENERS__LAN__BNID", "x")]));
    assert_eq!(key, "listeners.lan.bnid");
    assert_eq!(
        origin.as_deref(),
        Some("environment variable LPIOTIA_MQTT__LISTENERS__LAN__BNID")
    );
}

#[test]
fn unknown_limits_key() {
    let (key, _) = unknown_key(load_env(&[("LPIOTIA_MQTT__LIMITS__MAX_INFLIGHT", "5")]));
    assert_eq!(key, "limits.max_inflight");
}

#[test]
fn bad_bind_names_key_and_value() {
    let result = load_env(&[("LPIOTIA_MQTT__LISTENERS__LAN__BIND", "abc")]);
    let message = result.as_ref().unwrap_err().to_string();
    assert_eq!(
        message,
        "invalid value \"abc\" for listeners.lan.bind: expected an address like 0.0.0.0:1883 \
         (set in environment variable LPIOTIA_MQTT__LISTENERS__LAN__BIND)"
    );

    let (key, value, _, origin) =
        invalid_value(load_toml("[listeners.lan]\nbind = \"1883\"\n", &[]));
    assert_eq!(key, "listeners.lan.bind");
    assert_eq!(value, "\"1883\"");
    assert!(origin.unwrap().ends_with(".toml"));
}

#[test]
fn bad_bind_number_from_env() {
    // try_parsing turns "1883" into an integer, but the error still shows the value.
    let (key, value, expected, _) =
        invalid_value(load_env(&[("LPIOTIA_MQTT__LISTENERS__LAN__BIND", "1883")]));
    assert_eq!(key, "listeners.lan.bind");
    assert_eq!(value, "1883");
    assert_eq!(expected, crate::listener::EXPECTED_BIND);
}

#[test]
fn bad_cidr_in_file() {
    let (key, value, expected, _) = invalid_value(load_toml(
        "[listeners.lan]\nallow = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n",
        &[],
    ));
    assert_eq!(key, "listeners.lan.allow[1]");
    assert_eq!(value, "\"10.0.0.0/33\"");
    assert_eq!(expected, crate::listener::EXPECTED_NETWORK);
}

#[test]
fn bad_cidr_in_env() {
    let (key, value, _, origin) = invalid_value(load_env(&[(
        "LPIOTIA_MQTT__LISTENERS__LAN__ALLOW",
        "127.0.0.1,lan.example",
    )]));
    assert_eq!(key, "listeners.lan.allow[1]");
    assert_eq!(value, "\"lan.example\"");
    assert_eq!(
        origin.as_deref(),
        Some("environment variable LPIOTIA_MQTT__LISTENERS__LAN__ALLOW")
    );
}

#[test]
fn empty_allow_rejected() {
    let (key, value, _, _) = invalid_value(load_toml("[listeners.lan]\nallow = []\n", &[]));
    assert_eq!(key, "listeners.lan.allow");
    assert_eq!(value, "[]");
}

#[test]
fn range_errors() {
    let cases = [
        ("connect_timeout_secs", "0", "an integer from 1 to 3600"),
        ("connect_timeout_secs", "3601", "an integer from 1 to 3600"),
        ("max_inflight_messages", "0", "an integer from 1 to 65535"),
        (
            "max_inflight_messages",
            "65536",
            "an integer from 1 to 65535",
        ),
        ("max_inflight_messages", "-1", "an integer from 1 to 65535"),
        ("max_queued_messages", "0", "an integer of at least 1"),
        ("max_keepalive_secs", "0", "an integer from 1 to 65535"),
        ("max_topic_levels", "0", "an integer from 1 to 65535"),
        ("max_client_id_len", "65536", "an integer from 0 to 65535"),
        (
            "max_packet_size",
            "\"512MiB\"",
            "a size from 1 to 268435455 bytes",
        ),
        ("max_queued_bytes", "0", "a size of at least 1 byte"),
    ];
    for (field, value, expected) in cases {
        let toml = format!("[limits]\n{field} = {value}\n");
        let result = load_toml(&toml, &[]);
        let (key, shown, got_expected, _) = invalid_value(result);
        assert_eq!(key, format!("limits.{field}"), "key of {field} = {value}");
        assert_eq!(shown, value, "value of {field} = {value}");
        assert_eq!(got_expected, expected, "expectation of {field} = {value}");
    }
}

#[test]
fn range_error_from_env() {
    let result = load_env(&[("LPIOTIA_MQTT__LIMITS__CONNECT_TIMEOUT_SECS", "0")]);
    let message = result.unwrap_err().to_string();
    assert_eq!(
        message,
        "invalid value 0 for limits.connect_timeout_secs: expected an integer from 1 to 3600 \
         (set in environment variable LPIOTIA_MQTT__LIMITS__CONNECT_TIMEOUT_SECS)"
    );
}

#[test]
fn wrong_types_name_value() {
    let cases = [
        ("limits", "max_inflight_messages", "\"abc\""),
        ("limits", "max_queued_bytes", "\"16 megabytes\""),
        ("limits", "max_queued_bytes", "true"),
        ("listeners.lan", "kind", "\"mqtt\""),
        ("listeners.lan", "allow_anonymous", "\"maybe\""),
        ("listeners.lan", "allow", "\"10.0.0.0/8\""),
        ("listeners", "lan", "5"),
    ];
    for (section, field, value) in cases {
        let toml = format!("[{section}]\n{field} = {value}\n");
        let (key, shown, _, _) = invalid_value(load_toml(&toml, &[]));
        assert_eq!(
            key,
            format!("{section}.{field}"),
            "key of {field} = {value}"
        );
        assert_eq!(shown, value, "value of {field} = {value}");
    }
}

#[test]
fn scalar_for_table() {
    let (key, value, expected, _) = invalid_value(load_env(&[("LPIOTIA_MQTT__LIMITS", "5")]));
    assert_eq!(key, "limits");
    assert_eq!(value, "5");
    assert_eq!(expected, "a table");
}

#[test]
fn bad_log_level() {
    let (key, value, expected, _) =
        invalid_value(load_env(&[("LPIOTIA_MQTT__LOG_LEVEL", "verbose")]));
    assert_eq!(key, "log_level");
    assert_eq!(value, "\"verbose\"");
    assert_eq!(expected, crate::settings::EXPECTED_LOG_LEVEL);
}

#[test]
fn new_listener_requires_kind_and_bind() {
    let result = load_toml("[listeners.extra]\nbind = \"0.0.0.0:2883\"\n", &[]);
    match result {
        Err(ConfigError::MissingKey { key, .. }) => assert_eq!(key, "listeners.extra.kind"),
        other => panic!("expected a missing key error, got {other:?}"),
    }

    let result = load_env(&[("LPIOTIA_MQTT__LISTENERS__EXTRA__KIND", "tcp")]);
    match result {
        Err(ConfigError::MissingKey { key, hint }) => {
            assert_eq!(key, "listeners.extra.bind");
            assert!(
                hint.contains("LPIOTIA_MQTT__LISTENERS__EXTRA__BIND"),
                "{hint}"
            );
        }
        other => panic!("expected a missing key error, got {other:?}"),
    }
}

#[test]
fn listener_name_rejected() {
    for (section, name) in [("LAN", "LAN"), ("\"my lan\"", "my lan"), ("\"a.b\"", "a.b")] {
        let toml = format!("[listeners.{section}]\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\n");
        match load_toml(&toml, &[]) {
            Err(ConfigError::InvalidListenerName { name: rejected, .. }) => {
                assert_eq!(rejected, name)
            }
            other => panic!("expected listener name {name:?} to be rejected, got {other:?}"),
        }
    }
}

#[test]
fn websocket_path_must_start_with_slash() {
    let (key, value, _, _) = invalid_value(load_toml("[listeners.lan]\npath = \"mqtt\"\n", &[]));
    assert_eq!(key, "listeners.lan.path");
    assert_eq!(value, "\"mqtt\"");
}

#[test]
fn empty_cert_file_rejected() {
    let (key, _, _, _) = invalid_value(load_toml("[listeners.lan]\ncert_file = \"\"\n", &[]));
    assert_eq!(key, "listeners.lan.cert_file");
}

#[test]
fn duplicate_bind_rejected() {
    let toml = "[listeners.second]\nkind = \"ws\"\nbind = \"0.0.0.0:1883\"\n";
    let (key, value, expected, _) = invalid_value(load_toml(toml, &[]));
    assert_eq!(key, "listeners.second.bind");
    assert_eq!(value, "\"0.0.0.0:1883\"");
    assert!(
        expected.contains("lan"),
        "names the other listener: {expected}"
    );

    let overlapping = "[listeners.local]\nkind = \"tcp\"\nbind = \"127.0.0.1:1883\"\n";
    assert!(
        load_toml(overlapping, &[]).is_err(),
        "wildcard and loopback on one port overlap"
    );
}

#[test]
fn duplicate_bind_allowed_cases() {
    let port_zero = "[listeners.lan]\nbind = \"127.0.0.1:0\"\n\
                     [listeners.other]\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\n";
    assert!(load_toml(port_zero, &[]).is_ok(), "port 0 may repeat");

    let disabled = "[listeners.spare]\nkind = \"tcp\"\nbind = \"0.0.0.0:1883\"\nenabled = false\n";
    assert!(
        load_toml(disabled, &[]).is_ok(),
        "a disabled listener does not bind"
    );
}

#[test]
fn no_enabled_listener() {
    let result = load_env(&[
        ("LPIOTIA_MQTT__LISTENERS__LAN__ENABLED", "false"),
        ("LPIOTIA_MQTT__LISTENERS__TLS__ENABLED", "false"),
        ("LPIOTIA_MQTT__LISTENERS__WS__ENABLED", "false"),
    ]);
    assert!(matches!(result, Err(ConfigError::NoListener)), "{result:?}");
}

#[test]
fn missing_config_file() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("absent.toml");
    let result = load_from(Some(&path), &[]);
    let message = result.as_ref().unwrap_err().to_string();
    assert!(
        matches!(result, Err(ConfigError::ReadFile { .. })),
        "{message}"
    );
    assert!(message.contains("absent.toml"), "{message}");
}

#[test]
fn toml_syntax_error_names_file() {
    let file = write_config("[limits\nmax_inflight_messages = 5\n");
    let result = load_from(Some(file.path()), &[]);
    match result {
        Err(ConfigError::Parse { origin, .. }) => {
            assert_eq!(origin, file.path().display().to_string())
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn masked_output_round_trips() {
    let settings = load_toml(
        r#"
        [limits]
        max_queued_bytes = 1000
        [listeners.tls]
        kind = "tls"
        bind = "0.0.0.0:8883"
        key_file = "/etc/certs/server.key"
        allow = ["10.1.2.3/8", "::1"]
        "#,
        &[("LPIOTIA_MQTT_ADMIN_PASSWORD", "s3cret-admin-password")],
    )
    .expect("config loads");
    let output = settings.to_toml_masked();

    let parsed: Settings = toml::from_str(&output).expect("masked output is valid TOML");
    assert_eq!(parsed, settings, "masked output:\n{output}");

    let reloaded = load_toml(&output, &[]).expect("masked output loads as a config file");
    assert_eq!(reloaded, settings);

    assert!(!output.contains("s3cret-admin-password"), "{output}");
    assert!(
        output.contains("/etc/certs/server.key"),
        "a key path is not a secret"
    );
}

#[test]
fn error_display_examples() {
    let unknown = load_toml("[listeners.lan]\nbnid = 1\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        unknown.starts_with("unknown key listeners.lan.bnid: expected one of "),
        "{unknown}"
    );

    let missing = load_env(&[("LPIOTIA_MQTT__LISTENERS__NEW__KIND", "tcp")])
        .unwrap_err()
        .to_string();
    assert!(
        missing.starts_with("missing key listeners.new.bind: "),
        "{missing}"
    );
}

#[test]
fn handshake_timeout_range() {
    let (key, value, _, _) = invalid_value(load_toml("[listeners.lan]\nhandshake_timeout_secs = 0\n", &[]));
    assert_eq!(key, "listeners.lan.handshake_timeout_secs");
    assert_eq!(value, "0");
}

#[test]
fn max_fragment_size_range() {
    let (key, _, _, _) = invalid_value(load_toml("[listeners.lan]\nmax_fragment_size = 8\n", &[]));
    assert_eq!(key, "listeners.lan.max_fragment_size");
    assert!(load_toml("[listeners.lan]\nmax_fragment_size = 1024\n", &[]).is_ok());
}

#[test]
fn persistence_mode_error_names_choices() {
    let (key, value, expected, _) = invalid_value(load_toml("[persistence]\nmode = \"fast\"\n", &[]));
    assert_eq!(key, "persistence.mode");
    assert_eq!(value, "\"fast\"");
    assert!(expected.contains("durable or relaxed"), "{expected}");
}
