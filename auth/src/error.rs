//! Errors of the password file and of username validation.

use std::io;
use std::path::PathBuf;

/// A failure to read, change or write the password file.
///
/// No variant carries a password or a hash, so every message is safe to log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The password file could not be read.
    #[error("failed to read password file {}: {source}; check that it exists and that this user may read it", path.display())]
    Read { path: PathBuf, source: io::Error },

    /// The directory meant to contain the password file could not be created.
    #[error("failed to create directory {} for the password file: {source}; create it or choose another path", path.display())]
    CreateDir { path: PathBuf, source: io::Error },

    /// Writing the temporary file, flushing it to disk or renaming it over the password file failed.
    #[error("failed to write password file {}: {source}; check that this user may write to its directory", path.display())]
    Write { path: PathBuf, source: io::Error },

    /// The username is the empty string.
    #[error("username is empty; choose a non-empty username")]
    EmptyUsername,

    /// The username contains `:`, which separates the username from the hash in the password file.
    #[error("invalid username {username:?}: ':' separates username and hash in the password file; choose a username without ':'")]
    UsernameContainsColon { username: String },

    /// The username contains a control character (U+0000 to U+001F, U+007F to U+009F).
    #[error("invalid username {username:?}: it contains a control character; choose a username of printable characters")]
    UsernameContainsControl { username: String },

    /// The username is longer than an MQTT UTF-8 string allows.
    #[error("invalid username: it is {len} bytes long, but MQTT allows at most 65535 bytes; choose a shorter username")]
    UsernameTooLong { len: usize },

    /// The username starts with `#`, so its line would be read back as a comment.
    #[error("invalid username {username:?}: a line starting with '#' is a comment in the password file; choose a username that does not start with '#'")]
    UsernameStartsWithHashSign { username: String },

    /// The username starts or ends with whitespace, which the password file format trims away.
    #[error("invalid username {username:?}: the password file trims whitespace around usernames; remove the leading or trailing whitespace")]
    UsernameSurroundingWhitespace { username: String },

    /// argon2 failed to hash a new password.
    #[error("failed to hash the password with argon2id: {0}")]
    Hash(argon2::password_hash::Error),
}
