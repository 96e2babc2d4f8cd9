//! Checks that serde cannot express: ranges of limits, listener names, listener options, and
//! rules across listeners (distinct bind addresses, at least one enabled).

use std::net::SocketAddr;

use crate::error::ConfigError;
use crate::listener::ListenerSettings;
use crate::settings::{Limits, Settings};

/// Largest packet size MQTT can encode, the maximum of the remaining length field.
pub const MQTT_MAX_PACKET_SIZE: u64 = 268_435_455;

/// Allowed range of one limit.
struct LimitRange {
    /// Key inside `[limits]`.
    key: &'static str,
    min: u64,
    /// Largest value, or `None` when the type's own maximum is the only bound.
    max: Option<u64>,
    /// Whether the limit is a byte size rather than a count or a number of seconds.
    is_size: bool,
}

impl LimitRange {
    const fn count(key: &'static str, min: u64, max: Option<u64>) -> Self {
        LimitRange {
            key,
            min,
            max,
            is_size: false,
        }
    }

    const fn size(key: &'static str, min: u64, max: Option<u64>) -> Self {
        LimitRange {
            key,
            min,
            max,
            is_size: true,
        }
    }

    /// Describes the accepted values, as in "an integer from 1 to 3600".
    fn expected(&self) -> String {
        let noun = if self.is_size { "a size" } else { "an integer" };
        let unit = match (self.is_size, self.max) {
            (false, _) => "",
            (true, None) if self.min == 1 => " byte",
            (true, _) => " bytes",
        };
        match self.max {
            Some(max) => format!("{noun} from {} to {max}{unit}", self.min),
            None => format!("{noun} of at least {}{unit}", self.min),
        }
    }
}

/// Ranges of every key in `[limits]`. Each key of [`limit_values`] needs an entry here.
const LIMIT_RANGES: [LimitRange; 11] = [
    LimitRange::count("connect_timeout_secs", 1, Some(3600)),
    LimitRange::count("max_inflight_messages", 1, Some(65_535)),
    LimitRange::count("max_queued_messages", 1, None),
    LimitRange::count("max_queued_messages_clean", 1, None),
    LimitRange::size("max_queued_bytes", 1, None),
    LimitRange::size("global_queue_memory", 1, None),
    LimitRange::size("max_packet_size", 1, Some(MQTT_MAX_PACKET_SIZE)),
    LimitRange::count("max_keepalive_secs", 1, Some(65_535)),
    LimitRange::count("max_topic_levels", 1, Some(65_535)),
    // A client id is a UTF-8 string of at most 65,535 bytes, and 0 means no limit.
    LimitRange::count("max_client_id_len", 0, Some(65_535)),
    LimitRange::size("max_retained_memory", 1, None),
];

/// Returns each limit with its key, as an unsigned integer.
fn limit_values(limits: &Limits) -> [(&'static str, u64); 11] {
    // usize is at most 64 bits on every supported target, so the casts below are lossless.
    [
        ("connect_timeout_secs", limits.connect_timeout_secs),
        (
            "max_inflight_messages",
            u64::from(limits.max_inflight_messages),
        ),
        ("max_queued_messages", limits.max_queued_messages as u64),
        (
            "max_queued_messages_clean",
            limits.max_queued_messages_clean as u64,
        ),
        ("max_queued_bytes", limits.max_queued_bytes.bytes()),
        ("global_queue_memory", limits.global_queue_memory.bytes()),
        ("max_packet_size", limits.max_packet_size.bytes()),
        ("max_keepalive_secs", u64::from(limits.max_keepalive_secs)),
        ("max_topic_levels", limits.max_topic_levels as u64),
        ("max_client_id_len", limits.max_client_id_len as u64),
        ("max_retained_memory", limits.max_retained_memory.bytes()),
    ]
}

/// Returns the accepted values of a dotted key such as `limits.max_inflight_messages`, if
/// the key has a range. The loader uses it to replace the `config` crate's type names.
pub(crate) fn expected_for_key(key: &str) -> Option<String> {
    let name = key.strip_prefix("limits.")?;
    LIMIT_RANGES
        .iter()
        .find(|range| range.key == name)
        .map(LimitRange::expected)
}

/// Checks the settings after deserialization and returns the first problem found.
pub(crate) fn validate(settings: &Settings) -> Result<(), ConfigError> {
    if settings.data_dir.as_os_str().is_empty() {
        return Err(ConfigError::invalid("data_dir", "\"\"", "a directory path"));
    }
    validate_limits(&settings.limits)?;
    let persistence = &settings.persistence;
    if !(10..=60_000).contains(&persistence.relaxed_interval_ms) {
        return Err(ConfigError::invalid(
            "persistence.relaxed_interval_ms",
            persistence.relaxed_interval_ms.to_string(),
            "a number of milliseconds from 10 to 60000",
        ));
    }
    if persistence.max_queued_messages == 0 {
        return Err(ConfigError::invalid("persistence.max_queued_messages", "0", "at least 1 message"));
    }
    if persistence.max_queued_bytes.0 == 0 {
        return Err(ConfigError::invalid("persistence.max_queued_bytes", "0", "at least 1 byte, like \"1GiB\""));
    }
    for (name, listener) in &settings.listeners {
        validate_listener(name, listener)?;
    }
    validate_bind_addresses(settings)?;
    if !settings.listeners.values().any(|listener| listener.enabled) {
        return Err(ConfigError::NoListener);
    }
    Ok(())
}

fn validate_limits(limits: &Limits) -> Result<(), ConfigError> {
    for (key, value) in limit_values(limits) {
        let range = LIMIT_RANGES
            .iter()
            .find(|range| range.key == key)
            .expect("every limit has a range");
        let too_large = range.max.is_some_and(|max| value > max);
        if value < range.min || too_large {
            return Err(ConfigError::invalid(
                format!("limits.{key}"),
                value.to_string(),
                range.expected(),
            ));
        }
    }
    Ok(())
}

fn validate_listener(name: &str, listener: &ListenerSettings) -> Result<(), ConfigError> {
    let name_is_valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !name_is_valid {
        return Err(ConfigError::InvalidListenerName {
            name: name.to_owned(),
            origin: None,
        });
    }

    let key = |field: &str| format!("listeners.{name}.{field}");
    if listener.allow.is_empty() {
        return Err(ConfigError::invalid(
            key("allow"),
            "[]",
            "at least one address range; set enabled = false to turn the listener off",
        ));
    }
    if !(1..=300).contains(&listener.handshake_timeout_secs) {
        return Err(ConfigError::invalid(
            key("handshake_timeout_secs"),
            listener.handshake_timeout_secs.to_string(),
            "a number of seconds from 1 to 300",
        ));
    }
    // rustls accepts 32 to 16384 + 5 (the record header) bytes.
    if let Some(size) = listener.max_fragment_size {
        if !(32..=16389).contains(&size) {
            return Err(ConfigError::invalid(
                key("max_fragment_size"),
                size.to_string(),
                "a TLS record size in bytes from 32 to 16389, or no value for the default",
            ));
        }
    }
    if !listener.path.starts_with('/') {
        return Err(ConfigError::invalid(
            key("path"),
            format!("{:?}", listener.path),
            "an HTTP path starting with /, like /mqtt",
        ));
    }
    let files = [
        ("cert_file", &listener.cert_file),
        ("key_file", &listener.key_file),
        ("ca_file", &listener.ca_file),
        ("crl_file", &listener.crl_file),
    ];
    for (field, file) in files {
        if file
            .as_deref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return Err(ConfigError::invalid(key(field), "\"\"", "a file path"));
        }
    }
    Ok(())
}

/// Rejects two enabled listeners that would bind the same port on overlapping addresses:
/// the same address, or the wildcard address and another of the same family. Port 0 is
/// skipped because the system picks a distinct port for each such listener.
fn validate_bind_addresses(settings: &Settings) -> Result<(), ConfigError> {
    let enabled: Vec<(&String, &ListenerSettings)> = settings
        .listeners
        .iter()
        .filter(|(_, listener)| listener.enabled && listener.bind.port() != 0)
        .collect();
    for (index, (name, listener)) in enabled.iter().enumerate() {
        for (earlier_name, earlier) in &enabled[..index] {
            if binds_overlap(earlier.bind, listener.bind) {
                return Err(ConfigError::invalid(
                    format!("listeners.{name}.bind"),
                    format!("\"{}\"", listener.bind),
                    format!(
                        "an address that does not overlap {} of listener {earlier_name}",
                        earlier.bind
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.is_ipv4() != b.is_ipv4() {
        return false;
    }
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_has_range() {
        let limits: Limits = toml::from_str::<Settings>(crate::default_toml())
            .expect("defaults deserialize")
            .limits;
        for (key, _) in limit_values(&limits) {
            assert!(
                LIMIT_RANGES.iter().any(|range| range.key == key),
                "{key} has a range"
            );
        }
    }

    #[test]
    fn expected_for_key_describes_range() {
        assert_eq!(
            expected_for_key("limits.connect_timeout_secs").as_deref(),
            Some("an integer from 1 to 3600")
        );
        assert_eq!(
            expected_for_key("limits.max_queued_bytes").as_deref(),
            Some("a size of at least 1 byte")
        );
        assert_eq!(expected_for_key("data_dir"), None);
    }

    #[test]
    fn binds_overlap_cases() {
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(binds_overlap(addr("0.0.0.0:1883"), addr("0.0.0.0:1883")));
        assert!(binds_overlap(addr("0.0.0.0:1883"), addr("127.0.0.1:1883")));
        assert!(binds_overlap(addr("[::1]:1883"), addr("[::]:1883")));
        assert!(!binds_overlap(
            addr("127.0.0.1:1883"),
            addr("127.0.0.2:1883")
        ));
        assert!(!binds_overlap(addr("0.0.0.0:1883"), addr("0.0.0.0:8883")));
        assert!(!binds_overlap(addr("0.0.0.0:1883"), addr("[::]:1883")));
    }
}
