//! Reading certificates: subject, serial, validity, fingerprints, and the listing of a data
//! directory.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use ring::digest;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::crl;
use crate::error::{CertError, Result};
use crate::files;

/// Role of a certificate, read from its extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// A CA certificate (basicConstraints CA:TRUE).
    Ca,
    /// A TLS server certificate (extended key usage serverAuth).
    Server,
    /// A TLS client certificate (extended key usage clientAuth without serverAuth).
    Client,
    /// Any other certificate.
    Other,
}

impl CertKind {
    /// Returns the lowercase name used in listings: `ca`, `server`, `client` or `other`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CertKind::Ca => "ca",
            CertKind::Server => "server",
            CertKind::Client => "client",
            CertKind::Other => "other",
        }
    }
}

/// Contents of a certificate, plus its revocation status where known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// File the certificate was read from.
    pub path: PathBuf,
    /// Role of the certificate.
    pub kind: CertKind,
    /// Subject distinguished name, as in `CN=sensor1, O=lpiotia-mqtt`.
    pub subject: String,
    /// Common name of the subject, empty if it has none.
    pub common_name: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number in uppercase hexadecimal without separators, as `openssl x509 -serial`
    /// prints it.
    pub serial: String,
    /// Start of the validity period.
    pub not_before: OffsetDateTime,
    /// End of the validity period.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER certificate, as `AB:CD:...`.
    pub fingerprint_sha256: String,
    /// Whether the data directory's CRL lists this certificate. Always false from [`show`],
    /// which reads one file alone; [`list`] and [`check_revoked`] consult the CRL.
    pub revoked: bool,
    /// Whether the data directory's CA signed this certificate; `None` where not checked
    /// ([`show`]). `Some(false)` marks a certificate of a CA that `init --force` replaced.
    pub signed_by_ca: Option<bool>,
    /// Subject alternative names, as `DNS:name` and `IP:address`.
    pub sans: Vec<String>,
}

impl CertInfo {
    /// Returns the whole days from now until `not_after`, negative once expired.
    pub fn days_left(&self) -> i64 {
        (self.not_after - OffsetDateTime::now_utc()).whole_days()
    }

    /// Returns true if `not_after` has passed.
    pub fn is_expired(&self) -> bool {
        self.not_after <= OffsetDateTime::now_utc()
    }

    /// Returns `not_after` in RFC 3339 form, such as `2035-12-04T21:07:00Z`.
    pub fn not_after_text(&self) -> String {
        format_time(self.not_after)
    }

    /// Returns `not_before` in RFC 3339 form.
    pub fn not_before_text(&self) -> String {
        format_time(self.not_before)
    }
}

/// Formats a time as RFC 3339, as used in every message of this crate.
pub(crate) fn format_time(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| time.to_string())
}

/// Reads the certificate in the PEM or DER file `file`. `revoked` is false and `signed_by_ca`
/// is `None`, because one file does not tell which CA and CRL apply; see [`check_revoked`].
pub fn show(file: &Path) -> Result<CertInfo> {
    let der = files::read_certificate(file)?;
    parse_info(file, &der)
}

/// Sets `info.signed_by_ca` and `info.revoked` from the CA and CRL of `data_dir`. Without a
/// CA there, `info` is left as it is.
pub fn check_revoked(data_dir: &Path, info: &mut CertInfo) -> Result<()> {
    let ca_path = files::ca_cert_path(data_dir);
    if !ca_path.exists() {
        return Ok(());
    }
    let ca_der = files::read_certificate(&ca_path)?;
    let cert_der = files::read_certificate(&info.path)?;
    let signed = is_signed_by(&cert_der, &ca_der);
    info.signed_by_ca = Some(signed);
    info.revoked = signed && crl::revoked_serials(data_dir)?.contains(&info.serial);
    Ok(())
}

/// Lists the CA, the server certificate and every client certificate of `data_dir`, with
/// `signed_by_ca` set for each and `revoked` set from the CRL. A missing server certificate is
/// left out.
pub fn list(data_dir: &Path) -> Result<Vec<CertInfo>> {
    let ca_path = files::ca_cert_path(data_dir);
    if !ca_path.exists() {
        return Err(CertError::NoCa { path: ca_path });
    }
    let ca_der = files::read_certificate(&ca_path)?;
    let mut ca = parse_info(&ca_path, &ca_der)?;
    ca.signed_by_ca = Some(true);
    let mut infos = vec![ca];

    let revoked = crl::revoked_serials(data_dir)?;
    let server_path = files::server_cert_path(data_dir);
    let mut paths = if server_path.exists() { vec![server_path] } else { Vec::new() };
    paths.extend(client_cert_files(data_dir)?);
    for path in paths {
        let der = files::read_certificate(&path)?;
        let mut info = parse_info(&path, &der)?;
        let signed = is_signed_by(&der, &ca_der);
        info.signed_by_ca = Some(signed);
        info.revoked = signed && revoked.contains(&info.serial);
        infos.push(info);
    }
    Ok(infos)
}

/// Returns true if the key of the CA certificate `ca_der` signed the certificate `cert_der`.
/// The issuer name alone would not do, because a CA replaced with `init --force` usually keeps
/// its name.
pub(crate) fn is_signed_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (X509Certificate::from_der(cert_der), X509Certificate::from_der(ca_der)) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Returns `clients/NAME/NAME.crt` for every client directory that has one, sorted by name.
pub(crate) fn client_cert_files(data_dir: &Path) -> Result<Vec<PathBuf>> {
    let clients = data_dir.join(files::CLIENTS_DIR);
    let entries = match fs::read_dir(&clients) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(CertError::io("read directory", clients, error)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| CertError::io("read directory", &clients, error))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let cert = files::client_cert_path(data_dir, &name);
        if cert.is_file() {
            paths.push(cert);
        }
    }
    paths.sort();
    Ok(paths)
}

/// Returns the SHA-256 fingerprint of a certificate as `AB:CD:...`. The input is PEM (the
/// first CERTIFICATE block is hashed) or DER; bytes without a PEM block are hashed as DER.
pub fn fingerprint_sha256(cert_pem_or_der: &[u8]) -> String {
    fingerprint(&digest::SHA256, cert_pem_or_der)
}

/// Returns the SHA-1 fingerprint of a certificate as `AB:CD:...`, the form that ESP8266
/// `WiFiClientSecure::setFingerprint` pins. Input as for [`fingerprint_sha256`].
pub fn fingerprint_sha1(cert_pem_or_der: &[u8]) -> String {
    fingerprint(&digest::SHA1_FOR_LEGACY_USE_ONLY, cert_pem_or_der)
}

fn fingerprint(algorithm: &'static digest::Algorithm, cert_pem_or_der: &[u8]) -> String {
    let der = files::certificate_der(Path::new(""), cert_pem_or_der).unwrap_or_else(|_| cert_pem_or_der.to_vec());
    hex_bytes(digest::digest(algorithm, &der).as_ref(), ":")
}

/// Formats bytes as uppercase hexadecimal pairs joined by `separator`.
pub(crate) fn hex_bytes(bytes: &[u8], separator: &str) -> String {
    let mut text = String::with_capacity(bytes.len() * (2 + separator.len()));
    for (index, byte) in bytes.iter().enumerate() {
        if index > 0 {
            text.push_str(separator);
        }
        let _ = write!(text, "{byte:02X}");
    }
    text
}

/// Formats a DER INTEGER's content bytes as `openssl x509 -serial` does: uppercase hex
/// without the sign byte.
pub(crate) fn serial_text(bytes: &[u8]) -> String {
    let trimmed = match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => bytes,
    };
    hex_bytes(trimmed, "")
}

/// Parses the DER certificate read from `path` into a [`CertInfo`].
pub(crate) fn parse_info(path: &Path, der: &[u8]) -> Result<CertInfo> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|error| {
        CertError::invalid("certificate", path, format!("not a PEM or DER X.509 certificate ({error})"))
    })?;
    let common_name =
        cert.subject().iter_common_name().next().and_then(|name| name.as_str().ok()).unwrap_or_default().to_owned();
    Ok(CertInfo {
        path: path.to_owned(),
        kind: kind_of(&cert),
        subject: cert.subject().to_string(),
        common_name,
        issuer: cert.issuer().to_string(),
        serial: serial_text(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        fingerprint_sha256: hex_bytes(digest::digest(&digest::SHA256, der).as_ref(), ":"),
        revoked: false,
        signed_by_ca: None,
        sans: subject_alt_names(&cert),
    })
}

fn kind_of(cert: &X509Certificate<'_>) -> CertKind {
    if cert.is_ca() {
        return CertKind::Ca;
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.server_auth => CertKind::Server,
        Ok(Some(eku)) if eku.value.client_auth => CertKind::Client,
        _ => CertKind::Other,
    }
}

fn subject_alt_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(extension)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(format!("DNS:{dns}")),
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(|ip| format!("IP:{ip}")),
            _ => None,
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    if let Ok(octets) = <[u8; 4]>::try_from(bytes) {
        return Some(octets.into());
    }
    <[u8; 16]>::try_from(bytes).ok().map(Into::into)
}
