//! Settings of the lpiotia-mqtt broker.
//!
//! Settings come from three layers, each overriding the one before:
//!
//! 1. the embedded defaults, `config/defaults.toml` (see [`default_toml`]);
//! 2. a TOML config file: the one passed to [`load`], or [`DEFAULT_CONFIG_PATH`] if none is
//!    passed and that file exists;
//! 3. environment variables named `LPIOTIA_MQTT__SECTION__KEY`, such as
//!    `LPIOTIA_MQTT__LIMITS__MAX_INFLIGHT_MESSAGES=50` or
//!    `LPIOTIA_MQTT__LISTENERS__LAN__ALLOW=10.0.0.0/8,127.0.0.1` (lists are comma-separated).
//!    Only names starting with `LPIOTIA_MQTT__` (two underscores) are read, so
//!    `LPIOTIA_MQTT_ADMIN_PASSWORD` is not a setting.
//!
//! The merged result is deserialized into [`Settings`] and validated. An unknown key, a value
//! of the wrong type or format, and a value out of range are errors that name the key, the
//! value, what was expected and, where known, the file or variable that set it:
//!
//! ```text
//! invalid value "abc" for listeners.lan.bind: expected an address like 0.0.0.0:1883 (set in environment variable LPIOTIA_MQTT__LISTENERS__LAN__BIND)
//! ```
#![forbid(unsafe_code)]

use std::path::Path;

mod bytesize;
mod error;
mod listener;
mod load;
mod settings;
mod validate;

pub use crate::bytesize::{ByteSize, ParseByteSizeError};
pub use crate::error::ConfigError;
pub use crate::listener::{ListenerKind, ListenerSettings, ParseListenerKindError};
pub use crate::load::{load_from, load_from_str};
pub use crate::settings::{Limits, LogLevel, ParseLogLevelError, Persistence, PersistenceMode, Settings};
pub use crate::validate::MQTT_MAX_PACKET_SIZE;

/// Config file read by [`load`] when no file is passed and this one exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/lpiotia-mqtt/config.toml";

/// Embedded defaults, a commented TOML file that is also a template for a config file.
const DEFAULT_TOML: &str = include_str!("../defaults.toml");

/// Returns the embedded defaults as commented TOML.
pub fn default_toml() -> &'static str {
    DEFAULT_TOML
}

/// Loads the settings from the defaults, `config_file` (or [`DEFAULT_CONFIG_PATH`] when
/// `config_file` is `None` and that file exists) and the process environment.
///
/// A `config_file` that is given but cannot be read is an error.
pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
    let default_path = Path::new(DEFAULT_CONFIG_PATH);
    let config_file = match config_file {
        Some(path) => Some(path),
        None if default_path.is_file() => Some(default_path),
        None => None,
    };
    load_from(config_file, &settings_from_environment()?)
}

/// Collects the process environment variables whose names start with `LPIOTIA_MQTT__`.
/// Other variables are not copied, so secrets such as `LPIOTIA_MQTT_ADMIN_PASSWORD` stay out
/// of the settings and their errors.
fn settings_from_environment() -> Result<Vec<(String, String)>, ConfigError> {
    let mut variables = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if !name.to_ascii_lowercase().starts_with("lpiotia_mqtt__") {
            continue;
        }
        let value = value
            .into_string()
            .map_err(|value| ConfigError::InvalidValue {
                key: name.to_owned(),
                value: format!("{:?}", value.to_string_lossy()),
                expected: "UTF-8 text".to_owned(),
                origin: Some(format!("environment variable {name}")),
            })?;
        variables.push((name.to_owned(), value));
    }
    Ok(variables)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test that changes the process environment, because `load` reads it.
    #[test]
    fn load_reads_process_environment() {
        std::env::set_var("LPIOTIA_MQTT__LIMITS__MAX_TOPIC_LEVELS", "7");
        std::env::set_var("LPIOTIA_MQTT_ADMIN_PASSWORD", "not-a-setting");
        let result = load(None);
        std::env::remove_var("LPIOTIA_MQTT__LIMITS__MAX_TOPIC_LEVELS");
        std::env::remove_var("LPIOTIA_MQTT_ADMIN_PASSWORD");

        let settings = result.expect("settings load from the process environment");
        assert_eq!(settings.limits.max_topic_levels, 7);
    }
}
