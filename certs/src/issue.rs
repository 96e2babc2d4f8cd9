//! Issuing the server certificate and client certificates with the data directory's CA.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType};

use crate::ca::{self, LoadedCa, Validity};
use crate::error::{CertError, Result};
use crate::files;
use crate::inspect::{self, CertInfo};
use crate::keys::{self, KeyType};
use crate::names;
use crate::pkcs12::{self, Pkcs12Encryption};

/// Default validity of a server certificate in days. 825 days is the longest that Apple
/// platforms accept for any TLS server certificate issued after 1 July 2019, private CAs
/// included (Apple, "Requirements for trusted certificates in iOS 13 and macOS 10.15").
pub const DEFAULT_SERVER_DAYS: u32 = 825;
/// Default validity of a client certificate in days (5 years), because reflashing a sensor
/// costs a visit.
pub const DEFAULT_CLIENT_DAYS: u32 = 1825;

/// Files written for one client by [`issue_client`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientBundle {
    /// Directory `clients/NAME`.
    pub dir: PathBuf,
    /// Client certificate, PEM: `clients/NAME/NAME.crt`.
    pub cert_file: PathBuf,
    /// Client private key, PKCS#8 PEM, mode 0600: `clients/NAME/NAME.key`.
    pub key_file: PathBuf,
    /// Copy of the CA certificate, for the client to verify the broker: `clients/NAME/ca.crt`.
    pub ca_file: PathBuf,
    /// PKCS#12 bundle of certificate, key and CA certificate for browsers and Windows, mode
    /// 0600: `clients/NAME/NAME.p12`.
    pub p12_file: PathBuf,
    /// The issued certificate.
    pub info: CertInfo,
}

/// Settings of a client certificate beyond its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Key algorithm of the client key.
    pub key_type: KeyType,
    /// Password of the PKCS#12 file; `None` gives an empty password.
    pub p12_password: Option<String>,
    /// Encryption of the PKCS#12 file.
    pub p12_encryption: Pkcs12Encryption,
    /// Validity in days, cut to the CA's own end of validity.
    pub validity_days: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            key_type: KeyType::EcdsaP256,
            p12_password: None,
            p12_encryption: Pkcs12Encryption::default(),
            validity_days: DEFAULT_CLIENT_DAYS,
        }
    }
}

/// Issues `server.crt` and `server.key` (mode 0600) for the DNS `names` and `ips`, replacing
/// the current pair. The certificate has the serverAuth extended key usage, and its common
/// name is the first DNS name, or the first address if there is no DNS name.
pub fn issue_server(
    data_dir: &Path,
    names: &[String],
    ips: &[IpAddr],
    key_type: KeyType,
    ca_passphrase: Option<&str>,
    validity_days: u32,
) -> Result<CertInfo> {
    if names.is_empty() && ips.is_empty() {
        return Err(CertError::NoServerNames);
    }
    let mut dns_names: Vec<&String> = Vec::new();
    for name in names {
        names::validate_dns_name(name)?;
        if !dns_names.contains(&name) {
            dns_names.push(name);
        }
    }
    let unique_ips: BTreeSet<IpAddr> = ips.iter().copied().collect();
    let validity = Validity::days_from_now(validity_days)?;
    let ca = LoadedCa::load(data_dir, ca_passphrase)?;

    let common_name = match dns_names.first() {
        Some(name) => name.to_string(),
        None => ips[0].to_string(),
    };
    let mut params = end_entity_params(&common_name, key_type, ExtendedKeyUsagePurpose::ServerAuth)?;
    for name in dns_names {
        let name = name.as_str().try_into().map_err(|error: rcgen::Error| CertError::InvalidDnsName {
            name: name.clone(),
            reason: error.to_string(),
        })?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params.subject_alt_names.extend(unique_ips.into_iter().map(SanType::IpAddress));
    validity.capped_by(&ca).apply(&mut params);

    let key = keys::generate(key_type)?;
    let cert_der = sign(&params, &key, &ca, "sign the server certificate")?;
    let cert_path = files::server_cert_path(data_dir);
    files::write_file(&files::server_key_path(data_dir), key.serialize_pem().as_bytes(), files::SECRET_MODE)?;
    files::write_file(&cert_path, files::to_pem("CERTIFICATE", &cert_der).as_bytes(), files::PUBLIC_MODE)?;
    inspect::parse_info(&cert_path, &cert_der)
}

/// Issues an ECDSA P-256 client certificate `name` with a PKCS#12 file protected by
/// `p12_password` (empty if `None`). See [`issue_client_with`].
pub fn issue_client(
    data_dir: &Path,
    name: &str,
    p12_password: Option<&str>,
    ca_passphrase: Option<&str>,
    validity_days: u32,
) -> Result<ClientBundle> {
    let options =
        ClientOptions { p12_password: p12_password.map(str::to_owned), validity_days, ..ClientOptions::default() };
    issue_client_with(data_dir, name, &options, ca_passphrase)
}

/// Issues the client certificate `name` (common name `name`, clientAuth extended key usage)
/// into `clients/NAME/`: the key (mode 0600), the certificate, a copy of `ca.crt` and a
/// PKCS#12 file (mode 0600). A certificate of the current CA that is still valid and not
/// revoked is never replaced; revoke it first.
pub fn issue_client_with(
    data_dir: &Path,
    name: &str,
    options: &ClientOptions,
    ca_passphrase: Option<&str>,
) -> Result<ClientBundle> {
    let validity = Validity::days_from_now(options.validity_days)?;
    issue_client_for_period(data_dir, name, options, ca_passphrase, validity)
}

/// Issues a client certificate valid over `validity`, which tests set in the past.
pub(crate) fn issue_client_for_period(
    data_dir: &Path,
    name: &str,
    options: &ClientOptions,
    ca_passphrase: Option<&str>,
    validity: Validity,
) -> Result<ClientBundle> {
    ensure_client_replaceable(data_dir, name)?;
    let cert_path = files::client_cert_path(data_dir, name);
    let ca = LoadedCa::load(data_dir, ca_passphrase)?;

    let mut params = end_entity_params(name, options.key_type, ExtendedKeyUsagePurpose::ClientAuth)?;
    validity.capped_by(&ca).apply(&mut params);
    let key = keys::generate(options.key_type)?;
    let cert_der = sign(&params, &key, &ca, "sign the client certificate")?;

    let password = options.p12_password.as_deref().unwrap_or("");
    let p12 = pkcs12::encode(name, &cert_der, key.serialized_der(), &ca.cert_der, password, options.p12_encryption)?;

    let dir = files::client_dir(data_dir, name);
    let bundle = ClientBundle {
        key_file: dir.join(format!("{name}.key")),
        ca_file: dir.join(files::CA_CERT_FILE),
        p12_file: dir.join(format!("{name}.p12")),
        info: inspect::parse_info(&cert_path, &cert_der)?,
        cert_file: cert_path,
        dir,
    };
    files::write_file(&bundle.key_file, key.serialize_pem().as_bytes(), files::SECRET_MODE)?;
    files::write_file(&bundle.cert_file, files::to_pem("CERTIFICATE", &cert_der).as_bytes(), files::PUBLIC_MODE)?;
    files::write_file(&bundle.ca_file, files::to_pem("CERTIFICATE", &ca.cert_der).as_bytes(), files::PUBLIC_MODE)?;
    files::write_file(&bundle.p12_file, &p12, files::SECRET_MODE)?;
    Ok(bundle)
}

/// Checks that [`issue_client`] may write the client `name`: its name is valid, and any
/// `clients/NAME/NAME.crt` has expired, is in the CRL or was signed by a replaced CA.
pub fn ensure_client_replaceable(data_dir: &Path, name: &str) -> Result<()> {
    names::validate_client_name(name)?;
    let cert_path = files::client_cert_path(data_dir, name);
    if !cert_path.exists() {
        return Ok(());
    }
    let mut existing = inspect::show(&cert_path)?;
    inspect::check_revoked(data_dir, &mut existing)?;
    if existing.is_expired() || existing.revoked || existing.signed_by_ca == Some(false) {
        return Ok(());
    }
    Err(CertError::ClientExists {
        name: name.to_owned(),
        path: cert_path,
        not_after: existing.not_after_text(),
        serial: existing.serial,
    })
}

/// Returns the parameters shared by server and client certificates.
fn end_entity_params(
    common_name: &str,
    key_type: KeyType,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = ca::distinguished_name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if key_type.is_rsa() {
        // RSA certificates conventionally carry keyEncipherment (for RSA key exchange) too,
        // which clients that check key usage may expect even though only ECDHE is offered.
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(ca::random_serial()?);
    Ok(params)
}

fn sign(params: &CertificateParams, key: &KeyPair, ca: &LoadedCa, action: &str) -> Result<Vec<u8>> {
    let cert = params.signed_by(key, &ca.issuer).map_err(|error| CertError::crypto(action, error))?;
    Ok(cert.der().to_vec())
}
