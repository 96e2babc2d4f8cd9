//! Rules for usernames that the password file can store and read back unchanged.

use crate::AuthError;

/// Maximum length in bytes of an MQTT UTF-8 encoded string, and so of a username.
pub const MAX_USERNAME_LEN: usize = 65535;

/// Checks that `name` can be a username in the password file.
///
/// A valid username is non-empty and at most 65535 bytes of UTF-8, the MQTT string limit.
/// It contains no `:` and no control character, and it does not start with `#`, which marks
/// a comment line. It has no leading or trailing whitespace, because the file format trims
/// it, as Mosquitto does.
pub fn validate_username(name: &str) -> Result<(), AuthError> {
    if name.is_empty() {
        return Err(AuthError::EmptyUsername);
    }
    if name.len() > MAX_USERNAME_LEN {
        return Err(AuthError::UsernameTooLong { len: name.len() });
    }
    if name.contains(':') {
        return Err(AuthError::UsernameContainsColon {
            username: name.to_owned(),
        });
    }
    if name.chars().any(char::is_control) {
        return Err(AuthError::UsernameContainsControl {
            username: name.to_owned(),
        });
    }
    if name.starts_with('#') {
        return Err(AuthError::UsernameStartsWithHashSign {
            username: name.to_owned(),
        });
    }
    if name.trim() != name {
        return Err(AuthError::UsernameSurroundingWhitespace {
            username: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["alice", "sensor-01", "küche.thermostat", "a b", "x#y", "🙂"] {
            assert!(validate_username(name).is_ok(), "{name:?} should be valid");
        }
    }

    #[test]
    fn rejects_empty() {
        assert!(matches!(
            validate_username(""),
            Err(AuthError::EmptyUsername)
        ));
    }

    #[test]
    fn rejects_colon() {
        for name in [":", "a:b", "alice:", ":alice"] {
            let result = validate_username(name);
            assert!(
                matches!(result, Err(AuthError::UsernameContainsColon { .. })),
                "{name:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn rejects_control_characters() {
        for name in ["a\0b", "a\nb", "a\tb", "a\rb", "a\u{7f}b", "a\u{85}b"] {
            let result = validate_username(name);
            assert!(
                matches!(result, Err(AuthError::UsernameContainsControl { .. })),
                "{name:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn rejects_leading_hash_sign() {
        let result = validate_username("#alice");
        assert!(matches!(
            result,
            Err(AuthError::UsernameStartsWithHashSign { .. })
        ));
    }

    #[test]
    fn rejects_surrounding_whitespace() {
        for name in [" alice", "alice ", "\u{a0}alice"] {
            let result = validate_username(name);
            assert!(
                matches!(result, Err(AuthError::UsernameSurroundingWhitespace { .. })),
                "{name:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn length_limit_in_bytes() {
        let longest = "a".repeat(MAX_USERNAME_LEN);
        assert!(validate_username(&longest).is_ok());

        let too_long = "a".repeat(MAX_USERNAME_LEN + 1);
        assert!(matches!(
            validate_username(&too_long),
            Err(AuthError::UsernameTooLong { len }) if len == MAX_USERNAME_LEN + 1
        ));

        // 'é' is two bytes in UTF-8, so 32768 of them exceed the limit.
        let multibyte = "é".repeat(32768);
        assert!(matches!(
            validate_username(&multibyte),
            Err(AuthError::UsernameTooLong { .. })
        ));
    }
}
