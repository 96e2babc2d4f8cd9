//! The broker's own CA: creating it, and loading it to sign certificates and CRLs.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::error::{CertError, Result};
use crate::inspect::{self, CertInfo};
use crate::keys::{self, KeyType};
use crate::{crl, files};

/// Organization name written into every certificate this crate issues.
pub(crate) const ORGANIZATION: &str = "lpiotia-mqtt";

/// How far `not_before` lies in the past, so that a board whose clock runs a little behind
/// still accepts a certificate issued a moment ago.
const BACKDATE: Duration = Duration::hours(1);

/// Settings of a new CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaOptions {
    /// Key algorithm of the CA.
    pub key_type: KeyType,
    /// Passphrase that encrypts `ca.key`, or `None` to store it unencrypted (mode 0600).
    pub passphrase: Option<String>,
    /// Common name of the CA certificate.
    pub common_name: String,
    /// Validity of the CA certificate in days.
    pub validity_days: u32,
}

impl Default for CaOptions {
    /// Returns an ECDSA P-256 CA without a passphrase, valid for 10 years, named after the host.
    fn default() -> Self {
        CaOptions {
            key_type: KeyType::EcdsaP256,
            passphrase: None,
            common_name: default_ca_common_name(),
            validity_days: 3650,
        }
    }
}

/// Returns `lpiotia-mqtt CA HOSTNAME`, or `lpiotia-mqtt CA` if the host has no name.
pub fn default_ca_common_name() -> String {
    match crate::names::host_name() {
        Some(host) => format!("{ORGANIZATION} CA {host}"),
        None => format!("{ORGANIZATION} CA"),
    }
}

/// Creates the CA of `data_dir`: `ca.key` (mode 0600, encrypted PKCS#8 if `opts.passphrase`
/// is set), `ca.crt` and an empty `crl.pem`. Existing CA files are replaced only when `force`
/// is set; every certificate signed by the replaced CA then stops being trusted.
pub fn init_ca(data_dir: &Path, opts: &CaOptions, force: bool) -> Result<CertInfo> {
    let cert_path = files::ca_cert_path(data_dir);
    let key_path = files::ca_key_path(data_dir);
    if !force {
        for path in [&cert_path, &key_path] {
            if path.exists() {
                return Err(CertError::AlreadyExists { path: path.clone() });
            }
        }
    }
    let validity = Validity::days_from_now(opts.validity_days)?;
    let key = keys::generate(opts.key_type)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&opts.common_name);
    // Path length 0: this CA signs end-entity certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(random_serial()?);
    validity.apply(&mut params);
    let cert = params.self_signed(&key).map_err(|error| CertError::crypto("sign the CA certificate", error))?;

    let key_pem = keys::encode_private_key(&key, opts.passphrase.as_deref())?;
    files::write_file(&key_path, key_pem.as_bytes(), files::SECRET_MODE)?;
    files::write_file(&cert_path, cert.pem().as_bytes(), files::PUBLIC_MODE)?;

    let ca = LoadedCa::new(cert_path.clone(), cert.der().to_vec(), key)?;
    crl::write_crl(data_dir, &ca, &[], 1)?;
    inspect::parse_info(&cert_path, cert.der())
}

/// Returns true if the CA key of `data_dir` is encrypted, so signing needs its passphrase.
pub fn ca_key_is_encrypted(data_dir: &Path) -> Result<bool> {
    keys::is_encrypted(&files::ca_key_path(data_dir))
}

/// Checks that the CA of `data_dir` can sign: `ca.crt` and `ca.key` exist, form a pair, and
/// `passphrase` decrypts the key if it is encrypted.
pub fn check_ca_key(data_dir: &Path, passphrase: Option<&str>) -> Result<()> {
    LoadedCa::load(data_dir, passphrase).map(|_| ())
}

/// The CA certificate and key, ready to sign.
pub(crate) struct LoadedCa {
    pub(crate) cert_path: PathBuf,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) issuer: Issuer<'static, KeyPair>,
    pub(crate) subject_key_id: Option<Vec<u8>>,
    pub(crate) not_after: OffsetDateTime,
}

impl LoadedCa {
    /// Loads `ca.crt` and `ca.key` of `data_dir`, checking that they form a pair.
    pub(crate) fn load(data_dir: &Path, passphrase: Option<&str>) -> Result<Self> {
        let cert_path = files::ca_cert_path(data_dir);
        if !cert_path.exists() {
            return Err(CertError::NoCa { path: cert_path });
        }
        let cert_der = files::read_certificate(&cert_path)?;
        let key_path = files::ca_key_path(data_dir);
        let key = keys::load_signing_key(&key_path, passphrase)?;
        let ca = LoadedCa::new(cert_path.clone(), cert_der, key)?;
        let (_, cert) = X509Certificate::from_der(&ca.cert_der)
            .map_err(|error| CertError::invalid("CA certificate", &cert_path, error))?;
        if !keys::matches_certificate(ca.issuer.key(), cert.public_key().raw) {
            return Err(CertError::KeyMismatch { key: key_path, cert: cert_path });
        }
        Ok(ca)
    }

    fn new(cert_path: PathBuf, cert_der: Vec<u8>, key: KeyPair) -> Result<Self> {
        let invalid = |error: &dyn std::fmt::Display| CertError::invalid("CA certificate", &cert_path, error);
        let (_, cert) = X509Certificate::from_der(&cert_der).map_err(|error| invalid(&error))?;
        let not_after = cert.validity().not_after.to_datetime();
        let subject_key_id = cert.iter_extensions().find_map(|extension| match extension.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key).map_err(|error| invalid(&error))?;
        Ok(LoadedCa { cert_path, cert_der, issuer, subject_key_id, not_after })
    }
}

/// Validity period of a certificate being issued.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Validity {
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago until `days` days from now.
    pub(crate) fn days_from_now(days: u32) -> Result<Self> {
        if days == 0 {
            return Err(CertError::InvalidValidity { days });
        }
        let now = OffsetDateTime::now_utc();
        Ok(Validity { not_before: now - BACKDATE, not_after: now + Duration::days(i64::from(days)) })
    }

    /// Ends the period no later than the CA certificate, which a verifier checks as well.
    pub(crate) fn capped_by(mut self, ca: &LoadedCa) -> Self {
        self.not_after = self.not_after.min(ca.not_after);
        self
    }

    pub(crate) fn apply(&self, params: &mut CertificateParams) {
        // X.509 times have whole seconds, so the fraction is dropped to keep CertInfo equal to
        // the times stored in the file.
        params.not_before = self.not_before.replace_nanosecond(0).unwrap_or(self.not_before);
        params.not_after = self.not_after.replace_nanosecond(0).unwrap_or(self.not_after);
    }
}

/// Returns a subject of `CN=common_name, O=lpiotia-mqtt`.
pub(crate) fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, ORGANIZATION);
    name
}

/// Returns a random positive 128-bit serial number, so that no two certificates of the CA
/// share one and a CRL entry names exactly one certificate.
pub(crate) fn random_serial() -> Result<rcgen::SerialNumber> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| CertError::crypto("generate a serial number", error))?;
    // A clear top bit keeps the DER INTEGER positive; a set second bit keeps it 16 bytes long.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}
