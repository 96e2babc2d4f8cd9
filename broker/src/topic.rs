//! Topic names and topic filters: validation and matching.
//!
//! A topic name (in PUBLISH and wills) is non-empty and contains no wildcard. A topic filter
//! (in SUBSCRIBE) may use `+` for one whole level and `#` as its last level. Topics that
//! start with `$` are not matched by a filter whose first level is a wildcard, so `#` never
//! delivers `$SYS/...` to an ordinary subscriber.

use std::fmt;

/// Prefix of a shared subscription filter: `$share/GROUP/FILTER`.
const SHARE_PREFIX: &str = "$share/";

/// Error of validating a topic name or topic filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic contains the character U+0000")]
    NullCharacter,
    #[error("topic name contains a wildcard ('+' or '#')")]
    WildcardInName,
    #[error("'#' must be the last level of a topic filter and stand alone in its level")]
    MisplacedMultiLevelWildcard,
    #[error("'+' must stand alone in its level")]
    MisplacedSingleLevelWildcard,
    #[error("topic has {levels} levels, more than the maximum of {max}")]
    TooManyLevels { levels: usize, max: usize },
    #[error("shared subscription needs the form $share/GROUP/FILTER with a non-empty group without wildcards")]
    InvalidSharedSubscription,
}

impl TopicError {
    /// Returns whether the text breaks the syntax of topics, as opposed to a configured limit.
    pub fn is_malformed(&self) -> bool {
        !matches!(self, TopicError::TooManyLevels { .. })
    }
}

/// Checks a topic name taken from a PUBLISH or a will.
pub fn validate_topic_name(topic: &str, max_levels: usize) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    check_level_count(topic, max_levels)
}

/// Checks a topic filter without a `$share/` prefix.
pub fn validate_topic_filter(filter: &str, max_levels: usize) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    // Count before walking the levels, so a filter with 30,000 levels costs one scan.
    check_level_count(filter, max_levels)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

fn check_level_count(topic: &str, max_levels: usize) -> Result<(), TopicError> {
    let levels = topic.bytes().filter(|b| *b == b'/').count() + 1;
    if max_levels > 0 && levels > max_levels {
        return Err(TopicError::TooManyLevels { levels, max: max_levels });
    }
    Ok(())
}

/// A subscription filter split into its optional shared-subscription group and the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFilter {
    /// Group name of a `$share/GROUP/FILTER` subscription.
    pub share_group: Option<String>,
    /// The topic filter that is matched against topic names.
    pub filter: String,
}

impl SubscriptionFilter {
    /// Parses and validates a filter as it arrives in SUBSCRIBE or UNSUBSCRIBE.
    pub fn parse(raw: &str, max_levels: usize) -> Result<Self, TopicError> {
        let Some(rest) = raw.strip_prefix(SHARE_PREFIX) else {
            validate_topic_filter(raw, max_levels)?;
            return Ok(SubscriptionFilter { share_group: None, filter: raw.to_owned() });
        };
        let (group, filter) = rest.split_once('/').ok_or(TopicError::InvalidSharedSubscription)?;
        if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
            return Err(TopicError::InvalidSharedSubscription);
        }
        validate_topic_filter(filter, max_levels)?;
        Ok(SubscriptionFilter { share_group: Some(group.to_owned()), filter: filter.to_owned() })
    }
}

impl fmt::Display for SubscriptionFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.share_group {
            Some(group) => write!(f, "{SHARE_PREFIX}{group}/{}", self.filter),
            None => f.write_str(&self.filter),
        }
    }
}

/// Returns whether a valid topic filter matches a valid topic name.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_rules() {
        assert_eq!(validate_topic_name("a/b", 128), Ok(()));
        assert_eq!(validate_topic_name("", 128), Err(TopicError::Empty));
        assert_eq!(validate_topic_name("a/+", 128), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a/#", 128), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a\0b", 128), Err(TopicError::NullCharacter));
        assert_eq!(validate_topic_name("/", 128), Ok(()));
    }

    #[test]
    fn topic_filter_rules() {
        for good in ["#", "+", "a/#", "+/+/c", "/", "a//b", "$SYS/#", "sport/+/player1"] {
            assert_eq!(validate_topic_filter(good, 128), Ok(()), "{good}");
        }
        assert_eq!(validate_topic_filter("a/#/b", 128), Err(TopicError::MisplacedMultiLevelWildcard));
        assert_eq!(validate_topic_filter("a#", 128), Err(TopicError::MisplacedMultiLevelWildcard));
        assert_eq!(validate_topic_filter("a+", 128), Err(TopicError::MisplacedSingleLevelWildcard));
        assert_eq!(validate_topic_filter("+a/b", 128), Err(TopicError::MisplacedSingleLevelWildcard));
        assert_eq!(validate_topic_filter("", 128), Err(TopicError::Empty));
    }

    #[test]
    fn level_limit_applies() {
        let deep = "a/".repeat(30_000) + "a";
        assert!(matches!(validate_topic_filter(&deep, 128), Err(TopicError::TooManyLevels { .. })));
        assert!(validate_topic_filter(&deep, 0).is_ok());
    }

    #[test]
    fn shared_filter_parsing() {
        let shared = SubscriptionFilter::parse("$share/g1/a/+", 128).unwrap();
        assert_eq!(shared.share_group.as_deref(), Some("g1"));
        assert_eq!(shared.filter, "a/+");
        assert_eq!(shared.to_string(), "$share/g1/a/+");
        assert!(SubscriptionFilter::parse("$share/g1", 128).is_err());
        assert!(SubscriptionFilter::parse("$share//a", 128).is_err());
        assert!(SubscriptionFilter::parse("$share/g+/a", 128).is_err());
        assert_eq!(SubscriptionFilter::parse("a/b", 128).unwrap().share_group, None);
    }

    #[test]
    fn matching() {
        assert!(filter_matches("a/b", "a/b"));
        assert!(filter_matches("a/+", "a/b"));
        assert!(!filter_matches("a/+", "a/b/c"));
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(filter_matches("#", "a/b"));
        assert!(filter_matches("+/+", "/b"));
        assert!(!filter_matches("a/b", "a/b/c"));
        assert!(!filter_matches("#", "$SYS/x"));
        assert!(!filter_matches("+/x", "$SYS/x"));
        assert!(filter_matches("$SYS/#", "$SYS/x"));
    }
}
