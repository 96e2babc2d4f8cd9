//! Password hashes as stored in the password file: parsing, verification and new argon2id hashes.
//!
//! Three formats are read:
//! - argon2id PHC strings, `$argon2id$v=19$m=...,t=...,p=...$SALT$HASH`, the only format written;
//! - Mosquitto's `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 with a 64-byte output;
//! - Mosquitto's `$6$SALT$HASH`: one SHA-512 over the password bytes followed by the salt bytes.
//!   This is not crypt(3)'s sha512-crypt, which shares the `$6$` prefix.
//!
//! SALT and HASH of the Mosquitto formats are standard base64 (padding optional). The layouts
//! were checked against files written by `mosquitto_passwd` 2.0.11 (Debian 12).

use std::fmt;
use std::num::NonZeroU32;
use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::AuthError;

/// Length in bytes of a SHA-512 digest, the hash length of both Mosquitto formats.
const SHA512_LEN: usize = 64;

/// Standard base64 that accepts input with or without `=` padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The hash format of one user's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashScheme {
    /// argon2id PHC string, written for every password set by this crate.
    Argon2id,
    /// Mosquitto `$7$`: PBKDF2-HMAC-SHA512 (the default of `mosquitto_passwd` since 2.0).
    MosquittoPbkdf2Sha512,
    /// Mosquitto `$6$`: salted SHA-512 (`mosquitto_passwd -H sha512`, the default before 2.0).
    MosquittoSha512,
}

/// One user's hash: the text as found in the file and its decoded form.
#[derive(Clone)]
pub(crate) struct StoredHash {
    /// The hash exactly as read or generated, written back unchanged by `save`.
    encoded: String,
    kind: HashKind,
}

#[derive(Clone)]
enum HashKind {
    /// `encoded` is a validated argon2id PHC string, parsed again on each verification
    /// because `PasswordHash` borrows from its text.
    Argon2id,
    Pbkdf2Sha512 {
        iterations: NonZeroU32,
        salt: Vec<u8>,
        hash: [u8; SHA512_LEN],
    },
    Sha512 {
        salt: Vec<u8>,
        hash: [u8; SHA512_LEN],
    },
}

/// Why a hash field was rejected. No variant contains any part of the hash.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HashParseError {
    #[error("hash is empty")]
    Empty,
    #[error("unknown hash format; expected an argon2id PHC string ($argon2id$...), Mosquitto $7$ or Mosquitto $6$")]
    UnknownScheme,
    #[error("invalid argon2id PHC string: {0}")]
    Argon2Syntax(argon2::password_hash::Error),
    #[error("unsupported algorithm {0:?}; only argon2id is accepted among the argon2 variants")]
    Argon2Variant(String),
    #[error("argon2id PHC string has no salt or no hash output")]
    Argon2Incomplete,
    #[error("unsupported argon2 version {0}; expected 19 (or the older 16)")]
    Argon2Version(u32),
    #[error("invalid argon2id parameters: {0}")]
    Argon2Params(argon2::password_hash::Error),
    #[error("invalid Mosquitto $7$ hash: expected the form $7$ITERATIONS$SALT$HASH")]
    Pbkdf2Layout,
    #[error("invalid Mosquitto $7$ hash: the iteration count is not a decimal number from 1 to 4294967295")]
    Pbkdf2Iterations,
    #[error("invalid Mosquitto $7$ hash: the iteration count is 0; it must be at least 1")]
    Pbkdf2ZeroIterations,
    #[error("invalid Mosquitto $6$ hash: expected the form $6$SALT$HASH (crypt(3) sha512-crypt hashes are not supported)")]
    Sha512Layout,
    #[error("invalid Mosquitto ${scheme}$ hash: the {field} is not valid base64")]
    Base64 { scheme: char, field: &'static str },
    #[error("invalid Mosquitto ${0}$ hash: the salt is empty")]
    EmptySalt(char),
    #[error("invalid Mosquitto ${scheme}$ hash: the hash is {len} bytes, but SHA-512 hashes are 64 bytes")]
    HashLength { scheme: char, len: usize },
}

impl StoredHash {
    /// Parses the hash part of a password file line.
    pub(crate) fn parse(encoded: &str) -> Result<Self, HashParseError> {
        let kind = if encoded.is_empty() {
            return Err(HashParseError::Empty);
        } else if encoded.starts_with("$argon2") {
            parse_argon2id(encoded)?
        } else if let Some(rest) = encoded.strip_prefix("$7$") {
            parse_pbkdf2(rest)?
        } else if let Some(rest) = encoded.strip_prefix("$6$") {
            parse_sha512(rest)?
        } else {
            return Err(HashParseError::UnknownScheme);
        };
        Ok(StoredHash {
            encoded: encoded.to_owned(),
            kind,
        })
    }

    /// Hashes `password` with argon2id, the crate's default parameters and a random salt from the OS.
    pub(crate) fn new_argon2id(password: &[u8]) -> Result<Self, AuthError> {
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(password, &salt)
            .map_err(AuthError::Hash)?;
        Ok(StoredHash {
            encoded: hash.to_string(),
            kind: HashKind::Argon2id,
        })
    }

    /// Returns whether `password` matches, comparing hashes in constant time.
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        match &self.kind {
            HashKind::Argon2id => {
                // `parse` validated the string. A string that still fails here counts as a mismatch.
                let Ok(parsed) = PasswordHash::new(&self.encoded) else {
                    return false;
                };
                // Argon2's verifier compares the outputs in constant time.
                Argon2::default().verify_password(password, &parsed).is_ok()
            }
            HashKind::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut computed = [0u8; SHA512_LEN];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations.get(), &mut computed);
                computed.ct_eq(hash).into()
            }
            HashKind::Sha512 { salt, hash } => {
                let computed = Sha512::new()
                    .chain_update(password)
                    .chain_update(salt)
                    .finalize();
                computed.as_slice().ct_eq(hash.as_slice()).into()
            }
        }
    }

    /// Returns the hash text as it appears after `username:` in the file.
    pub(crate) fn encoded(&self) -> &str {
        &self.encoded
    }

    pub(crate) fn scheme(&self) -> HashScheme {
        match self.kind {
            HashKind::Argon2id => HashScheme::Argon2id,
            HashKind::Pbkdf2Sha512 { .. } => HashScheme::MosquittoPbkdf2Sha512,
            HashKind::Sha512 { .. } => HashScheme::MosquittoSha512,
        }
    }
}

/// Prints the scheme only, never the salt or hash.
impl fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredHash")
            .field("scheme", &self.scheme())
            .finish_non_exhaustive()
    }
}

/// argon2id hash of a fixed password, verified against when the username is unknown so that
/// a miss costs about as much as a default argon2id check. `None` if the OS had no randomness.
static DUMMY_HASH: LazyLock<Option<StoredHash>> =
    LazyLock::new(|| StoredHash::new_argon2id(b"lpiotia-mqtt unknown user").ok());

/// Spends about the time of one default argon2id verification and discards the result.
pub(crate) fn verify_dummy(password: &[u8]) {
    if let Some(dummy) = DUMMY_HASH.as_ref() {
        std::hint::black_box(dummy.verify(password));
    }
}

fn parse_argon2id(encoded: &str) -> Result<HashKind, HashParseError> {
    let parsed = PasswordHash::new(encoded).map_err(HashParseError::Argon2Syntax)?;
    if parsed.algorithm != argon2::Algorithm::Argon2id.ident() {
        return Err(HashParseError::Argon2Variant(parsed.algorithm.to_string()));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(HashParseError::Argon2Incomplete);
    }
    if let Some(version) = parsed.version {
        argon2::Version::try_from(version).map_err(|_| HashParseError::Argon2Version(version))?;
    }
    argon2::Params::try_from(&parsed).map_err(HashParseError::Argon2Params)?;
    Ok(HashKind::Argon2id)
}

/// Parses `ITERATIONS$SALT$HASH`, the part after `$7$`.
fn parse_pbkdf2(rest: &str) -> Result<HashKind, HashParseError> {
    let fields: Vec<&str> = rest.split('$').collect();
    let [iterations, salt, hash] = fields[..] else {
        return Err(HashParseError::Pbkdf2Layout);
    };

    if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HashParseError::Pbkdf2Iterations);
    }
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| HashParseError::Pbkdf2Iterations)?;
    let iterations = NonZeroU32::new(iterations).ok_or(HashParseError::Pbkdf2ZeroIterations)?;
    // NOTE: the iteration count is not capped. The password file is trusted input, and a huge
    // count makes each login of that user slow instead of failing it.

    let (salt, hash) = decode_salt_and_hash('7', salt, hash)?;
    Ok(HashKind::Pbkdf2Sha512 {
        iterations,
        salt,
        hash,
    })
}

/// Parses `SALT$HASH`, the part after `$6$`.
fn parse_sha512(rest: &str) -> Result<HashKind, HashParseError> {
    let fields: Vec<&str> = rest.split('$').collect();
    let [salt, hash] = fields[..] else {
        return Err(HashParseError::Sha512Layout);
    };
    let (salt, hash) = decode_salt_and_hash('6', salt, hash)?;
    Ok(HashKind::Sha512 { salt, hash })
}

fn decode_salt_and_hash(
    scheme: char,
    salt: &str,
    hash: &str,
) -> Result<(Vec<u8>, [u8; SHA512_LEN]), HashParseError> {
    let salt = BASE64.decode(salt).map_err(|_| HashParseError::Base64 {
        scheme,
        field: "salt",
    })?;
    if salt.is_empty() {
        return Err(HashParseError::EmptySalt(scheme));
    }
    let hash = BASE64.decode(hash).map_err(|_| HashParseError::Base64 {
        scheme,
        field: "hash",
    })?;
    let hash: [u8; SHA512_LEN] =
        hash.try_into()
            .map_err(|bytes: Vec<u8>| HashParseError::HashLength {
                scheme,
                len: bytes.len(),
            })?;
    Ok((salt, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Both vectors were made with Python's hashlib, an implementation independent of this
    // crate, with salts and an iteration count that mosquitto_passwd 2.0.11 never uses
    // (it writes 12-byte salts and 101 iterations):
    //   salt = bytes(range(1, 21))
    //   hashlib.pbkdf2_hmac('sha512', b'pbkdf2 test', salt, 1000, 64)
    //   salt = b'\x00\xff\x10'
    //   hashlib.sha512(b'sha512 test' + salt).digest()
    const PBKDF2_1000_ROUNDS_20_BYTE_SALT: &str = "$7$1000$AQIDBAUGBwgJCgsMDQ4PEBESExQ=$tF+AuPS+Yq2rqAY8QYU8oV6klYEQTFDb65n9MdAKL/zV8CMZmreQOcBwiY7lX6DXbhOILciaX+Ce2rdwn9FUIQ==";
    const SHA512_3_BYTE_SALT: &str = "$6$AP8Q$kqTt5hINOmaPWCpgbvJf8ToZsaPiVHKrRpGb6D9jIZR5ZPdtRpJ9H/Xp4HiQEBJ0uXN8C6TuJaay0j4+9sdffA==";

    #[test]
    fn pbkdf2_any_iterations_and_salt_length() {
        let hash = StoredHash::parse(PBKDF2_1000_ROUNDS_20_BYTE_SALT).unwrap();
        assert_eq!(hash.scheme(), HashScheme::MosquittoPbkdf2Sha512);
        assert!(hash.verify(b"pbkdf2 test"));
        assert!(!hash.verify(b"pbkdf2 tesT"));
        assert!(!hash.verify(b""));
    }

    #[test]
    fn sha512_is_password_then_salt() {
        let hash = StoredHash::parse(SHA512_3_BYTE_SALT).unwrap();
        assert_eq!(hash.scheme(), HashScheme::MosquittoSha512);
        assert!(hash.verify(b"sha512 test"));
        assert!(!hash.verify(b"sha512 test "));
    }

    #[test]
    fn base64_padding_is_optional() {
        let unpadded = SHA512_3_BYTE_SALT.trim_end_matches('=');
        let hash = StoredHash::parse(unpadded).unwrap();
        assert!(hash.verify(b"sha512 test"));
    }

    #[test]
    fn argon2id_round_trip() {
        let hash = StoredHash::new_argon2id(b"correct horse").unwrap();
        assert!(hash.encoded().starts_with("$argon2id$v=19$"));
        assert_eq!(hash.scheme(), HashScheme::Argon2id);
        assert!(hash.verify(b"correct horse"));
        assert!(!hash.verify(b"correct horsE"));

        let reparsed = StoredHash::parse(hash.encoded()).unwrap();
        assert!(reparsed.verify(b"correct horse"));
    }

    #[test]
    fn argon2id_salts_differ() {
        let first = StoredHash::new_argon2id(b"same").unwrap();
        let second = StoredHash::new_argon2id(b"same").unwrap();
        assert_ne!(first.encoded(), second.encoded());
    }

    #[test]
    fn debug_hides_hash() {
        let hash = StoredHash::parse(SHA512_3_BYTE_SALT).unwrap();
        let debug = format!("{hash:?}");
        assert!(!debug.contains("AP8Q"), "{debug}");
        assert!(!debug.contains("kqTt"), "{debug}");
    }

    #[test]
    fn rejects_malformed_hashes() {
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA";
        type Check = fn(&HashParseError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, HashParseError::Empty)),
            ("plaintext", |e| matches!(e, HashParseError::UnknownScheme)),
            ("$5$abc$def", |e| matches!(e, HashParseError::UnknownScheme)),
            ("$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$***", |e| {
                matches!(e, HashParseError::Argon2Syntax(_))
            }),
            ("$argon2id$garbage", |e| {
                matches!(e, HashParseError::Argon2Incomplete)
            }),
            (argon2i, |e| matches!(e, HashParseError::Argon2Variant(_))),
            ("$argon2id$v=19$m=19456,t=2,p=1", |e| {
                matches!(e, HashParseError::Argon2Incomplete)
            }),
            (
                "$argon2id$v=18$m=16,t=2,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
                |e| matches!(e, HashParseError::Argon2Version(18)),
            ),
            (
                "$argon2id$v=19$m=1,t=2,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
                |e| matches!(e, HashParseError::Argon2Params(_)),
            ),
            ("$7$101$c2FsdA==", |e| {
                matches!(e, HashParseError::Pbkdf2Layout)
            }),
            ("$7$101$a$b$c", |e| {
                matches!(e, HashParseError::Pbkdf2Layout)
            }),
            ("$7$$c2FsdA==$aGFzaA==", |e| {
                matches!(e, HashParseError::Pbkdf2Iterations)
            }),
            ("$7$-5$c2FsdA==$aGFzaA==", |e| {
                matches!(e, HashParseError::Pbkdf2Iterations)
            }),
            ("$7$99999999999$c2FsdA==$aGFzaA==", |e| {
                matches!(e, HashParseError::Pbkdf2Iterations)
            }),
            ("$7$0$c2FsdA==$aGFzaA==", |e| {
                matches!(e, HashParseError::Pbkdf2ZeroIterations)
            }),
            ("$7$101$not*base64$aGFzaA==", |e| {
                matches!(e, HashParseError::Base64 { field: "salt", .. })
            }),
            ("$7$101$c2FsdA==$%%%", |e| {
                matches!(e, HashParseError::Base64 { field: "hash", .. })
            }),
            ("$7$101$$aGFzaA==", |e| {
                matches!(e, HashParseError::EmptySalt('7'))
            }),
            ("$7$101$c2FsdA==$aGFzaA==", |e| {
                matches!(
                    e,
                    HashParseError::HashLength {
                        scheme: '7',
                        len: 4
                    }
                )
            }),
            ("$6$rounds=5000$salt$hash", |e| {
                matches!(e, HashParseError::Sha512Layout)
            }),
            ("$6$c2FsdA==", |e| matches!(e, HashParseError::Sha512Layout)),
            ("$6$c2FsdA==$aGFzaA==", |e| {
                matches!(
                    e,
                    HashParseError::HashLength {
                        scheme: '6',
                        len: 4
                    }
                )
            }),
        ];
        for (encoded, expected) in cases {
            match StoredHash::parse(encoded) {
                Ok(_) => panic!("{encoded:?} was accepted"),
                Err(error) => assert!(expected(&error), "{encoded:?} gave {error:?}"),
            }
        }
    }

    #[test]
    fn crypt_sha512_is_rejected() {
        // Output of `openssl passwd -6 -salt saltsalt password`: sha512-crypt uses another
        // base64 alphabet and another construction, so it must not load as a Mosquitto $6$ hash.
        let crypt = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/";
        assert!(StoredHash::parse(crypt).is_err());
    }

    #[test]
    fn parse_errors_do_not_echo_the_hash() {
        let secret_looking = "$7$101$U0VDUkVUU0FMVA==$U0VDUkVUSEFTSA==";
        let error = StoredHash::parse(secret_looking).unwrap_err().to_string();
        assert!(!error.contains("U0VD"), "{error}");
    }
}
