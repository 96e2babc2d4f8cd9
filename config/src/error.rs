//! Errors of loading and validating settings. Each names the key, the value and what was
//! expected, and where the layers are known, the file or environment variable that set it.

use std::fmt;
use std::path::PathBuf;

/// Failure to load or validate the settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("failed to read config file {}: {source}", path.display())]
    ReadFile {
        /// Path of the config file.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The config file is not valid TOML.
    #[error("invalid TOML in {origin}: {message}")]
    Parse {
        /// Path of the config file.
        origin: String,
        /// Parser message, with the line and column.
        message: String,
    },

    /// A key that no setting has, usually a typo.
    #[error("unknown key {key}: expected {expected}{}", Origin(origin))]
    UnknownKey {
        /// Dotted path of the key, such as `listeners.lan.bnid`.
        key: String,
        /// The keys allowed at that place.
        expected: String,
        /// File or environment variable that set the key, when known.
        origin: Option<String>,
    },

    /// A required key without a value, such as `bind` of a listener that is not in the
    /// defaults.
    #[error("missing key {key}: {hint}")]
    MissingKey {
        /// Dotted path of the key.
        key: String,
        /// Instruction to set the key.
        hint: String,
    },

    /// A value of the wrong type, format or range.
    #[error(
        "invalid value {value} for {key}: expected {expected}{}",
        Origin(origin)
    )]
    InvalidValue {
        /// Dotted path of the key, with `[index]` for a list entry.
        key: String,
        /// The value as written, strings quoted.
        value: String,
        /// The accepted values.
        expected: String,
        /// File or environment variable that set the value, when known.
        origin: Option<String>,
    },

    /// A listener section whose name is not made of a-z, 0-9, `_` and `-`.
    #[error(
        "invalid listener name {name:?} in [listeners.{name}]: expected a name made of a-z, 0-9, _ and -{}",
        Origin(origin)
    )]
    InvalidListenerName {
        /// The name as written.
        name: String,
        /// File or environment variable that set the listener, when known.
        origin: Option<String>,
    },

    /// No listener is enabled, so the broker would accept no client.
    #[error("no listener is enabled: set enabled = true in at least one [listeners.NAME] section")]
    NoListener,

    /// Any other failure reported by the `config` crate.
    #[error("invalid configuration: {0}")]
    Other(String),
}

impl ConfigError {
    /// Builds an [`ConfigError::InvalidValue`] whose origin the loader fills in later.
    pub(crate) fn invalid(
        key: impl Into<String>,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        ConfigError::InvalidValue {
            key: key.into(),
            value: value.into(),
            expected: expected.into(),
            origin: None,
        }
    }

    /// Returns the dotted key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::MissingKey { key, .. }
            | ConfigError::InvalidValue { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Writes ` (set in ORIGIN)` after a message when the origin is known.
struct Origin<'a>(&'a Option<String>);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(origin) => write!(f, " (set in {origin})"),
            None => Ok(()),
        }
    }
}
