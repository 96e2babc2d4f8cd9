//! Layout of the data directory and the file operations on it.
//!
//! Every file is written to a temporary file in the same directory and renamed over the
//! target, so a reader sees the old or the new content, never a partial one. Private keys and
//! PKCS#12 files get mode 0600, certificates and the CRL 0644, new directories 0700.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{CertError, Result};

/// CA certificate, the trust anchor that sensors and the Brain install.
pub const CA_CERT_FILE: &str = "ca.crt";
/// CA private key, PKCS#8 PEM, encrypted when the CA was made with a passphrase.
pub const CA_KEY_FILE: &str = "ca.key";
/// Server certificate of the TLS and WebSocket-over-TLS listeners.
pub const SERVER_CERT_FILE: &str = "server.crt";
/// Private key of the server certificate, unencrypted PKCS#8 PEM.
pub const SERVER_KEY_FILE: &str = "server.key";
/// Certificate revocation list signed by the CA.
pub const CRL_FILE: &str = "crl.pem";
/// Directory holding one subdirectory per client certificate.
pub const CLIENTS_DIR: &str = "clients";

/// Mode of files holding a secret: private keys and PKCS#12 bundles.
pub(crate) const SECRET_MODE: u32 = 0o600;
/// Mode of public files: certificates and the CRL.
pub(crate) const PUBLIC_MODE: u32 = 0o644;

/// Returns the path of the CA certificate in `data_dir`.
pub fn ca_cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CA_CERT_FILE)
}

/// Returns the path of the CA private key in `data_dir`.
pub fn ca_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CA_KEY_FILE)
}

/// Returns the path of the server certificate in `data_dir`.
pub fn server_cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SERVER_CERT_FILE)
}

/// Returns the path of the server private key in `data_dir`.
pub fn server_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SERVER_KEY_FILE)
}

/// Returns the path of the CRL in `data_dir`.
pub fn crl_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CRL_FILE)
}

/// Returns the directory of the client certificate `name`: `clients/NAME`.
pub fn client_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(CLIENTS_DIR).join(name)
}

/// Returns the certificate path of the client `name`: `clients/NAME/NAME.crt`.
pub fn client_cert_path(data_dir: &Path, name: &str) -> PathBuf {
    client_dir(data_dir, name).join(format!("{name}.crt"))
}

/// Creates `dir` and its missing parents, with mode 0700 for the ones it creates.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|error| CertError::io("create directory", dir, error))
}

/// Writes `contents` to `path` atomically with the given Unix mode.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    create_dir(dir)?;
    let write_error = |error| CertError::io("write", path, error);
    let mut temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(write_error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file().set_permissions(fs::Permissions::from_mode(mode)).map_err(write_error)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    temp.write_all(contents).map_err(write_error)?;
    temp.as_file().sync_all().map_err(write_error)?;
    temp.persist(path).map_err(|error| write_error(error.error))?;
    Ok(())
}

/// Reads the whole file at `path`.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|error| CertError::io("read", path, error))
}

/// Returns the DER of the first certificate in `bytes`, which hold PEM or DER.
pub(crate) fn certificate_der(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    if !looks_like_pem(bytes) {
        return Ok(bytes.to_vec());
    }
    let blocks = pem::parse_many(bytes).map_err(|error| CertError::invalid("PEM", path, error))?;
    blocks
        .into_iter()
        .find(|block| block.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .ok_or_else(|| CertError::invalid("certificate", path, "no CERTIFICATE block in the PEM file"))
}

/// Reads the first certificate of the PEM or DER file at `path`.
pub(crate) fn read_certificate(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_file(path)?;
    certificate_der(path, &bytes)
}

/// Encodes DER as one PEM block with Unix line endings.
pub(crate) fn to_pem(tag: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der), config)
}

pub(crate) fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|window| window == b"-----BEGIN ")
}
