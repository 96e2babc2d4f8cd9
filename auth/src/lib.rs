//! The password file of lpiotia-mqtt, shared by all listeners of the broker.
//!
//! The file has Mosquitto's format: one `username:hash` line per user, where blank lines and
//! lines starting with `#` are ignored. Hashes may be argon2id PHC strings, which this crate
//! writes for every password it sets, or Mosquitto's `$7$` (PBKDF2-HMAC-SHA512) and `$6$`
//! (salted SHA-512) hashes, so a file made by `mosquitto_passwd` works unchanged.
//!
//! Contract:
//! - A line that cannot be parsed (no `:`, invalid username, unknown or malformed hash,
//!   duplicate user) is skipped with a [`LineWarning`] naming its line number. Its user can
//!   never log in through it, and loading still succeeds with the other users.
//! - [`PasswordFile::verify`] compares hashes in constant time and costs one hash computation,
//!   for unknown users too. Call it from a blocking thread in async code.
//! - [`PasswordFile::save`] replaces the file atomically with mode 0600. It keeps comments and
//!   skipped lines, except lines that were not valid UTF-8.
//! - No `Debug` or `Display` output of this crate contains a password or a hash.
//!
//! The [`acl`] module reads topic access control lists in Mosquitto's `acl_file` format.

#![forbid(unsafe_code)]

pub mod acl;
mod error;
mod hash;
mod password_file;
mod storage;
mod username;

pub use acl::{Access, AclError, AclFile, LineProblem};
pub use error::AuthError;
pub use hash::HashScheme;
pub use password_file::{LineWarning, LoadReport, PasswordFile};
pub use username::{validate_username, MAX_USERNAME_LEN};
