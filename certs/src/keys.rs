//! Key generation and the PEM encoding of private keys, optionally encrypted.
//!
//! Keys are stored as PKCS#8 PEM. With a passphrase the key is an encrypted PKCS#8 PEM
//! (`ENCRYPTED PRIVATE KEY`) using PBES2 with scrypt (N = 2^14, r = 8, p = 1) and AES-256-CBC,
//! which OpenSSL reads with `openssl pkey -in ca.key` (tested with OpenSSL 3.0).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use pkcs8::der::pem::LineEnding;
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use rcgen::{KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
use rsa::pkcs8::EncodePrivateKey;

use crate::error::{CertError, Result};
use crate::files;

const ENCRYPTED_PKCS8_TAG: &str = "ENCRYPTED PRIVATE KEY";

/// Algorithm and size of a generated key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256: small and fast, supported by BearSSL (ESP8266),
    /// mbedTLS (ESP32) and the TLS stacks of browsers and operating systems.
    #[default]
    EcdsaP256,
    /// RSA 2048 bits with PKCS#1 v1.5 SHA-256 signatures, for stacks without ECDSA.
    Rsa2048,
    /// RSA 4096 bits. Slower to generate than RSA 2048, and handshakes cost small boards more
    /// time.
    Rsa4096,
}

impl KeyType {
    /// Names accepted by `FromStr` and printed by `Display`.
    pub const NAMES: [&'static str; 3] = ["ecdsa-p256", "rsa2048", "rsa4096"];

    /// Returns true for the RSA key types.
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa4096)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa4096 => "rsa4096",
        };
        f.write_str(name)
    }
}

impl FromStr for KeyType {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "ecdsa" | "p256" | "ec" => Ok(KeyType::EcdsaP256),
            "rsa2048" | "rsa-2048" | "rsa" => Ok(KeyType::Rsa2048),
            "rsa4096" | "rsa-4096" => Ok(KeyType::Rsa4096),
            _ => Err(format!("invalid key type {text:?}: expected one of {}", KeyType::NAMES.join(", "))),
        }
    }
}

/// Generates a new key pair of `key_type`.
pub(crate) fn generate(key_type: KeyType) -> Result<KeyPair> {
    let action = || format!("generate a {key_type} key");
    match key_type {
        KeyType::EcdsaP256 => {
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|error| CertError::crypto(action(), error))
        }
        KeyType::Rsa2048 | KeyType::Rsa4096 => {
            // ring, the crypto backend of rcgen and rustls here, signs with RSA keys but cannot
            // generate them, so the RustCrypto `rsa` crate generates the key.
            let bits = if key_type == KeyType::Rsa2048 { 2048 } else { 4096 };
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)
                .map_err(|error| CertError::crypto(action(), error))?;
            let der = key.to_pkcs8_der().map_err(|error| CertError::crypto(action(), error))?;
            KeyPair::from_pkcs8_der_and_sign_algo(&der.as_bytes().into(), &PKCS_RSA_SHA256)
                .map_err(|error| CertError::crypto(action(), error))
        }
    }
}

/// Returns `key` as PKCS#8 PEM, encrypted with `passphrase` if one is given.
pub(crate) fn encode_private_key(key: &KeyPair, passphrase: Option<&str>) -> Result<String> {
    let Some(passphrase) = passphrase else {
        return Ok(key.serialize_pem());
    };
    let action = "encrypt the private key";
    let info = PrivateKeyInfoRef::try_from(key.serialized_der()).map_err(|error| CertError::crypto(action, error))?;
    let encrypted = info.encrypt(passphrase.as_bytes()).map_err(|error| CertError::crypto(action, error))?;
    let pem =
        encrypted.to_pem(ENCRYPTED_PKCS8_TAG, LineEnding::LF).map_err(|error| CertError::crypto(action, error))?;
    Ok(pem.to_string())
}

/// Returns true if the PEM key file at `path` is encrypted.
pub(crate) fn is_encrypted(path: &Path) -> Result<bool> {
    let bytes = files::read_file(path)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.contains(ENCRYPTED_PKCS8_TAG) || text.contains("Proc-Type: 4,ENCRYPTED"))
}

/// Loads a signing key from the PKCS#8 PEM file at `path`, decrypting it with `passphrase`
/// when it is encrypted. A passphrase given for an unencrypted key is ignored.
pub(crate) fn load_signing_key(path: &Path, passphrase: Option<&str>) -> Result<KeyPair> {
    let bytes = files::read_file(path)?;
    let blocks = pem::parse_many(&bytes).map_err(|error| CertError::invalid("private key", path, error))?;
    let block = blocks
        .iter()
        .find(|block| block.tag().ends_with("PRIVATE KEY"))
        .ok_or_else(|| CertError::invalid("private key", path, "no PRIVATE KEY block in the PEM file"))?;
    if block.headers().get("Proc-Type").is_some_and(|value| value.contains("ENCRYPTED")) {
        return Err(CertError::invalid(
            "private key",
            path,
            "legacy OpenSSL PEM encryption is not supported; convert the key to encrypted PKCS#8 (openssl pkcs8 -topk8)",
        ));
    }
    match block.tag() {
        "PRIVATE KEY" => {
            KeyPair::try_from(block.contents()).map_err(|error| CertError::invalid("private key", path, error))
        }
        ENCRYPTED_PKCS8_TAG => {
            let passphrase = passphrase.ok_or_else(|| CertError::PassphraseRequired { path: path.to_owned() })?;
            let encrypted = EncryptedPrivateKeyInfoRef::try_from(block.contents())
                .map_err(|error| CertError::invalid("encrypted private key", path, error))?;
            // A wrong passphrase shows up as bad padding or as plaintext that is not DER;
            // AES-CBC cannot tell the two causes apart.
            let decrypted = encrypted
                .decrypt(passphrase.as_bytes())
                .map_err(|_| CertError::WrongPassphrase { path: path.to_owned() })?;
            KeyPair::try_from(decrypted.as_bytes()).map_err(|_| CertError::WrongPassphrase { path: path.to_owned() })
        }
        other => Err(CertError::invalid(
            "private key",
            path,
            format!("{other} keys cannot sign here; convert the key to PKCS#8 (openssl pkcs8 -topk8)"),
        )),
    }
}

/// Returns true if `key` is the private key of the certificate whose SubjectPublicKeyInfo
/// is `spki_der`.
pub(crate) fn matches_certificate(key: &KeyPair, spki_der: &[u8]) -> bool {
    key.subject_public_key_info() == spki_der
}
