//! Topic access control lists in Mosquitto's `acl_file` format: parsing, topic checks and
//! subscription checks.

use std::fs;

use lpiotia_auth::acl::{Access, AclError, AclFile, LineProblem};

const CLIENT_ID: &str = "client-1";

fn parse(text: &str) -> AclFile {
    AclFile::parse(text).unwrap_or_else(|error| panic!("{text:?} should parse: {error}"))
}

fn can_read(acl: &AclFile, username: Option<&str>, topic: &str) -> bool {
    acl.allows(username, CLIENT_ID, topic, Access::Read)
}

fn can_write(acl: &AclFile, username: Option<&str>, topic: &str) -> bool {
    acl.allows(username, CLIENT_ID, topic, Access::Write)
}

fn can_subscribe(acl: &AclFile, username: Option<&str>, filter: &str) -> bool {
    acl.allows_subscribe(username, CLIENT_ID, filter)
}

/// Parses `text`, which must be rejected, and returns the line number and problem.
fn invalid_line(text: &str) -> (usize, LineProblem) {
    match AclFile::parse(text) {
        Err(AclError::InvalidLine { line, problem, .. }) => (line, problem),
        other => panic!("{text:?} should be rejected with an invalid line, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Blocks, access words and precedence

#[test]
fn anonymous_block_applies_without_username() {
    let acl = parse("topic read public/#\nuser alice\ntopic readwrite home/alice/#\n");

    assert!(can_read(&acl, None, "public/news"));
    assert!(!can_read(&acl, Some("alice"), "public/news"));
    assert!(!can_read(&acl, None, "home/alice/lamp"));
}

#[test]
fn user_block_applies_to_its_user_only() {
    let acl = parse("user alice\ntopic home/alice/#\nuser bob\ntopic home/bob/#\n");

    assert!(can_write(&acl, Some("alice"), "home/alice/lamp"));
    assert!(!can_write(&acl, Some("alice"), "home/bob/lamp"));
    assert!(can_write(&acl, Some("bob"), "home/bob/lamp"));
    assert!(!can_write(&acl, Some("carol"), "home/alice/lamp"));
    assert!(!can_write(&acl, None, "home/alice/lamp"));
}

#[test]
fn user_blocks_of_same_name_merge() {
    let acl = parse("user alice\ntopic read a\nuser bob\ntopic read b\nuser alice\ntopic read c\n");

    assert!(can_read(&acl, Some("alice"), "a"));
    assert!(can_read(&acl, Some("alice"), "c"));
    assert!(!can_read(&acl, Some("alice"), "b"));
}

#[test]
fn username_with_spaces() {
    let acl = parse("user Jane Doe\ntopic read jane/#\n");

    assert!(can_read(&acl, Some("Jane Doe"), "jane/x"));
    assert!(!can_read(&acl, Some("Jane"), "jane/x"));
}

#[test]
fn access_words_grant_their_access() {
    let acl = parse("topic read r\ntopic write w\ntopic readwrite rw\n");

    assert!(can_read(&acl, None, "r"));
    assert!(!can_write(&acl, None, "r"));
    assert!(!can_read(&acl, None, "w"));
    assert!(can_write(&acl, None, "w"));
    assert!(can_read(&acl, None, "rw"));
    assert!(can_write(&acl, None, "rw"));
}

#[test]
fn access_defaults_to_readwrite() {
    let acl = parse("topic sensors/#\n");

    assert!(can_read(&acl, None, "sensors/t1"));
    assert!(can_write(&acl, None, "sensors/t1"));
}

#[test]
fn filter_may_contain_spaces_after_access() {
    let acl = parse("topic read living room/lamp\n");

    assert!(can_read(&acl, None, "living room/lamp"));
    assert!(!can_read(&acl, None, "living"));
}

#[test]
fn deny_wins_in_any_order() {
    for text in [
        "topic readwrite home/#\ntopic deny home/secret\n",
        "topic deny home/secret\ntopic readwrite home/#\n",
    ] {
        let acl = parse(text);
        assert!(can_read(&acl, None, "home/lamp"), "{text:?}");
        assert!(!can_read(&acl, None, "home/secret"), "{text:?}");
        assert!(!can_write(&acl, None, "home/secret"), "{text:?}");
    }
}

#[test]
fn deny_applies_across_user_and_pattern_rules() {
    let acl = parse(
        "pattern deny home/%u/secret\npattern read shared/#\nuser alice\ntopic home/#\ntopic deny shared/private\n",
    );

    assert!(can_read(&acl, Some("alice"), "home/alice/lamp"));
    assert!(!can_read(&acl, Some("alice"), "home/alice/secret"));
    assert!(can_read(&acl, Some("alice"), "home/bob/secret"));
    assert!(can_read(&acl, Some("alice"), "shared/news"));
    assert!(!can_read(&acl, Some("alice"), "shared/private"));
}

#[test]
fn empty_file_denies_everything() {
    for text in ["", "\n\n", "# only a comment\n   \n"] {
        let acl = parse(text);
        assert_eq!(acl.rule_count(), 0, "{text:?}");
        assert!(!can_read(&acl, None, "a"), "{text:?}");
        assert!(!can_write(&acl, Some("alice"), "a"), "{text:?}");
        assert!(!can_subscribe(&acl, None, "#"), "{text:?}");
    }
    assert!(!can_read(&AclFile::default(), None, "a"));
}

#[test]
fn comments_blank_lines_and_whitespace_ignored() {
    let acl = parse("\n# comment\n   # indented comment\n\t topic read a/b  \r\n  user alice \r\n topic\tread\tc\n");

    assert_eq!(acl.rule_count(), 2);
    assert!(can_read(&acl, None, "a/b"));
    assert!(can_read(&acl, Some("alice"), "c"));
}

#[test]
fn rule_count_counts_every_block() {
    let acl = parse(
        "topic a\npattern b/%u\nuser alice\ntopic c\ntopic d\nuser bob\ntopic e\npattern f\n",
    );

    assert_eq!(acl.rule_count(), 6);
}

// ---------------------------------------------------------------------------------------------
// Topic matching

#[test]
fn single_level_wildcard_matches_one_level() {
    let acl = parse("topic read a/+/c\n");

    assert!(can_read(&acl, None, "a/b/c"));
    assert!(can_read(&acl, None, "a//c"));
    assert!(!can_read(&acl, None, "a/c"));
    assert!(!can_read(&acl, None, "a/b/x/c"));
    assert!(!can_read(&acl, None, "a/b/c/d"));
}

#[test]
fn multi_level_wildcard_matches_parent_and_rest() {
    let acl = parse("topic read a/#\n");

    assert!(can_read(&acl, None, "a"));
    assert!(can_read(&acl, None, "a/b"));
    assert!(can_read(&acl, None, "a/b/c"));
    assert!(!can_read(&acl, None, "ab"));
    assert!(!can_read(&acl, None, "b/a"));
}

#[test]
fn literal_filter_matches_exactly() {
    let acl = parse("topic read a/b\n");

    assert!(can_read(&acl, None, "a/b"));
    assert!(!can_read(&acl, None, "a"));
    assert!(!can_read(&acl, None, "a/b/c"));
    assert!(!can_read(&acl, None, "a/B"));
}

#[test]
fn wildcards_skip_dollar_topics() {
    let acl = parse("topic read #\ntopic read +/broker/#\n");

    assert!(can_read(&acl, None, "sensors/t1"));
    assert!(!can_read(&acl, None, "$SYS/broker/uptime"));
    assert!(!can_read(&acl, None, "$share/x"));
}

#[test]
fn dollar_topics_need_literal_first_level() {
    let acl = parse("topic read $SYS/#\n");

    assert!(can_read(&acl, None, "$SYS/broker/uptime"));
    assert!(can_read(&acl, None, "$SYS"));
    assert!(!can_read(&acl, None, "SYS/broker"));
}

#[test]
fn topic_with_wildcard_denied() {
    let acl = parse("topic #\n");

    assert!(!can_write(&acl, None, "a/+"));
    assert!(!can_write(&acl, None, "a/#"));
    assert!(!can_write(&acl, None, ""));
}

// ---------------------------------------------------------------------------------------------
// Patterns

#[test]
fn pattern_substitutes_username() {
    let acl = parse("pattern readwrite sensors/%u/#\n");

    assert!(can_write(&acl, Some("alice"), "sensors/alice/t1"));
    assert!(can_write(&acl, Some("alice"), "sensors/alice"));
    assert!(!can_write(&acl, Some("alice"), "sensors/bob/t1"));
    assert!(!can_write(&acl, Some("bob"), "sensors/alice/t1"));
}

#[test]
fn pattern_with_username_skips_anonymous() {
    let acl = parse("pattern readwrite sensors/%u/#\n");

    assert!(!can_write(&acl, None, "sensors/%u/t1"));
    assert!(!can_write(&acl, None, "sensors//t1"));
    assert!(!can_write(&acl, Some(""), "sensors//t1"));
}

#[test]
fn pattern_substitutes_client_id() {
    let acl = parse("pattern write devices/%c/status\n");

    assert!(acl.allows(None, "dev-7", "devices/dev-7/status", Access::Write));
    assert!(acl.allows(
        Some("alice"),
        "dev-7",
        "devices/dev-7/status",
        Access::Write
    ));
    assert!(!acl.allows(None, "dev-7", "devices/dev-8/status", Access::Write));
    assert!(!acl.allows(None, "dev-7", "devices/dev-7/status", Access::Read));
    assert!(!acl.allows(None, "", "devices//status", Access::Write));
}

#[test]
fn pattern_with_username_and_client_id() {
    let acl = parse("pattern read %u/%c/#\n");

    assert!(acl.allows(Some("alice"), "phone", "alice/phone/inbox", Access::Read));
    assert!(!acl.allows(Some("alice"), "phone", "alice/laptop/inbox", Access::Read));
    assert!(!acl.allows(Some("alice"), "phone", "phone/alice/inbox", Access::Read));
    assert!(!acl.allows(None, "phone", "alice/phone/inbox", Access::Read));
}

#[test]
fn pattern_applies_wherever_it_appears() {
    let acl = parse("user alice\ntopic read a\npattern read p/%c\nuser bob\n");

    assert!(acl.allows(None, "x", "p/x", Access::Read));
    assert!(acl.allows(Some("alice"), "x", "p/x", Access::Read));
    assert!(acl.allows(Some("bob"), "x", "p/x", Access::Read));
    assert!(acl.allows(Some("carol"), "x", "p/x", Access::Read));
}

#[test]
fn pattern_skips_dollar_topics_at_substituted_level() {
    let acl = parse("pattern read %u/#\n");

    assert!(can_read(&acl, Some("alice"), "alice/x"));
    assert!(!can_read(&acl, Some("$SYS"), "$SYS/broker/uptime"));
}

#[test]
fn substitution_is_literal_in_topic_lines() {
    let acl = parse("topic read sensors/%u\n");

    assert!(can_read(&acl, None, "sensors/%u"));
    assert!(!can_read(&acl, Some("alice"), "sensors/alice"));
}

#[test]
fn percent_without_substitution_is_literal() {
    let acl = parse("pattern read load/100%/%u\n");

    assert!(can_read(&acl, Some("alice"), "load/100%/alice"));
}

#[test]
fn wildcard_username_never_matches_pattern() {
    let acl = parse("pattern read sensors/%u/#\n");

    for username in ["+", "#", "a+b", "a#"] {
        assert!(
            !can_subscribe(&acl, Some(username), "sensors/+/#"),
            "{username:?}"
        );
        assert!(
            !can_subscribe(&acl, Some(username), "sensors/#"),
            "{username:?}"
        );
        assert!(
            !can_subscribe(&acl, Some(username), &format!("sensors/{username}")),
            "{username:?}"
        );
    }
    assert!(can_subscribe(&acl, Some("alice"), "sensors/alice/#"));
}

#[test]
fn wildcard_client_id_never_matches_pattern() {
    let acl = parse("pattern read devices/%c/#\n");

    for client_id in ["+", "#", "x+", "#x"] {
        assert!(
            !acl.allows_subscribe(None, client_id, "devices/+/#"),
            "{client_id:?}"
        );
        assert!(
            !acl.allows_subscribe(None, client_id, "devices/#"),
            "{client_id:?}"
        );
    }
    assert!(acl.allows_subscribe(None, "dev-7", "devices/dev-7/#"));
}

#[test]
fn client_id_with_slash_never_matches_pattern() {
    let acl = parse("pattern readwrite devices/%c/#\n");

    assert!(acl.allows(None, "victim", "devices/victim/cmd/x", Access::Write));
    assert!(!acl.allows(None, "victim/cmd", "devices/victim/cmd/x", Access::Write));
    assert!(!acl.allows(None, "victim/cmd", "devices/victim/cmd", Access::Write));
}

#[test]
fn wildcard_username_still_gets_user_block() {
    let acl = parse("pattern read p/%u\nuser a+b\ntopic read own\n");

    assert!(can_read(&acl, Some("a+b"), "own"));
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

#[test]
fn subscribe_multi_level_covers_narrower_filters() {
    let acl = parse("topic read a/#\n");

    for filter in ["a/#", "a/b/+", "a/+/c/#", "a", "a/b", "a/+"] {
        assert!(can_subscribe(&acl, None, filter), "{filter:?}");
    }
    for filter in ["#", "+/b", "+", "b/#", "ab"] {
        assert!(!can_subscribe(&acl, None, filter), "{filter:?}");
    }
}

#[test]
fn subscribe_single_level_does_not_cover_multi_level() {
    let acl = parse("topic read a/+\n");

    assert!(can_subscribe(&acl, None, "a/b"));
    assert!(can_subscribe(&acl, None, "a/+"));
    assert!(!can_subscribe(&acl, None, "a/#"));
    assert!(!can_subscribe(&acl, None, "a/b/c"));
    assert!(!can_subscribe(&acl, None, "a"));
}

#[test]
fn subscribe_literal_covers_same_literal_only() {
    let acl = parse("topic read a/b\n");

    assert!(can_subscribe(&acl, None, "a/b"));
    assert!(!can_subscribe(&acl, None, "a/+"));
    assert!(!can_subscribe(&acl, None, "a/#"));
    assert!(!can_subscribe(&acl, None, "a/b/#"));
}

#[test]
fn subscribe_dollar_topics_need_literal_rule() {
    let acl = parse("topic read #\n");

    assert!(can_subscribe(&acl, None, "#"));
    assert!(can_subscribe(&acl, None, "+/x"));
    assert!(!can_subscribe(&acl, None, "$SYS/#"));
    assert!(!can_subscribe(&acl, None, "$SYS/broker/uptime"));

    let acl = parse("topic read $SYS/#\n");
    assert!(can_subscribe(&acl, None, "$SYS/#"));
    assert!(can_subscribe(&acl, None, "$SYS/broker/+"));
    assert!(!can_subscribe(&acl, None, "#"));
    assert!(!can_subscribe(&acl, None, "+/broker/#"));
}

#[test]
fn subscribe_needs_read_access() {
    let acl = parse("topic write w/#\ntopic readwrite rw/#\n");

    assert!(!can_subscribe(&acl, None, "w/x"));
    assert!(can_subscribe(&acl, None, "rw/x"));
}

#[test]
fn subscribe_rejected_by_covering_deny() {
    let acl = parse("topic read a/#\ntopic deny a/secret/#\n");

    assert!(!can_subscribe(&acl, None, "a/secret/#"));
    assert!(!can_subscribe(&acl, None, "a/secret/x"));
    assert!(!can_subscribe(&acl, None, "a/secret"));
}

#[test]
fn subscribe_allowed_despite_partial_deny() {
    let acl = parse("topic read a/#\ntopic deny a/secret\n");

    assert!(can_subscribe(&acl, None, "a/#"));
    assert!(can_subscribe(&acl, None, "a/+"));
    assert!(!can_read(&acl, None, "a/secret"));
}

#[test]
fn subscribe_pattern_covers_own_level() {
    let acl = parse("pattern read sensors/%u/#\n");

    assert!(can_subscribe(&acl, Some("alice"), "sensors/alice/#"));
    assert!(can_subscribe(&acl, Some("alice"), "sensors/alice/+/t"));
    assert!(!can_subscribe(&acl, Some("alice"), "sensors/+/#"));
    assert!(!can_subscribe(&acl, Some("alice"), "sensors/bob/#"));
    assert!(!can_subscribe(&acl, None, "sensors/alice/#"));
}

#[test]
fn subscribe_invalid_filter_denied() {
    let acl = parse("topic read #\n");

    for filter in ["", "a/#/b", "a+", "a/b#", "#/a"] {
        assert!(!can_subscribe(&acl, None, filter), "{filter:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Invalid lines

#[test]
fn unknown_keyword_rejected() {
    let (line, problem) = invalid_line("# comment\n\ntopic read a\ntpoic read b\n");

    assert_eq!(line, 4);
    assert_eq!(
        problem,
        LineProblem::UnknownKeyword {
            keyword: "tpoic".to_owned()
        }
    );
}

#[test]
fn unknown_access_rejected() {
    let (line, problem) = invalid_line("user alice\n\ntopic red a/b\n");

    assert_eq!(line, 3);
    assert_eq!(
        problem,
        LineProblem::UnknownAccess {
            access: "red".to_owned()
        }
    );
}

#[test]
fn filter_with_spaces_needs_access() {
    let (line, problem) = invalid_line("topic living room/lamp\n");

    assert_eq!(line, 1);
    assert_eq!(
        problem,
        LineProblem::UnknownAccess {
            access: "living".to_owned()
        }
    );
}

#[test]
fn missing_filter_rejected() {
    for (text, expected_line) in [
        ("topic\n", 1),
        ("topic a\ntopic read\n", 2),
        ("topic a\n\npattern deny   \n", 3),
        ("pattern\n", 1),
    ] {
        let (line, problem) = invalid_line(text);
        assert_eq!(line, expected_line, "{text:?}");
        assert_eq!(problem, LineProblem::MissingFilter, "{text:?}");
    }
}

#[test]
fn missing_username_rejected() {
    for text in ["user\n", "topic a\nuser   \t\n"] {
        let (line, problem) = invalid_line(text);
        assert_eq!(line, text.lines().count(), "{text:?}");
        assert_eq!(problem, LineProblem::MissingUsername, "{text:?}");
    }
}

#[test]
fn multi_level_wildcard_not_last_rejected() {
    let (line, problem) = invalid_line("topic a\ntopic read a/#/b\n");

    assert_eq!(line, 2);
    assert_eq!(
        problem,
        LineProblem::MultiLevelWildcardNotLast {
            filter: "a/#/b".to_owned()
        }
    );
}

#[test]
fn wildcard_sharing_level_rejected() {
    for (filter, wildcard) in [("a+", '+'), ("a/+b/c", '+'), ("#x", '#'), ("a/b#", '#')] {
        let (line, problem) = invalid_line(&format!("topic read {filter}\n"));
        assert_eq!(line, 1, "{filter:?}");
        assert_eq!(
            problem,
            LineProblem::WildcardInLevel {
                filter: filter.to_owned(),
                wildcard
            },
            "{filter:?}"
        );
    }
}

#[test]
fn null_character_rejected() {
    let (line, problem) = invalid_line("topic read a/\0/b\n");

    assert_eq!(line, 1);
    assert_eq!(problem, LineProblem::NullCharacter);
}

#[test]
fn partial_substitution_rejected() {
    for level in ["a%u", "%u-x", "%count", "x%cy"] {
        let text = format!("# comment\npattern read sensors/{level}/#\n");
        let (line, problem) = invalid_line(&text);
        assert_eq!(line, 2, "{level:?}");
        assert_eq!(
            problem,
            LineProblem::PartialSubstitution {
                level: level.to_owned()
            },
            "{level:?}"
        );
    }
}

#[test]
fn error_message_names_line_text_and_fix() {
    let error = AclFile::parse("topic a\n\ntopic red a/b\n").unwrap_err();
    let message = error.to_string();
    let problem = LineProblem::UnknownAccess {
        access: "red".to_owned(),
    };

    assert!(message.starts_with("line 3: "), "{message}");
    assert!(message.contains(&problem.to_string()), "{message}");
    assert!(message.contains("\"topic red a/b\""), "{message}");
    assert!(message.ends_with(problem.fix()), "{message}");
}

#[test]
fn every_problem_has_its_own_fix() {
    let problems = [
        LineProblem::UnknownKeyword {
            keyword: "x".to_owned(),
        },
        LineProblem::UnknownAccess {
            access: "x".to_owned(),
        },
        LineProblem::MissingFilter,
        LineProblem::MissingUsername,
        LineProblem::MultiLevelWildcardNotLast {
            filter: "a/#/b".to_owned(),
        },
        LineProblem::WildcardInLevel {
            filter: "a+".to_owned(),
            wildcard: '+',
        },
        LineProblem::WildcardInLevel {
            filter: "a#".to_owned(),
            wildcard: '#',
        },
        LineProblem::NullCharacter,
        LineProblem::PartialSubstitution {
            level: "a%u".to_owned(),
        },
    ];
    for (index, problem) in problems.iter().enumerate() {
        for other in &problems[index + 1..] {
            assert_ne!(problem.fix(), other.fix(), "{problem:?} and {other:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files

#[test]
fn load_reads_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl");
    fs::write(&path, "user alice\ntopic read a/#\n").unwrap();

    let acl = AclFile::load(&path).unwrap();

    assert_eq!(acl.rule_count(), 1);
    assert!(can_read(&acl, Some("alice"), "a/b"));
}

#[test]
fn load_error_names_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl");
    fs::write(&path, "topic a\ntopic read a/#/b\n").unwrap();

    let error = AclFile::load(&path).unwrap_err();
    let message = error.to_string();

    assert!(
        matches!(&error, AclError::InvalidLine { path: Some(p), line: 2, .. } if *p == path),
        "{error:?}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("line 2: "), "{message}");
}

#[test]
fn load_missing_file_names_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.acl");

    let error = AclFile::load(&path).unwrap_err();

    assert!(
        matches!(&error, AclError::Read { path: p, .. } if *p == path),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn load_skips_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl");
    fs::write(&path, "\u{feff}topic read a\n").unwrap();

    let acl = AclFile::load(&path).unwrap();

    assert!(can_read(&acl, None, "a"));
}
