//! First start: a CA and a server certificate made without any question, so that the TLS
//! listeners work at once.

use std::path::{Path, PathBuf};

use crate::ca::{self, CaOptions};
use crate::error::Result;
use crate::files;
use crate::issue::{self, DEFAULT_SERVER_DAYS};
use crate::keys::KeyType;
use crate::names;

/// Files and CA fingerprint created by [`bootstrap`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapReport {
    /// The new CA certificate, which clients install to trust the broker.
    pub ca_cert: PathBuf,
    /// The new CA key (unencrypted, mode 0600).
    pub ca_key: PathBuf,
    /// SHA-256 fingerprint of the CA certificate, as `AB:CD:...`.
    pub ca_fingerprint_sha256: String,
    /// The new server certificate, or `None` if `server.crt` and `server.key` already existed
    /// and were kept.
    pub server_cert: Option<PathBuf>,
    /// Subject alternative names of the new server certificate, as `DNS:name` and `IP:address`.
    pub server_names: Vec<String>,
}

/// Creates an ECDSA P-256 CA without a passphrase and a server certificate for
/// [`names::default_server_names`] when `data_dir` has no `ca.crt`. Returns `None` when the
/// CA already exists. A `server.crt` and `server.key` pair already present (a certificate from
/// another CA, for instance) is kept; if only one of them exists, both are replaced.
pub fn bootstrap(data_dir: &Path) -> Result<Option<BootstrapReport>> {
    let ca_cert = files::ca_cert_path(data_dir);
    if ca_cert.exists() {
        return Ok(None);
    }
    files::create_dir(data_dir)?;
    let ca_info = ca::init_ca(data_dir, &CaOptions::default(), false)?;

    let keep_server = files::server_cert_path(data_dir).exists() && files::server_key_path(data_dir).exists();
    let (server_cert, server_names) = if keep_server {
        (None, Vec::new())
    } else {
        let (dns_names, ips) = names::default_server_names();
        let info = issue::issue_server(data_dir, &dns_names, &ips, KeyType::EcdsaP256, None, DEFAULT_SERVER_DAYS)?;
        (Some(info.path), info.sans)
    };
    Ok(Some(BootstrapReport {
        ca_cert,
        ca_key: files::ca_key_path(data_dir),
        ca_fingerprint_sha256: ca_info.fingerprint_sha256,
        server_cert,
        server_names,
    }))
}
