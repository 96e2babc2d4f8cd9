//! Errors of the certificate crate. Each message names the file or value involved and the fix.

use std::io;
use std::path::PathBuf;

/// Result type of every fallible function in this crate.
pub type Result<T, E = CertError> = std::result::Result<T, E>;

/// A failure to create, read or load a certificate, key or CRL.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file or directory could not be read, written or created.
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },

    /// `init_ca` would replace an existing CA file.
    #[error(
        "{path} already exists; run `lpiotia-mqtt certs init --force` to replace the CA \
         (every certificate it signed stops working)"
    )]
    AlreadyExists { path: PathBuf },

    /// The data directory has no CA certificate.
    #[error("no CA certificate at {path}; run `lpiotia-mqtt certs init` first")]
    NoCa { path: PathBuf },

    /// A PEM or DER file does not contain what was expected.
    #[error("invalid {content} in {path}: {reason}")]
    Invalid { content: &'static str, path: PathBuf, reason: String },

    /// The CA key is encrypted and no passphrase was given.
    #[error("the CA key {path} is encrypted; give its passphrase (--passphrase-file FILE, or type it at the prompt)")]
    PassphraseRequired { path: PathBuf },

    /// The passphrase does not decrypt the CA key.
    #[error("wrong passphrase for the CA key {path}")]
    WrongPassphrase { path: PathBuf },

    /// The CA key file does not hold the key of the CA certificate.
    #[error("the CA key {key} does not belong to the CA certificate {cert}; restore the matching pair")]
    KeyMismatch { key: PathBuf, cert: PathBuf },

    /// A TLS private key is encrypted; the broker cannot prompt for a passphrase at start.
    #[error(
        "the private key {path} is encrypted; the broker needs an unencrypted PEM key \
         (PKCS#8, SEC1 or PKCS#1) readable only by its user (mode 0600)"
    )]
    EncryptedKey { path: PathBuf },

    /// A client name outside the allowed characters or length.
    #[error("invalid client name {name:?}: use 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-'")]
    InvalidClientName { name: String },

    /// A server name that is not a valid DNS name.
    #[error("invalid DNS name {name:?} for the server certificate: {reason}")]
    InvalidDnsName { name: String, reason: String },

    /// A server certificate request without any name or address.
    #[error("the server certificate needs at least one DNS name or IP address")]
    NoServerNames,

    /// A validity of zero days.
    #[error("invalid validity of {days} days: use at least 1 day")]
    InvalidValidity { days: u32 },

    /// `issue_client` would replace a client certificate that still works.
    #[error(
        "client certificate {path} already exists (serial {serial}, valid until {not_after}); \
         revoke it first with `lpiotia-mqtt certs revoke {name}`, or choose another name"
    )]
    ClientExists { name: String, path: PathBuf, serial: String, not_after: String },

    /// `revoke` was given a client that has no certificate.
    #[error("no client certificate {path}; `lpiotia-mqtt certs list` shows the issued ones")]
    ClientNotFound { path: PathBuf },

    /// `revoke` was given a client whose serial is already in the CRL.
    #[error("client certificate {path} (serial {serial}) is already revoked")]
    AlreadyRevoked { path: PathBuf, serial: String },

    /// A certificate or CRL was issued by another CA than the one in the data directory.
    #[error("{path} was not issued by the CA {ca}; it cannot be used with this CA")]
    ForeignIssuer { path: PathBuf, ca: PathBuf },

    /// Key generation or signing failed inside rcgen or the RSA key generator.
    #[error("cannot {action}: {reason}")]
    Crypto { action: String, reason: String },

    /// The TLS settings cannot be turned into a rustls server configuration.
    #[error("invalid TLS setting: {0}")]
    Tls(String),
}

impl CertError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CertError::Io { action, path: path.into(), source }
    }

    pub(crate) fn invalid(content: &'static str, path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        CertError::Invalid { content, path: path.into(), reason: reason.to_string() }
    }

    pub(crate) fn crypto(action: impl Into<String>, reason: impl ToString) -> Self {
        CertError::Crypto { action: action.into(), reason: reason.to_string() }
    }
}
