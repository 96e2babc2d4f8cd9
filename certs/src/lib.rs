//! Certificates of the lpiotia-mqtt broker, made without running OpenSSL by hand.
//!
//! The broker keeps its own CA in the data directory and issues from it the server
//! certificate of the TLS listeners and one certificate per client (sensor or Brain). The
//! layout of the data directory is fixed:
//!
//! ```text
//! ca.crt  ca.key  server.crt  server.key  crl.pem
//! clients/NAME/NAME.crt  NAME.key  ca.crt  NAME.p12
//! ```
//!
//! Private keys and PKCS#12 files are written with mode 0600, every file atomically. The CRL
//! is the record of revocations. [`server_tls_config`] turns these files (or any others)
//! into a rustls server configuration that checks client certificates against the CA and
//! the CRL.
//!
//! Signing and TLS use *ring*; RSA keys are generated with the RustCrypto `rsa` crate
//! because *ring* cannot generate them.

#![forbid(unsafe_code)]

mod bootstrap;
mod ca;
mod crl;
mod error;
mod expiry;
mod files;
mod inspect;
mod issue;
mod keys;
mod names;
mod pkcs12;
mod tls;

#[cfg(test)]
mod tests;

pub use bootstrap::{bootstrap, BootstrapReport};
pub use ca::{ca_key_is_encrypted, check_ca_key, default_ca_common_name, init_ca, CaOptions};
pub use crl::{crl_path, revoke};
pub use error::{CertError, Result};
pub use expiry::{expiry_warning, expiry_warnings};
pub use files::{
    ca_cert_path, ca_key_path, client_cert_path, client_dir, server_cert_path, server_key_path, CA_CERT_FILE,
    CA_KEY_FILE, CLIENTS_DIR, CRL_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE,
};
pub use inspect::{check_revoked, fingerprint_sha1, fingerprint_sha256, list, show, CertInfo, CertKind};
pub use issue::{
    ensure_client_replaceable, issue_client, issue_client_with, issue_server, ClientBundle, ClientOptions,
    DEFAULT_CLIENT_DAYS, DEFAULT_SERVER_DAYS,
};
pub use keys::KeyType;
pub use names::{default_server_names, host_name, validate_client_name, MAX_CLIENT_NAME_LEN};
pub use pkcs12::Pkcs12Encryption;
pub use tls::{crypto_provider, server_tls_config, TlsOptions, MAX_FRAGMENT_SIZE_RANGE};
