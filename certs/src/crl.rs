//! The certificate revocation list `crl.pem`: revoking client certificates.
//!
//! The CRL is the only record of revocations. `revoke` reads the current entries from it, adds
//! one and signs a new CRL with the next CRL number. The broker loads the file at start and
//! on SIGHUP.

use std::collections::HashSet;
use std::path::Path;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::ca::LoadedCa;
use crate::error::{CertError, Result};
use crate::inspect::{self, CertInfo};
use crate::{files, names};

/// One revoked certificate.
#[derive(Clone, Debug)]
pub(crate) struct RevokedEntry {
    /// Serial number as the content bytes of its DER INTEGER.
    pub(crate) serial: Vec<u8>,
    pub(crate) revoked_at: OffsetDateTime,
}

/// Returns the path of the CRL in `data_dir`.
pub fn crl_path(data_dir: &Path) -> std::path::PathBuf {
    files::crl_path(data_dir)
}

/// Revokes the client certificate `name`: adds its serial to the CRL and rewrites `crl.pem`
/// signed by the CA. A running broker applies the new CRL on SIGHUP. Returns the revoked
/// certificate.
pub fn revoke(data_dir: &Path, name: &str, ca_passphrase: Option<&str>) -> Result<CertInfo> {
    names::validate_client_name(name)?;
    let cert_path = files::client_cert_path(data_dir, name);
    if !cert_path.exists() {
        return Err(CertError::ClientNotFound { path: cert_path });
    }
    let cert_der = files::read_certificate(&cert_path)?;
    let mut info = inspect::parse_info(&cert_path, &cert_der)?;
    let ca = LoadedCa::load(data_dir, ca_passphrase)?;
    if !inspect::is_signed_by(&cert_der, &ca.cert_der) {
        return Err(CertError::ForeignIssuer { path: cert_path, ca: ca.cert_path.clone() });
    }

    let (mut entries, number) = read_entries(data_dir, Some(&ca))?;
    if entries.iter().any(|entry| inspect::serial_text(&entry.serial) == info.serial) {
        return Err(CertError::AlreadyRevoked { path: cert_path, serial: info.serial });
    }
    let (_, cert) =
        X509Certificate::from_der(&cert_der).map_err(|error| CertError::invalid("certificate", &cert_path, error))?;
    entries.push(RevokedEntry { serial: cert.raw_serial().to_vec(), revoked_at: OffsetDateTime::now_utc() });
    write_crl(data_dir, &ca, &entries, number + 1)?;
    info.revoked = true;
    Ok(info)
}

/// Returns the serials listed in the CRL of `data_dir`, formatted as [`CertInfo::serial`].
/// No CRL file means no revoked certificate.
pub(crate) fn revoked_serials(data_dir: &Path) -> Result<HashSet<String>> {
    let (entries, _) = read_entries(data_dir, None)?;
    Ok(entries.iter().map(|entry| inspect::serial_text(&entry.serial)).collect())
}

/// Reads the entries and the CRL number of `crl.pem`; an absent file gives none and number 0.
/// With `ca`, a CRL whose signature does not verify with the CA key is an error.
fn read_entries(data_dir: &Path, ca: Option<&LoadedCa>) -> Result<(Vec<RevokedEntry>, u64)> {
    let path = files::crl_path(data_dir);
    if !path.exists() {
        return Ok((Vec::new(), 0));
    }
    let bytes = files::read_file(&path)?;
    let der = if files::looks_like_pem(&bytes) {
        let block = pem::parse(&bytes).map_err(|error| CertError::invalid("CRL", &path, error))?;
        if block.tag() != "X509 CRL" {
            return Err(CertError::invalid(
                "CRL",
                &path,
                format!("expected an X509 CRL PEM block, found {}", block.tag()),
            ));
        }
        block.into_contents()
    } else {
        bytes
    };
    let (_, crl) =
        CertificateRevocationList::from_der(&der).map_err(|error| CertError::invalid("CRL", &path, error))?;
    if let Some(ca) = ca {
        let (_, ca_cert) = X509Certificate::from_der(&ca.cert_der)
            .map_err(|error| CertError::invalid("CA certificate", &ca.cert_path, error))?;
        if crl.verify_signature(ca_cert.public_key()).is_err() {
            return Err(CertError::ForeignIssuer { path, ca: ca.cert_path.clone() });
        }
    }
    let entries = crl
        .iter_revoked_certificates()
        .map(|revoked| RevokedEntry {
            serial: revoked.raw_serial().to_vec(),
            revoked_at: revoked.revocation_date.to_datetime(),
        })
        .collect();
    let number = crl
        .crl_number()
        .map(|number| number.to_bytes_be().iter().fold(0u64, |value, byte| value.wrapping_shl(8) | u64::from(*byte)))
        .unwrap_or(0);
    Ok((entries, number))
}

/// Signs a CRL listing `entries` with CRL number `number` and writes it to `crl.pem`. The CRL
/// stays valid (nextUpdate) until the CA expires, because no service republishes it on a
/// schedule; OpenSSL rejects a CRL past its nextUpdate.
pub(crate) fn write_crl(data_dir: &Path, ca: &LoadedCa, entries: &[RevokedEntry], number: u64) -> Result<()> {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| OffsetDateTime::now_utc());
    let next_update = ca.not_after.max(now + Duration::days(1));
    let key_identifier_method = match &ca.subject_key_id {
        Some(id) => KeyIdMethod::PreSpecified(id.clone()),
        None => KeyIdMethod::Sha256,
    };
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: entries
            .iter()
            .map(|entry| RevokedCertParams {
                serial_number: SerialNumber::from_slice(strip_sign_byte(&entry.serial)),
                revocation_time: entry.revoked_at,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method,
    };
    let crl = params.signed_by(&ca.issuer).map_err(|error| CertError::crypto("sign the CRL", error))?;
    files::write_file(&files::crl_path(data_dir), files::to_pem("X509 CRL", crl.der()).as_bytes(), files::PUBLIC_MODE)
}

/// Drops the leading zero byte that keeps a DER INTEGER positive; rcgen adds it back.
fn strip_sign_byte(bytes: &[u8]) -> &[u8] {
    match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => bytes,
    }
}
