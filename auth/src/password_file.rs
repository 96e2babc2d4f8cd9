//! The password file in memory: parsing, lookup, verification, edits and the text to save.

use std::collections::HashMap;
use std::fmt;

use indexmap::IndexMap;

use crate::hash::{self, HashScheme, StoredHash};
use crate::{validate_username, AuthError};

/// A loaded set of users and their password hashes, in file order.
///
/// Besides the users, it keeps blank lines, comments and lines that failed to parse, so that
/// [`to_text`](Self::to_text) and [`save`](Self::save) write back what an administrator wrote.
/// `Debug` prints the usernames only, never a hash.
#[derive(Clone, Default)]
pub struct PasswordFile {
    /// Every line in file order. A user's line refers to `users` by username.
    lines: Vec<Line>,
    /// The active hash of each user, in the order of their lines.
    users: IndexMap<String, StoredHash>,
}

#[derive(Clone)]
enum Line {
    /// A blank line, a comment or a line that failed to parse, written back unchanged.
    Verbatim(String),
    /// The line that defines a user.
    User(String),
    /// A later line for a user that an earlier line already defines. It is written back
    /// unchanged, but dropped when that user's password is set or the user is removed,
    /// because after a removal it would otherwise become the active entry on the next load.
    Duplicate { username: String, text: String },
}

/// The result of loading or parsing a password file: the users that were read, and one
/// warning for each line that was skipped.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub file: PasswordFile,
    pub warnings: Vec<LineWarning>,
}

/// A line of the password file that was skipped, so that its user, if any, cannot log in
/// through it. The reason never contains the hash or any other part of the line but the username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineWarning {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for LineWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl PasswordFile {
    /// Creates an empty password file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the text of a password file. Malformed lines become warnings and are skipped.
    ///
    /// Lines end with `\n` or `\r\n`. Blank lines and lines whose first non-blank character
    /// is `#` are ignored. Every other line is `username:hash`, with whitespace around either
    /// part trimmed. A later line for a username that an earlier line defines is skipped.
    pub fn parse(text: &str) -> LoadReport {
        parse_lines(text.lines().map(Some))
    }

    /// Returns whether `password` is the password of `username`.
    ///
    /// This costs one hash computation, an estimated tens of milliseconds for argon2id with
    /// default parameters, so async callers should run it on a blocking thread. An unknown username returns `false` after
    /// a check against a dummy argon2id hash, so that the time spent does not reveal which
    /// usernames exist. Mosquitto's `$6$` and `$7$` hashes verify much faster than argon2id,
    /// so the time does still tell their users apart from unknown ones.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(stored) => stored.verify(password),
            None => {
                hash::verify_dummy(password);
                false
            }
        }
    }

    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// Returns the usernames in file order, with users added since loading at the end.
    pub fn usernames(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// Returns the hash format of `username`'s entry, or `None` for an unknown user.
    pub fn scheme(&self, username: &str) -> Option<HashScheme> {
        self.users.get(username).map(StoredHash::scheme)
    }

    /// Returns the number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Sets `username`'s password to a new argon2id hash with a random salt, adding the user
    /// at the end if it is new. An existing user keeps the position of its line.
    pub fn set_password(&mut self, username: &str, password: &[u8]) -> Result<(), AuthError> {
        validate_username(username)?;
        let stored = StoredHash::new_argon2id(password)?;

        if let Some(existing) = self.users.get_mut(username) {
            *existing = stored;
            self.remove_duplicate_lines(username);
        } else {
            self.users.insert(username.to_owned(), stored);
            self.lines.push(Line::User(username.to_owned()));
        }
        Ok(())
    }

    /// Removes `username` and any duplicate lines for it. Returns `false` if it was not a user.
    pub fn remove(&mut self, username: &str) -> bool {
        if self.users.shift_remove(username).is_none() {
            return false;
        }
        self.lines
            .retain(|line| !matches!(line, Line::User(name) if name == username));
        self.remove_duplicate_lines(username);
        true
    }

    /// Renders the file: one line each, `\n`-terminated, in the loaded order with new users last.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            match line {
                Line::Verbatim(raw) | Line::Duplicate { text: raw, .. } => text.push_str(raw),
                Line::User(username) => {
                    text.push_str(username);
                    text.push(':');
                    text.push_str(self.users[username.as_str()].encoded());
                }
            }
            text.push('\n');
        }
        text
    }

    fn remove_duplicate_lines(&mut self, username: &str) {
        self.lines.retain(
            |line| !matches!(line, Line::Duplicate { username: name, .. } if name == username),
        );
    }
}

/// Prints the usernames and the number of other lines, never a hash.
impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let other_lines = self
            .lines
            .iter()
            .filter(|line| !matches!(line, Line::User(_)))
            .count();
        f.debug_struct("PasswordFile")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("other_lines", &other_lines)
            .finish()
    }
}

/// Builds a password file from its lines, where `None` is a line that is not valid UTF-8.
pub(crate) fn parse_lines<'a>(lines: impl Iterator<Item = Option<&'a str>>) -> LoadReport {
    let mut file = PasswordFile::new();
    let mut warnings = Vec::new();
    let mut first_line_of_user: HashMap<String, usize> = HashMap::new();

    for (index, line) in lines.enumerate() {
        let number = index + 1;
        let mut warn = |reason: String| {
            warnings.push(LineWarning {
                line: number,
                reason,
            })
        };

        let Some(line) = line else {
            // NOTE: such a line is not kept, so save() drops it from the file.
            warn("line is not valid UTF-8".to_owned());
            continue;
        };
        let content = line.trim();
        if content.is_empty() || content.starts_with('#') {
            file.lines.push(Line::Verbatim(line.to_owned()));
            continue;
        }

        let Some((username, encoded)) = content.split_once(':') else {
            warn("missing ':' between username and hash".to_owned());
            file.lines.push(Line::Verbatim(line.to_owned()));
            continue;
        };
        let username = username.trim();
        let encoded = encoded.trim();

        if let Err(error) = validate_username(username) {
            warn(error.to_string());
            file.lines.push(Line::Verbatim(line.to_owned()));
            continue;
        }
        if let Some(first) = first_line_of_user.get(username) {
            warn(format!(
                "duplicate user {username:?}; line {first} defines it, so this line is ignored"
            ));
            file.lines.push(Line::Duplicate {
                username: username.to_owned(),
                text: line.to_owned(),
            });
            continue;
        }
        let stored = match StoredHash::parse(encoded) {
            Ok(stored) => stored,
            Err(error) => {
                warn(format!("user {username:?}: {error}"));
                file.lines.push(Line::Verbatim(line.to_owned()));
                continue;
            }
        };

        first_line_of_user.insert(username.to_owned(), number);
        file.users.insert(username.to_owned(), stored);
        file.lines.push(Line::User(username.to_owned()));
    }

    LoadReport { file, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;

    // mosquitto_passwd 2.0.11 output for user "m7" with password "pw7" and for "m6" with "pw6".
    const M7: &str = "$7$101$SdJHmL3FEUEg/ls8$NFtWdoYf6wjNUogXQnxUaF4YO3dEz0Lmr77XQx19If55gioS54gRTP/zBB0F6LwF/Vk1XMitOuZ04867xRRurw==";
    const M6: &str = "$6$FK/aUGEUm7ZDnxew$LntYfuCC1HxC+gN7u4eYI8XJ7P7G1HvEf9Rp+dnG823Wqu4oMdBt2wROuLwlRBwYAOQ0UX+rdILU4gRXU/yWRA==";

    fn line_of(report: &LoadReport, line: usize) -> Vec<&LineWarning> {
        report.warnings.iter().filter(|w| w.line == line).collect()
    }

    #[test]
    fn empty_file() {
        let file = PasswordFile::new();
        assert!(file.is_empty());
        assert_eq!(file.len(), 0);
        assert_eq!(file.to_text(), "");
        assert!(!file.verify("anyone", b""));
    }

    #[test]
    fn set_password_and_verify() {
        let mut file = PasswordFile::new();
        file.set_password("alice", b"wonderland").unwrap();
        assert!(file.contains("alice"));
        assert_eq!(file.scheme("alice"), Some(HashScheme::Argon2id));
        assert!(file.verify("alice", b"wonderland"));
        assert!(!file.verify("alice", b"Wonderland"));
        assert!(!file.verify("bob", b"wonderland"));
    }

    #[test]
    fn set_password_replaces_in_place() {
        let text = format!("# users\nfirst:{M7}\nsecond:{M6}\n");
        let mut file = PasswordFile::parse(&text).file;
        file.set_password("first", b"new").unwrap();

        assert_eq!(file.usernames(), ["first", "second"]);
        assert!(file.verify("first", b"new"));
        let rendered = file.to_text();
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "# users");
        assert!(lines[1].starts_with("first:$argon2id$"), "{}", lines[1]);
        assert_eq!(lines[2], format!("second:{M6}"));
    }

    #[test]
    fn set_password_rejects_colon() {
        let mut file = PasswordFile::new();
        let result = file.set_password("a:b", b"pw");
        assert!(matches!(
            result,
            Err(AuthError::UsernameContainsColon { .. })
        ));
        assert!(file.is_empty());
    }

    #[test]
    fn usernames_in_file_order() {
        let text = format!("zed:{M7}\nalpha:{M6}\nmid:{M7}\n");
        let mut file = PasswordFile::parse(&text).file;
        file.set_password("new", b"x").unwrap();
        assert_eq!(file.usernames(), ["zed", "alpha", "mid", "new"]);
        assert_eq!(file.len(), 4);
    }

    #[test]
    fn remove_user() {
        let text = format!("a:{M7}\nb:{M6}\n");
        let mut file = PasswordFile::parse(&text).file;
        assert!(file.remove("a"));
        assert!(!file.remove("a"));
        assert!(!file.contains("a"));
        assert!(!file.verify("a", b"pw7"));
        assert_eq!(file.to_text(), format!("b:{M6}\n"));
    }

    #[test]
    fn remove_drops_duplicate_lines() {
        let text = format!("u:{M7}\nu:{M6}\n");
        let report = PasswordFile::parse(&text);
        assert_eq!(report.warnings.len(), 1);
        let mut file = report.file;
        assert!(file.remove("u"));

        let reloaded = PasswordFile::parse(&file.to_text());
        assert!(!reloaded.file.contains("u"), "duplicate line came back");
        assert!(reloaded.warnings.is_empty());
    }

    #[test]
    fn set_password_drops_duplicate_lines() {
        let text = format!("u:{M7}\nu:{M6}\n");
        let mut file = PasswordFile::parse(&text).file;
        file.set_password("u", b"fresh").unwrap();
        let reloaded = PasswordFile::parse(&file.to_text());
        assert!(reloaded.warnings.is_empty(), "{:?}", reloaded.warnings);
        assert!(reloaded.file.verify("u", b"fresh"));
    }

    #[test]
    fn mosquitto_hashes_verify() {
        let text = format!("m7:{M7}\nm6:{M6}\n");
        let report = PasswordFile::parse(&text);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let file = report.file;
        assert_eq!(file.scheme("m7"), Some(HashScheme::MosquittoPbkdf2Sha512));
        assert_eq!(file.scheme("m6"), Some(HashScheme::MosquittoSha512));
        assert!(file.verify("m7", b"pw7"));
        assert!(file.verify("m6", b"pw6"));
        assert!(!file.verify("m7", b"pw6"));
        assert!(!file.verify("m6", b"pw7"));
    }

    #[test]
    fn text_round_trip_keeps_comments_and_bad_lines() {
        let text = format!("# header\n\nm7:{M7}\n  # indented comment\nbroken line\nm6:{M6}\n");
        let report = PasswordFile::parse(&text);
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.file.to_text(), text);
    }

    #[test]
    fn crlf_and_surrounding_whitespace() {
        let text = format!("m7:{M7}\r\n  m6 : {M6}  \r\n");
        let report = PasswordFile::parse(&text);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert!(report.file.verify("m7", b"pw7"));
        assert!(report.file.verify("m6", b"pw6"));
    }

    #[test]
    fn malformed_lines_warn_with_line_numbers() {
        let text = [
            "# comment",                                // 1
            "",                                         // 2
            "nocolon",                                  // 3
            &format!(":{M7}"),                          // 4 empty username
            "plain:secret",                             // 5 unknown hash format
            "empty:",                                   // 6 no hash
            "zero:$7$0$c2FsdA==$aGFzaA==",              // 7 zero iterations
            "badsalt:$7$101$***$aGFzaA==",              // 8 bad base64
            &format!("good:{M7}"),                      // 9
            &format!("good:{M6}"),                      // 10 duplicate
            "six:$6$c2FsdA==$!!",                       // 11 bad base64 hash
            "argon:$argon2id$v=19$m=19456,t=2,p=1$bad", // 12 malformed PHC string
            &format!("ctl\u{1}name:{M7}"),              // 13 control character
        ]
        .join("\n");
        let report = PasswordFile::parse(&text);

        let expected_lines = [3, 4, 5, 6, 7, 8, 10, 11, 12, 13];
        let warned: Vec<usize> = report.warnings.iter().map(|w| w.line).collect();
        assert_eq!(warned, expected_lines, "{:#?}", report.warnings);

        assert!(line_of(&report, 3)[0].reason.contains("missing ':'"));
        assert!(line_of(&report, 4)[0].reason.contains("username is empty"));
        assert!(line_of(&report, 5)[0]
            .reason
            .contains("unknown hash format"));
        assert!(line_of(&report, 6)[0].reason.contains("hash is empty"));
        assert!(line_of(&report, 7)[0]
            .reason
            .contains("iteration count is 0"));
        assert!(line_of(&report, 8)[0]
            .reason
            .contains("salt is not valid base64"));
        assert!(line_of(&report, 10)[0].reason.contains("line 9"));
        assert!(line_of(&report, 11)[0]
            .reason
            .contains("hash is not valid base64"));
        assert!(line_of(&report, 12)[0].reason.contains("argon2id"));
        assert!(line_of(&report, 13)[0].reason.contains("control character"));

        assert_eq!(report.file.usernames(), ["good"]);
        assert!(report.file.verify("good", b"pw7"), "first line must win");
        assert!(!report.file.verify("good", b"pw6"));
    }

    #[test]
    fn skipped_users_cannot_log_in() {
        let text = "plain:secret\nempty:\nzero:$7$0$c2FsdA==$aGFzaA==\n";
        let file = PasswordFile::parse(text).file;
        for (user, password) in [
            ("plain", "secret"),
            ("plain", ""),
            ("empty", ""),
            ("zero", ""),
        ] {
            assert!(!file.contains(user));
            assert!(!file.verify(user, password.as_bytes()), "{user} logged in");
        }
    }

    #[test]
    fn warnings_do_not_echo_hashes_or_passwords() {
        let text = "plain:hunter2\nnocolonhunter3\nbad:$7$101$aHVudGVyNA==$aHVudGVyNA==\n";
        let report = PasswordFile::parse(text);
        assert_eq!(report.warnings.len(), 3);
        for warning in &report.warnings {
            let message = warning.to_string();
            assert!(!message.contains("hunter"), "{message}");
            assert!(!message.contains("aHVud"), "{message}");
        }
    }

    #[test]
    fn warning_display_format() {
        let warning = LineWarning {
            line: 7,
            reason: "missing ':' between username and hash".to_owned(),
        };
        assert_eq!(
            warning.to_string(),
            "line 7: missing ':' between username and hash"
        );
    }

    #[test]
    fn debug_hides_hashes() {
        let mut file = PasswordFile::parse(&format!("m7:{M7}\nm6:{M6}\n")).file;
        file.set_password("a", b"pw").unwrap();
        let debug = format!("{file:?}");
        assert!(debug.contains("m7"), "{debug}");
        assert!(!debug.contains('$'), "{debug}");
        assert!(!debug.contains("SdJHmL3F"), "{debug}");
    }
}
