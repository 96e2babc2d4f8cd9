//! Topic access control lists in the format of Mosquitto's `acl_file`.
//!
//! ```text
//! # Clients without a username.
//! topic read public/#
//!
//! user alice
//! topic readwrite home/alice/#
//! topic deny home/alice/secret
//!
//! # Every client: %u is its username, %c its client id.
//! pattern write devices/%c/status
//! ```
//!
//! Contract:
//! - Blank lines and lines whose first non-blank character is `#` are ignored.
//! - `topic [read|write|readwrite|deny] FILTER` lines before the first `user NAME` line apply
//!   to clients without a username. Later ones apply to the client with username NAME.
//!   `pattern` lines apply to every client wherever they appear. Without an access word the
//!   rule grants readwrite, and a filter that contains spaces needs the access word.
//! - A check is denied when an applicable `deny` rule matches, allowed when an applicable rule
//!   grants the requested access, and denied otherwise. A file without rules denies everything.
//! - A filter whose first level is not literal (`+`, `#`, `%u`, `%c`) never matches a topic
//!   that starts with `$`, so `topic read #` does not grant `$SYS/...`.
//! - In a `pattern`, `%u` and `%c` each fill one whole level. They never match for a client
//!   without a username, or whose username or client id is empty or contains `+`, `#` or `/`.
//! - Loading fails at the first invalid line, and the error names its line number.
//! - Checks allocate nothing, because rule filters are split into levels at load time.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The access a client requests on a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Receiving the messages published to the topic.
    Read,
    /// Publishing to the topic.
    Write,
}

/// Topic access rules loaded from an ACL file.
///
/// `Default` is the empty file, which denies everything.
#[derive(Clone, Debug, Default)]
pub struct AclFile {
    /// `topic` rules before the first `user` line, for clients without a username.
    anonymous: Vec<Rule>,
    /// `topic` rules of each username, gathered from all of its `user` blocks.
    users: HashMap<String, Vec<Rule>>,
    /// `pattern` rules, which apply to every client.
    patterns: Vec<Rule>,
}

/// A failure to load an ACL file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// The ACL file could not be read, or it is not UTF-8.
    // The I/O error is part of the message and not a `source`, so that a caller printing the
    // error chain does not print it twice.
    #[error("failed to read ACL file {}: {error}; check that it exists, that this user may read it and that it is UTF-8", path.display())]
    Read { path: PathBuf, error: io::Error },

    /// A line is invalid, so the whole file is rejected.
    #[error("{}line {line}: {problem} in {text:?}; {}", FilePrefix(path.as_deref()), problem.fix())]
    InvalidLine {
        /// The file, or `None` for text given to [`AclFile::parse`].
        path: Option<PathBuf>,
        /// 1-based line number.
        line: usize,
        /// The line without its surrounding whitespace.
        text: String,
        problem: LineProblem,
    },
}

/// The reason a line of an ACL file is invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineProblem {
    /// The first word is not `user`, `topic` or `pattern`.
    UnknownKeyword { keyword: String },
    /// The word before the topic filter is not `read`, `write`, `readwrite` or `deny`.
    UnknownAccess { access: String },
    /// A `topic` or `pattern` line has no topic filter.
    MissingFilter,
    /// A `user` line has no username.
    MissingUsername,
    /// The topic filter has levels after `#`.
    MultiLevelWildcardNotLast { filter: String },
    /// `+` or `#` shares a level of the topic filter with other characters.
    WildcardInLevel { filter: String, wildcard: char },
    /// The topic filter contains U+0000, which MQTT forbids in topics.
    NullCharacter,
    /// A level of a `pattern` contains `%u` or `%c` next to other text.
    PartialSubstitution { level: String },
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKeyword { keyword } => write!(f, "unknown keyword {keyword:?}"),
            Self::UnknownAccess { access } => write!(f, "unknown access {access:?}"),
            Self::MissingFilter => f.write_str("missing topic filter"),
            Self::MissingUsername => f.write_str("missing username"),
            Self::MultiLevelWildcardNotLast { filter } => {
                write!(
                    f,
                    "invalid topic filter {filter:?}: '#' is not the last level"
                )
            }
            Self::WildcardInLevel { filter, wildcard } => write!(
                f,
                "invalid topic filter {filter:?}: '{wildcard}' shares a level with other characters"
            ),
            Self::NullCharacter => f.write_str("invalid topic filter: it contains U+0000"),
            Self::PartialSubstitution { level } => {
                write!(f, "pattern level {level:?} mixes %u or %c with other text")
            }
        }
    }
}

impl LineProblem {
    /// Returns a hint on how to correct the line.
    pub fn fix(&self) -> &'static str {
        match self {
            Self::UnknownKeyword { .. } => {
                "start the line with user, topic or pattern, or with '#' to make it a comment"
            }
            Self::UnknownAccess { .. } => {
                "use read, write, readwrite or deny, which a topic filter containing spaces needs in front of it"
            }
            Self::MissingFilter => {
                "write the topic filter after the access, as in \"topic read sensors/#\""
            }
            Self::MissingUsername => "write the username after the keyword, as in \"user alice\"",
            Self::MultiLevelWildcardNotLast { .. } => {
                "end the filter at '#', as in \"sensors/#\""
            }
            Self::WildcardInLevel { wildcard: '#', .. } => {
                "write '#' as a whole last level, as in \"sensors/#\""
            }
            Self::WildcardInLevel { .. } => {
                "write '+' as a whole level, as in \"sensors/+/temperature\""
            }
            Self::NullCharacter => "remove the U+0000 character from the filter",
            Self::PartialSubstitution { .. } => {
                "write %u or %c as a whole level, as in \"sensors/%u/#\""
            }
        }
    }
}

/// Formats `ACL file PATH, ` in front of a line number, or nothing for text without a file.
struct FilePrefix<'a>(Option<&'a Path>);

impl fmt::Display for FilePrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "ACL file {}, ", path.display()),
            None => Ok(()),
        }
    }
}

/// The access one rule grants, or `Deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RuleAccess {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl RuleAccess {
    fn parse(word: &str) -> Option<Self> {
        match word {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "readwrite" => Some(Self::ReadWrite),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }

    fn grants(self, access: Access) -> bool {
        match access {
            Access::Read => matches!(self, Self::Read | Self::ReadWrite),
            Access::Write => matches!(self, Self::Write | Self::ReadWrite),
        }
    }
}

/// One level of a rule's topic filter.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Level {
    Literal(Box<str>),
    /// `+`
    SingleLevelWildcard,
    /// `#`, which the parser allows only as the last level.
    MultiLevelWildcard,
    /// `%u` in a `pattern`.
    Username,
    /// `%c` in a `pattern`.
    ClientId,
}

#[derive(Clone, Debug)]
struct Rule {
    access: RuleAccess,
    /// The topic filter split at `/`. It has at least one level.
    levels: Box<[Level]>,
}

/// The values that `%u` and `%c` stand for in one check, or `None` for a missing or empty
/// value, which would give every such client the same empty level.
#[derive(Clone, Copy)]
struct Substitutions<'a> {
    username: Option<&'a str>,
    client_id: Option<&'a str>,
}

impl<'a> Substitutions<'a> {
    fn new(username: Option<&'a str>, client_id: &'a str) -> Self {
        Self {
            username: username.filter(|name| !name.is_empty()),
            client_id: Some(client_id).filter(|id| !id.is_empty()),
        }
    }
}

impl Level {
    /// Returns whether this level matches `name`, one level of a topic name or a literal level
    /// of a valid topic filter.
    ///
    /// `%u` and `%c` compare their whole value with `name`. So a value with `/` never matches,
    /// and a value with `+` or `#` never does either, because `name` cannot contain them. A
    /// textual substitution would instead let client id `alice/x` reach below `alice` under
    /// `devices/%c/#`, and username `+` subscribe to `sensors/+/#` under `sensors/%u/#`.
    fn matches_name(&self, name: &str, substitutions: Substitutions<'_>) -> bool {
        match self {
            Self::Literal(literal) => **literal == *name,
            Self::SingleLevelWildcard | Self::MultiLevelWildcard => true,
            Self::Username => substitutions.username == Some(name),
            Self::ClientId => substitutions.client_id == Some(name),
        }
    }
}

impl Rule {
    /// Returns whether the rule's filter matches `topic`, a topic name without wildcards.
    fn matches(&self, topic: &str, substitutions: Substitutions<'_>) -> bool {
        if topic.starts_with('$') && !self.starts_with_literal() {
            return false;
        }
        let mut topic_levels = topic.split('/');
        for level in self.levels.iter() {
            if *level == Level::MultiLevelWildcard {
                return true;
            }
            let Some(name) = topic_levels.next() else {
                return false;
            };
            if !level.matches_name(name, substitutions) {
                return false;
            }
        }
        topic_levels.next().is_none()
    }

    /// Returns whether the rule's filter matches every topic that `filter`, a valid topic
    /// filter, can match.
    fn covers(&self, filter: &str, substitutions: Substitutions<'_>) -> bool {
        // A filter that starts with `$` has a literal first level, which only the same
        // literal covers. Wildcards and substitutions at the rule's first level skip `$` topics.
        if filter.starts_with('$') && !self.starts_with_literal() {
            return false;
        }
        let mut filter_levels = filter.split('/');
        for level in self.levels.iter() {
            if *level == Level::MultiLevelWildcard {
                return true;
            }
            let Some(filter_level) = filter_levels.next() else {
                return false;
            };
            let covered = match filter_level {
                "#" => false,
                "+" => *level == Level::SingleLevelWildcard,
                name => level.matches_name(name, substitutions),
            };
            if !covered {
                return false;
            }
        }
        filter_levels.next().is_none()
    }

    fn starts_with_literal(&self) -> bool {
        matches!(self.levels.first(), Some(Level::Literal(_)))
    }
}

impl AclFile {
    /// Parses the text of an ACL file. Lines end with `\n` or `\r\n`.
    pub fn parse(text: &str) -> Result<Self, AclError> {
        parse_text(text, None)
    }

    /// Reads and parses the ACL file at `path`. Errors name the path.
    pub fn load(path: &Path) -> Result<Self, AclError> {
        let text = std::fs::read_to_string(path).map_err(|error| AclError::Read {
            path: path.to_owned(),
            error,
        })?;
        parse_text(&text, Some(path))
    }

    /// Returns whether a client may read or write `topic`, a topic name.
    ///
    /// A topic that is empty or contains a wildcard is not a topic name and is denied.
    pub fn allows(
        &self,
        username: Option<&str>,
        client_id: &str,
        topic: &str,
        access: Access,
    ) -> bool {
        if topic.is_empty() || topic.contains(['+', '#']) {
            return false;
        }
        let substitutions = Substitutions::new(username, client_id);
        let mut granted = false;
        for rule in self.rules_for(username) {
            if !rule.matches(topic, substitutions) {
                continue;
            }
            if rule.access == RuleAccess::Deny {
                return false;
            }
            granted |= rule.access.grants(access);
        }
        granted
    }

    /// Returns whether a client may subscribe to `filter`, a topic filter.
    ///
    /// One applicable read or readwrite rule must match every topic that `filter` matches,
    /// and no applicable deny rule may do so. A deny rule that matches only some of those
    /// topics does not reject the subscription, so the broker must also check each message
    /// it delivers with [`allows`](Self::allows) and [`Access::Read`]. An invalid filter is
    /// denied.
    ///
    /// NOTE: a shared subscription must be checked without its `$share/GROUP/` prefix, which
    /// this function does not strip.
    pub fn allows_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        if !is_valid_filter(filter) {
            return false;
        }
        let substitutions = Substitutions::new(username, client_id);
        let mut granted = false;
        for rule in self.rules_for(username) {
            if !rule.covers(filter, substitutions) {
                continue;
            }
            if rule.access == RuleAccess::Deny {
                return false;
            }
            granted |= rule.access.grants(Access::Read);
        }
        granted
    }

    /// Returns the number of `topic` and `pattern` rules.
    pub fn rule_count(&self) -> usize {
        let user_rules: usize = self.users.values().map(Vec::len).sum();
        self.anonymous.len() + user_rules + self.patterns.len()
    }

    /// Returns the `topic` rules of `username`, then the `pattern` rules.
    fn rules_for(&self, username: Option<&str>) -> impl Iterator<Item = &Rule> {
        let own = match username {
            None => self.anonymous.as_slice(),
            Some(name) => self.users.get(name).map_or(&[][..], Vec::as_slice),
        };
        own.iter().chain(self.patterns.iter())
    }
}

fn parse_text(text: &str, path: Option<&Path>) -> Result<AclFile, AclError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut acl = AclFile::default();
    // The username of the current `user` block, or `None` before the first one.
    let mut user: Option<&str> = None;

    for (index, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let invalid = |problem| AclError::InvalidLine {
            path: path.map(Path::to_owned),
            line: index + 1,
            text: line.to_owned(),
            problem,
        };

        let (keyword, rest) = split_first_word(line);
        match keyword {
            "user" if rest.is_empty() => return Err(invalid(LineProblem::MissingUsername)),
            "user" => user = Some(rest),
            "topic" => {
                let rule = parse_rule(rest, false).map_err(invalid)?;
                match user {
                    None => acl.anonymous.push(rule),
                    Some(name) => acl.users.entry(name.to_owned()).or_default().push(rule),
                }
            }
            "pattern" => acl.patterns.push(parse_rule(rest, true).map_err(invalid)?),
            _ => {
                return Err(invalid(LineProblem::UnknownKeyword {
                    keyword: keyword.to_owned(),
                }))
            }
        }
    }
    Ok(acl)
}

/// Splits `text` at its first whitespace into a word and the rest without leading whitespace.
fn split_first_word(text: &str) -> (&str, &str) {
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (text, ""),
    }
}

/// Parses `[ACCESS] FILTER`, the part of a `topic` or `pattern` line after its keyword.
///
/// A single word is the filter with readwrite access, unless it is an access word. With more
/// words, the first must be the access and the rest of the line is the filter.
fn parse_rule(text: &str, is_pattern: bool) -> Result<Rule, LineProblem> {
    if text.is_empty() {
        return Err(LineProblem::MissingFilter);
    }
    let (first, rest) = split_first_word(text);
    let (access, filter) = match RuleAccess::parse(first) {
        Some(_) if rest.is_empty() => return Err(LineProblem::MissingFilter),
        Some(access) => (access, rest),
        None if rest.is_empty() => (RuleAccess::ReadWrite, first),
        None => {
            return Err(LineProblem::UnknownAccess {
                access: first.to_owned(),
            })
        }
    };
    Ok(Rule {
        access,
        levels: parse_filter(filter, is_pattern)?,
    })
}

/// Splits a non-empty topic filter into levels. `%u` and `%c` levels are substitutions only
/// in a pattern, and literal text in a `topic` line, as in Mosquitto.
fn parse_filter(filter: &str, is_pattern: bool) -> Result<Box<[Level]>, LineProblem> {
    if filter.contains('\0') {
        return Err(LineProblem::NullCharacter);
    }
    let level_count = filter.split('/').count();
    filter
        .split('/')
        .enumerate()
        .map(|(index, text)| {
            let is_last = index + 1 == level_count;
            match text {
                "#" if is_last => Ok(Level::MultiLevelWildcard),
                "#" => Err(LineProblem::MultiLevelWildcardNotLast {
                    filter: filter.to_owned(),
                }),
                "+" => Ok(Level::SingleLevelWildcard),
                "%u" if is_pattern => Ok(Level::Username),
                "%c" if is_pattern => Ok(Level::ClientId),
                _ => parse_literal_level(text, filter, is_pattern),
            }
        })
        .collect()
}

fn parse_literal_level(text: &str, filter: &str, is_pattern: bool) -> Result<Level, LineProblem> {
    for wildcard in ['#', '+'] {
        if text.contains(wildcard) {
            return Err(LineProblem::WildcardInLevel {
                filter: filter.to_owned(),
                wildcard,
            });
        }
    }
    if is_pattern && (text.contains("%u") || text.contains("%c")) {
        return Err(LineProblem::PartialSubstitution {
            level: text.to_owned(),
        });
    }
    Ok(Level::Literal(text.into()))
}

/// Returns whether `filter` is a valid MQTT topic filter: non-empty, with `+` only as a whole
/// level and `#` only as the whole last level.
fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let valid = match level {
            "+" => true,
            "#" => levels.peek().is_none(),
            _ => !level.contains(['+', '#']),
        };
        if !valid {
            return false;
        }
    }
    true
}
