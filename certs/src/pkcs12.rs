//! PKCS#12 bundles of a client certificate, its key and the CA certificate, for browsers,
//! Windows and other programs that import `.p12` files.

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey, PrivateKeyChain,
};
use ring::digest;

use crate::error::{CertError, Result};

/// Encryption of a PKCS#12 file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pkcs12Encryption {
    /// PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, and an HMAC-SHA256 MAC, as OpenSSL 3
    /// writes by default. Tested to import with OpenSSL 3.0 and NSS 3.87 (Firefox).
    #[default]
    Aes256,
    /// PBE-SHA1-3DES with an HMAC-SHA1 MAC, as OpenSSL 1.1 wrote by default. For importers that
    /// reject AES or HMAC-SHA256 in PKCS#12: reported for the macOS keychain (macOS 12 and 13),
    /// older Android versions and Windows Server 2016.
    Legacy3Des,
}

/// Encodes a PKCS#12 file holding the key and certificate chain `cert_der`, `ca_der` under
/// the friendly name `name`.
pub(crate) fn encode(
    name: &str,
    cert_der: &[u8],
    key_pkcs8_der: &[u8],
    ca_der: &[u8],
    password: &str,
    encryption: Pkcs12Encryption,
) -> Result<Vec<u8>> {
    let failed = |error: p12_keystore::error::Error| CertError::crypto("encode the PKCS#12 file", error);
    let key = PrivateKey::from_der(key_pkcs8_der).map_err(failed)?;
    let certs = [Certificate::from_der(cert_der).map_err(failed)?, Certificate::from_der(ca_der).map_err(failed)?];
    // The local key id ties the key bag to its certificate bag; the SHA-1 of the certificate is
    // what OpenSSL writes there.
    let local_key_id = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, cert_der).as_ref().to_vec();
    let mut store = KeyStore::new();
    store.add_entry(name, KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)));

    let writer = store.writer(password);
    let writer = match encryption {
        Pkcs12Encryption::Aes256 => writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .mac_algorithm(MacAlgorithm::HmacSha256)
            .encryption_iterations(10_000)
            .mac_iterations(10_000),
        Pkcs12Encryption::Legacy3Des => writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .mac_algorithm(MacAlgorithm::HmacSha1)
            .encryption_iterations(2048)
            .mac_iterations(2048),
    };
    writer.write().map_err(failed)
}
