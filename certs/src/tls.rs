//! rustls server configuration for the TLS and WebSocket-over-TLS listeners.
//!
//! Protocols are TLS 1.3 and TLS 1.2, because ESP8266 boards (BearSSL) speak TLS 1.2 only.
//! Cipher suites: the three TLS 1.3 suites, and for TLS 1.2 ECDHE with ECDSA or RSA and
//! AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305. The crypto provider is rustls' *ring*
//! provider, passed explicitly so that no process-wide default is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{ring as ring_provider, CryptoProvider};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::error::{CertError, Result};
use crate::{files, keys};

/// Smallest and largest `max_fragment_size` that rustls accepts, in bytes including the
/// 5-byte record header (rustls 0.23 `MessageFragmenter`).
pub const MAX_FRAGMENT_SIZE_RANGE: std::ops::RangeInclusive<usize> = 32..=16_389;

/// Cipher suites offered, in order of preference.
static CIPHER_SUITES: &[SupportedCipherSuite] = &[
    ring_provider::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ring_provider::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ring_provider::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// Files and settings of one TLS listener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Server certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// Unencrypted server private key, PEM: PKCS#8, SEC1 or PKCS#1.
    pub key_file: PathBuf,
    /// CA certificates (PEM, several per file allowed) that client certificates must chain to.
    pub client_ca_files: Vec<PathBuf>,
    /// CRL in PEM; skipped when the file does not exist.
    pub crl_file: Option<PathBuf>,
    /// Whether a client without a valid certificate is rejected during the handshake. When
    /// false, a client may send no certificate, but one that it sends must still verify.
    pub require_client_cert: bool,
    /// Largest TLS record the server sends, in bytes including the 5-byte header; `None` for
    /// the TLS maximum of 16 KiB. For clients with small receive buffers, because rustls does
    /// not negotiate the max_fragment_length extension (RFC 6066).
    pub max_fragment_size: Option<usize>,
    /// ALPN protocols offered, in order of preference; empty for no ALPN.
    pub alpn: Vec<Vec<u8>>,
}

impl TlsOptions {
    /// Options for the files of `data_dir`: `server.crt`, `server.key`, client certificates
    /// from `ca.crt` required, and `crl.pem`.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        TlsOptions {
            cert_file: files::server_cert_path(data_dir),
            key_file: files::server_key_path(data_dir),
            client_ca_files: vec![files::ca_cert_path(data_dir)],
            crl_file: Some(files::crl_path(data_dir)),
            require_client_cert: true,
            max_fragment_size: None,
            alpn: Vec::new(),
        }
    }
}

/// Returns the *ring* crypto provider limited to the cipher suites of this module.
// NOTE: rustls 0.23.48 deprecates the *ring* provider because it lacks post-quantum key
// exchange. The aws-lc-rs provider has it but needs cmake and a C toolchain to build, which the
// static build of the broker avoids. Key exchange therefore stays X25519, P-256 and P-384.
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider { cipher_suites: CIPHER_SUITES.to_vec(), ..ring_provider::default_provider() })
}

/// Builds the rustls server configuration of a listener from `opts`. Reload on SIGHUP by
/// calling it again.
pub fn server_tls_config(opts: &TlsOptions) -> Result<Arc<ServerConfig>> {
    if let Some(size) = opts.max_fragment_size {
        if !MAX_FRAGMENT_SIZE_RANGE.contains(&size) {
            return Err(CertError::Tls(format!(
                "max_fragment_size {size} is out of range; use {} to {} bytes",
                MAX_FRAGMENT_SIZE_RANGE.start(),
                MAX_FRAGMENT_SIZE_RANGE.end()
            )));
        }
    }
    let provider = crypto_provider();
    let certs = load_certificates(&opts.cert_file)?;
    let key = load_private_key(&opts.key_file)?;
    let verifier = client_verifier(opts, &provider)?;

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| CertError::Tls(error.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|error| {
            CertError::Tls(format!(
                "cannot use the certificate {} with the key {}: {error}",
                opts.cert_file.display(),
                opts.key_file.display()
            ))
        })?;
    config.max_fragment_size = opts.max_fragment_size;
    config.alpn_protocols = opts.alpn.clone();
    Ok(Arc::new(config))
}

fn client_verifier(
    opts: &TlsOptions,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    if opts.client_ca_files.is_empty() {
        if opts.require_client_cert {
            return Err(CertError::Tls(
                "client certificates are required but no client CA file is set; set ca_file or turn off require_certificate".to_owned(),
            ));
        }
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    for path in &opts.client_ca_files {
        for cert in load_certificates(path)? {
            roots.add(cert).map_err(|error| CertError::invalid("CA certificate", path, error))?;
        }
    }
    let crls = match &opts.crl_file {
        Some(path) if path.exists() => load_crls(path)?,
        _ => Vec::new(),
    };
    // Only the client certificate is checked against the CRL, and a client of a CA that
    // publishes no CRL here is accepted, so an extra CA in client_ca_files needs no CRL.
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status();
    if !opts.require_client_cert {
        builder = builder.allow_unauthenticated();
    }
    builder.build().map_err(|error| CertError::Tls(format!("cannot verify client certificates: {error}")))
}

/// Reads every certificate of the PEM file at `path`; none is an error.
fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = files::read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| CertError::invalid("certificate", path, error))?;
    if certs.is_empty() {
        return Err(CertError::invalid("certificate", path, "no CERTIFICATE block in the PEM file"));
    }
    Ok(certs)
}

/// Reads the first private key of the PEM file at `path`: PKCS#8, SEC1 or PKCS#1.
fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    if keys::is_encrypted(path)? {
        return Err(CertError::EncryptedKey { path: path.to_owned() });
    }
    let bytes = files::read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| {
        CertError::invalid(
            "private key",
            path,
            format!("{error}; expected a PEM block PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY"),
        )
    })
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let bytes = files::read_file(path)?;
    CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| CertError::invalid("CRL", path, error))
}
