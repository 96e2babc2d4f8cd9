//! The typed settings tree: top-level keys, `[limits]` and `[listeners.NAME]`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::bytesize::ByteSize;
use crate::listener::ListenerSettings;

/// Description of a valid log level, used in error messages.
pub(crate) const EXPECTED_LOG_LEVEL: &str = "one of trace, debug, info, warn, error";

/// Effective settings of the broker, after defaults, config file and environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Directory of the certificates, the password file and the store.
    pub data_dir: PathBuf,

    /// Password file as configured. Empty means `<data_dir>/passwd`, so read it through
    /// [`Settings::password_file()`], which applies that default.
    pub password_file: PathBuf,

    /// Topic ACL file in Mosquitto's `acl_file` format. Empty means no ACL, so read it
    /// through [`Settings::acl_file()`].
    pub acl_file: PathBuf,

    /// Level of the log output.
    pub log_level: LogLevel,

    /// Seconds between two publications of the `$SYS` topics; 0 turns them off.
    pub sys_interval_secs: u64,

    /// Protocol and memory limits.
    pub limits: Limits,

    /// Durable store of retained messages, sessions and queued messages.
    pub persistence: Persistence,

    /// Listeners by name.
    pub listeners: BTreeMap<String, ListenerSettings>,
}

impl Settings {
    /// Returns the password file path: `password_file` if set, else `<data_dir>/passwd`.
    pub fn password_file(&self) -> PathBuf {
        if self.password_file.as_os_str().is_empty() {
            self.data_dir.join("passwd")
        } else {
            self.password_file.clone()
        }
    }

    /// Returns the ACL file path, or None when `acl_file` is empty (no ACL).
    pub fn acl_file(&self) -> Option<PathBuf> {
        (!self.acl_file.as_os_str().is_empty()).then(|| self.acl_file.clone())
    }

    /// Renders the effective settings as TOML, in the form a config file takes, with every
    /// secret replaced by `********`.
    ///
    /// NOTE: no setting contains a secret yet (`key_file` is a path, not key material), so
    /// nothing is masked today. A secret added later must be masked here.
    pub fn to_toml_masked(&self) -> String {
        // Serialization cannot fail: every map key is a string, and unset options are
        // skipped rather than written as a TOML value that does not exist.
        toml::to_string_pretty(self).expect("settings serialize to TOML")
    }
}

/// When the store writes to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PersistenceMode {
    /// Acknowledgements wait until the message is on disk (fsync).
    Durable,
    /// Written in the background every `relaxed_interval_ms`.
    Relaxed,
}

impl<'de> Deserialize<'de> for PersistenceMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "durable" => Ok(PersistenceMode::Durable),
            "relaxed" => Ok(PersistenceMode::Relaxed),
            _ => Err(de::Error::custom("expected durable or relaxed")),
        }
    }
}

/// The section `[persistence]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    /// Whether state is kept on disk at all; false keeps everything in memory only.
    pub enabled: bool,

    /// `durable` or `relaxed`.
    pub mode: PersistenceMode,

    /// Milliseconds between two background writes in relaxed mode.
    pub relaxed_interval_ms: u64,

    /// Messages queued for a persistent session when persistence is on.
    pub max_queued_messages: usize,

    /// Bytes queued for a persistent session when persistence is on.
    pub max_queued_bytes: ByteSize,
}

/// Protocol and memory limits, the section `[limits]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Seconds a new connection has to send CONNECT as its first packet.
    pub connect_timeout_secs: u64,

    /// Outgoing QoS 1 and 2 messages not yet acknowledged, per session.
    pub max_inflight_messages: u16,

    /// Messages queued for a persistent session.
    pub max_queued_messages: usize,

    /// Messages queued for a clean (non-persistent) session.
    pub max_queued_messages_clean: usize,

    /// Bytes queued per session.
    pub max_queued_bytes: ByteSize,

    /// Memory held in all queues together. Above it, publishers' sockets are not read until
    /// usage falls back.
    pub global_queue_memory: ByteSize,

    /// Largest packet accepted.
    pub max_packet_size: ByteSize,

    /// Largest keep alive granted to clients, in seconds.
    pub max_keepalive_secs: u16,

    /// Levels in a topic name or topic filter.
    pub max_topic_levels: usize,

    /// Length of a client id in bytes, or 0 for no limit.
    pub max_client_id_len: usize,

    /// Memory held by retained messages.
    pub max_retained_memory: ByteSize,
}

/// Level of the log output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Every event, including each packet.
    Trace,
    /// Events useful to debug the broker.
    Debug,
    /// Connections, disconnections and other normal events.
    Info,
    /// Rejected clients and other problems the broker handles.
    Warn,
    /// Failures only.
    Error,
}

impl LogLevel {
    /// Returns the lowercase name, which is also a valid `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`LogLevel::from_str`], naming the rejected text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log level {text:?}: expected {EXPECTED_LOG_LEVEL}")]
pub struct ParseLogLevelError {
    /// The text that was rejected.
    pub text: String,
}

impl FromStr for LogLevel {
    type Err = ParseLogLevelError;

    /// Parses a level name without regard to case, as `RUST_LOG` does.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            _ => Err(ParseLogLevelError {
                text: text.to_owned(),
            }),
        }
    }
}

impl Serialize for LogLevel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|_| de::Error::custom(format_args!("expected {EXPECTED_LOG_LEVEL}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_parses_any_case() {
        assert_eq!("info".parse::<LogLevel>(), Ok(LogLevel::Info));
        assert_eq!("WARN".parse::<LogLevel>(), Ok(LogLevel::Warn));
        assert_eq!("Trace".parse::<LogLevel>(), Ok(LogLevel::Trace));
        assert!("verbose".parse::<LogLevel>().is_err());
    }

    #[test]
    fn log_level_names_round_trip() {
        for level in [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
        ] {
            assert_eq!(level.as_str().parse::<LogLevel>(), Ok(level));
        }
    }
}
