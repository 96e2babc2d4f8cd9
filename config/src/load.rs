//! Layering of the sources (embedded defaults, config file, environment) with the `config`
//! crate, and translation of its errors into [`ConfigError`]s that name key, value and
//! origin.

use std::collections::BTreeMap;
use std::path::Path;

use config::{Config, Environment, File, FileFormat, Value, ValueKind};

use crate::error::ConfigError;
use crate::settings::Settings;
use crate::validate::{expected_for_key, validate};

/// Prefix of the environment variables that hold settings, in lowercase. Variables are
/// matched without regard to case, as the `config` crate does.
const ENV_PREFIX: &str = "lpiotia_mqtt__";

/// Separator of nested keys in environment variable names.
const ENV_SEPARATOR: &str = "__";

/// Placeholder for a rejected value that could not be found again in the merged sources.
const VALUE_NOT_FOUND: &str = "(value not found)";

/// Keys whose environment values are comma-separated lists.
const LIST_KEYS: [&str; 1] = ["allow"];

/// Loads the settings from the embedded defaults, then `config_file` if given, then the
/// variables of `env` whose names start with `LPIOTIA_MQTT__`, and validates the result.
pub fn load_from(
    config_file: Option<&Path>,
    env: &[(String, String)],
) -> Result<Settings, ConfigError> {
    let text = match config_file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|source| {
            ConfigError::ReadFile {
                path: path.to_owned(),
                source,
            }
        })?),
        None => None,
    };
    load_from_str(config_file.zip(text.as_deref()), env)
}

/// Loads the settings as [`load_from`] does, from the text of a config file that was
/// already read. The path only names the file in errors.
pub fn load_from_str(
    config_file: Option<(&Path, &str)>,
    env: &[(String, String)],
) -> Result<Settings, ConfigError> {
    let file_table = match config_file {
        Some((path, text)) => Some(parse_config_file(path, text)?),
        None => None,
    };
    let origins = Origins::new(config_file.map(|(path, _)| path), file_table.as_ref(), env);

    let mut builder =
        Config::builder().add_source(File::from_str(crate::default_toml(), FileFormat::Toml));
    if let Some((_, text)) = config_file {
        builder = builder.add_source(File::from_str(text, FileFormat::Toml));
    }
    let config = builder
        .add_source(environment_source(env))
        .build()
        .map_err(|error| translate(error, None, &origins))?;

    let settings: Settings = config
        .clone()
        .try_deserialize()
        .map_err(|error| translate(error, Some(&config), &origins))?;
    validate(&settings).map_err(|error| origins.locate(error, Some(&config)))?;
    Ok(settings)
}

/// Checks the TOML syntax of the config file, so that a syntax error names the file.
fn parse_config_file(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|error| ConfigError::Parse {
            origin: path.display().to_string(),
            message: error.to_string().trim_end().to_owned(),
        })
}

/// Builds the environment source: `LPIOTIA_MQTT__LIMITS__MAX_INFLIGHT_MESSAGES=50` sets
/// `limits.max_inflight_messages`. Numbers and booleans are parsed, and the keys in
/// [`LIST_KEYS`] are split at commas.
fn environment_source(env: &[(String, String)]) -> Environment {
    let variables: config::Map<String, String> = env
        .iter()
        .filter(|(name, _)| env_key(name).is_some())
        .cloned()
        .collect();
    let list_keys: Vec<String> = env
        .iter()
        .filter_map(|(name, _)| env_key(name))
        .filter(|key| {
            LIST_KEYS
                .iter()
                .any(|list| key.rsplit('.').next() == Some(list))
        })
        .collect();

    let mut environment = Environment::with_prefix("LPIOTIA_MQTT")
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .try_parsing(true)
        .source(Some(variables));
    // Without list keys the `config` crate would split every value at commas, so the
    // separator is set only when a list key is present.
    if !list_keys.is_empty() {
        environment = environment.list_separator(",");
        for key in list_keys {
            environment = environment.with_list_parse_key(&key);
        }
    }
    environment
}

/// Returns the dotted key that an environment variable sets, or `None` if the variable is
/// not a setting. `LPIOTIA_MQTT_ADMIN_PASSWORD` (one underscore) is not one.
fn env_key(name: &str) -> Option<String> {
    let lowercase = name.to_ascii_lowercase();
    let key = lowercase.strip_prefix(ENV_PREFIX)?;
    if key.is_empty() {
        return None;
    }
    Some(key.replace(ENV_SEPARATOR, "."))
}

/// Converts an error of the `config` crate into a [`ConfigError`] that names the key and
/// the value, looked up in `config` when it is available.
fn translate(
    error: config::ConfigError,
    config: Option<&Config>,
    origins: &Origins,
) -> ConfigError {
    let translated = match error {
        config::ConfigError::NotFound(key) => ConfigError::MissingKey {
            hint: format!(
                "set it in the config file or as environment variable {}",
                env_name(&key)
            ),
            key,
        },
        config::ConfigError::Type {
            key: Some(key),
            expected,
            unexpected,
            ..
        } => {
            let expected = expected_for_key(&key).unwrap_or_else(|| describe_expected(expected));
            ConfigError::invalid(key, unexpected.to_string(), expected)
        }
        config::ConfigError::At {
            error,
            key: Some(key),
            ..
        } => match *error {
            config::ConfigError::Message(message) => from_message(&message, Some(key)),
            other => ConfigError::Other(format!("{other} at {key}")),
        },
        config::ConfigError::Message(message) => from_message(&message, None),
        other => ConfigError::Other(other.to_string()),
    };
    origins.locate(translated, config)
}

/// Interprets a serde message: an unknown field of a `deny_unknown_fields` struct, or a
/// value that a deserializer of this crate or serde rejected with "expected ...".
fn from_message(message: &str, key: Option<String>) -> ConfigError {
    if let Some((field, expected)) = parse_unknown_field(message) {
        let key = match key {
            Some(parent) => format!("{parent}.{field}"),
            None => field.to_owned(),
        };
        return ConfigError::UnknownKey {
            key,
            expected: expected.to_owned(),
            origin: None,
        };
    }
    match (key, parse_expected(message)) {
        (Some(key), Some(expected)) => {
            let expected = expected_for_key(&key).unwrap_or_else(|| describe_expected(expected));
            ConfigError::invalid(key, VALUE_NOT_FOUND, expected)
        }
        (Some(key), None) => ConfigError::Other(format!("{message} at {key}")),
        (None, _) => ConfigError::Other(message.to_owned()),
    }
}

/// Splits serde's "unknown field `name`, expected one of `a`, `b`" into the name and the
/// list of expected fields.
fn parse_unknown_field(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .strip_prefix(", expected ")
        .unwrap_or("no key at this place");
    Some((field, expected))
}

/// Returns the "expected ..." part of a deserializer message: the whole message as written
/// by this crate's deserializers, or the tail of serde's "invalid type: X, expected Y".
fn parse_expected(message: &str) -> Option<&str> {
    if let Some(expected) = message.strip_prefix("expected ") {
        return Some(expected);
    }
    let is_serde_message = message.starts_with("invalid type: ")
        || message.starts_with("invalid value: ")
        || message.starts_with("invalid length ");
    if is_serde_message {
        return message
            .split_once(", expected ")
            .map(|(_, expected)| expected);
    }
    None
}

/// Replaces serde's names of Rust types ("struct Limits", "a map") by the TOML term.
fn describe_expected(expected: &str) -> String {
    if expected.starts_with("struct ") || expected == "a map" {
        "a table".to_owned()
    } else {
        expected.to_owned()
    }
}

/// Returns the environment variable that sets a dotted key.
fn env_name(key: &str) -> String {
    format!(
        "LPIOTIA_MQTT__{}",
        base_key(key)
            .replace('.', ENV_SEPARATOR)
            .to_ascii_uppercase()
    )
}

/// Strips list indices: `listeners.lan.allow[1]` becomes `listeners.lan.allow`.
fn base_key(key: &str) -> &str {
    key.split_once('[').map_or(key, |(base, _)| base)
}

/// Finds the value at a dotted key with optional list indices, such as
/// `listeners.lan.allow[1]`.
fn lookup<'c>(root: &'c Value, key: &str) -> Option<&'c Value> {
    let mut value = root;
    for segment in key.split('.') {
        let mut parts = segment.split('[');
        let name = parts.next()?;
        value = match &value.kind {
            ValueKind::Table(table) => table.get(name)?,
            _ => return None,
        };
        for index in parts {
            let index: usize = index.strip_suffix(']')?.parse().ok()?;
            value = match &value.kind {
                ValueKind::Array(items) => items.get(index)?,
                _ => return None,
            };
        }
    }
    Some(value)
}

/// Writes a value as the user wrote it: strings quoted, lists and tables in TOML style.
fn format_value(value: &Value) -> String {
    match &value.kind {
        ValueKind::Nil => "nothing".to_owned(),
        ValueKind::String(text) => format!("{text:?}"),
        ValueKind::Array(items) => {
            let items: Vec<String> = items.iter().map(format_value).collect();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Table(table) => {
            let entries: Vec<String> = table
                .iter()
                .map(|(key, value)| format!("{key} = {}", format_value(value)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
        _ => value.to_string(),
    }
}

/// Records which layer set each key, to name it in errors.
struct Origins<'a> {
    config_file: Option<&'a Path>,
    file_table: Option<&'a toml::Table>,
    /// Dotted key to the name of the environment variable that set it.
    env_names: BTreeMap<String, String>,
}

impl<'a> Origins<'a> {
    fn new(
        config_file: Option<&'a Path>,
        file_table: Option<&'a toml::Table>,
        env: &[(String, String)],
    ) -> Self {
        let env_names = env
            .iter()
            .filter_map(|(name, _)| Some((env_key(name)?, name.clone())))
            .collect();
        Origins {
            config_file,
            file_table,
            env_names,
        }
    }

    /// Returns the layer that set `key`: the environment variable, or the config file.
    /// Keys set only by the embedded defaults have no origin.
    fn origin_of(&self, key: &str) -> Option<String> {
        let key = base_key(key);
        if let Some(name) = self.env_names.get(key) {
            return Some(format!("environment variable {name}"));
        }
        let table = self.file_table?;
        let mut segments = key.split('.');
        let first = segments.next()?;
        let mut value = table.get(first)?;
        for segment in segments {
            value = value.as_table()?.get(segment)?;
        }
        self.config_file.map(|path| path.display().to_string())
    }

    /// Fills in the origin of an error, and the value as written when `config` holds it.
    fn locate(&self, error: ConfigError, config: Option<&Config>) -> ConfigError {
        match error {
            ConfigError::InvalidValue {
                key,
                value,
                expected,
                origin,
            } => {
                let written = config
                    .and_then(|config| lookup(&config.cache, &key))
                    .map(format_value);
                ConfigError::InvalidValue {
                    value: written.unwrap_or(value),
                    origin: origin.or_else(|| self.origin_of(&key)),
                    key,
                    expected,
                }
            }
            ConfigError::UnknownKey {
                key,
                expected,
                origin,
            } => ConfigError::UnknownKey {
                origin: origin.or_else(|| self.origin_of(&key)),
                key,
                expected,
            },
            ConfigError::InvalidListenerName { name, origin } => ConfigError::InvalidListenerName {
                origin: origin.or_else(|| self.origin_of(&format!("listeners.{name}"))),
                name,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
