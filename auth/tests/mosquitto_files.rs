//! Interoperability with password files written by Mosquitto's `mosquitto_passwd`.
//!
//! `tests/fixtures/mosquitto_passwd` was written by mosquitto_passwd 2.0.11 (Debian 12):
//!
//! ```text
//! mosquitto_passwd -c -b mosquitto_passwd sensor7 'fixture-pbkdf2'
//! mosquitto_passwd -H sha512 -b mosquitto_passwd legacy6 'fixture-sha512'
//! mosquitto_passwd -b mosquitto_passwd 'grüße' 'pässwörd 🙂'
//! ```
//!
//! The other tests run the installed `mosquitto_passwd` and fail when it is missing, because
//! a skipped test would hide a format change in a new Mosquitto release.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use lpiotia_auth::{HashScheme, PasswordFile};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/mosquitto_passwd"
);

/// (username, password, scheme) of each line of the fixture, in file order.
const FIXTURE_USERS: [(&str, &str, HashScheme); 3] = [
    (
        "sensor7",
        "fixture-pbkdf2",
        HashScheme::MosquittoPbkdf2Sha512,
    ),
    ("legacy6", "fixture-sha512", HashScheme::MosquittoSha512),
    ("grüße", "pässwörd 🙂", HashScheme::MosquittoPbkdf2Sha512),
];

/// Passwords that exercise separators, whitespace, non-ASCII bytes and length.
fn sample_passwords() -> Vec<String> {
    vec![
        "pass".to_owned(),
        "with:colon and space".to_owned(),
        "$6$looks-like-a-hash$".to_owned(),
        "ünïcödé 🙂".to_owned(),
        "x".repeat(200),
    ]
}

/// Returns the path of `mosquitto_passwd`, failing the test if it is not on PATH.
fn mosquitto_passwd() -> PathBuf {
    let found = env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|dir| dir.join("mosquitto_passwd"))
            .find(|candidate| candidate.is_file())
    });
    found.expect(
        "mosquitto_passwd is not on PATH; install Debian's mosquitto package \
         (apt-get install -y mosquitto) to run the interoperability tests",
    )
}

/// Runs `mosquitto_passwd ARGS` and fails the test with its output if it exits non-zero.
fn run_mosquitto_passwd(args: &[&str]) {
    let output = Command::new(mosquitto_passwd())
        .args(args)
        .output()
        .expect("failed to start mosquitto_passwd");
    assert!(
        output.status.success(),
        "mosquitto_passwd {args:?} failed with {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// Creates a file with mosquitto_passwd, one user per sample password, and checks that each
/// user verifies with its own password only.
fn check_generated_file(hash_option: &[&str], expected: HashScheme) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    let path_arg = path.to_str().unwrap();
    let passwords = sample_passwords();

    for (index, password) in passwords.iter().enumerate() {
        let username = format!("user{index}");
        let mut args: Vec<&str> = hash_option.to_vec();
        if index == 0 {
            args.push("-c");
        }
        args.extend(["-b", path_arg, &username, password]);
        run_mosquitto_passwd(&args);
    }

    let report = PasswordFile::load(&path).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let file = report.file;
    assert_eq!(file.len(), passwords.len());

    for (index, password) in passwords.iter().enumerate() {
        let username = format!("user{index}");
        assert_eq!(file.scheme(&username), Some(expected), "{username}");
        assert!(
            file.verify(&username, password.as_bytes()),
            "{username} rejected"
        );
        assert!(
            !file.verify(&username, b"wrong"),
            "{username} took a wrong password"
        );

        let mut altered = password.clone().into_bytes();
        altered.push(b'!');
        assert!(
            !file.verify(&username, &altered),
            "{username} took password + '!'"
        );

        let other = &passwords[(index + 1) % passwords.len()];
        assert!(
            !file.verify(&username, other.as_bytes()),
            "{username} took another user's password"
        );
    }
}

#[test]
fn fixture_verifies() {
    let report = PasswordFile::load(Path::new(FIXTURE)).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let file = report.file;

    let expected_names: Vec<&str> = FIXTURE_USERS.iter().map(|(name, _, _)| *name).collect();
    assert_eq!(file.usernames(), expected_names);

    for (username, password, scheme) in FIXTURE_USERS {
        assert_eq!(file.scheme(username), Some(scheme), "{username}");
        assert!(
            file.verify(username, password.as_bytes()),
            "{username} rejected"
        );
        assert!(
            !file.verify(username, b"wrong"),
            "{username} took a wrong password"
        );
        assert!(
            !file.verify(username, b""),
            "{username} took an empty password"
        );
    }
    assert!(!file.verify("sensor7", b"fixture-sha512"));
    assert!(!file.verify("unknown", b"fixture-pbkdf2"));
}

#[test]
fn fixture_survives_save() {
    let original = fs::read_to_string(FIXTURE).unwrap();
    let mut file = PasswordFile::load(Path::new(FIXTURE)).unwrap().file;
    file.set_password("added", b"argon2 password").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    file.save(&path).unwrap();

    // The Mosquitto lines are written back byte for byte, so Mosquitto can still read them.
    let saved = fs::read_to_string(&path).unwrap();
    assert!(saved.starts_with(&original), "saved file:\n{saved}");

    let reloaded = PasswordFile::load(&path).unwrap();
    assert!(reloaded.warnings.is_empty(), "{:?}", reloaded.warnings);
    for (username, password, _) in FIXTURE_USERS {
        assert!(
            reloaded.file.verify(username, password.as_bytes()),
            "{username}"
        );
    }
    assert!(reloaded.file.verify("added", b"argon2 password"));
}

#[test]
fn pbkdf2_files_from_mosquitto_passwd() {
    check_generated_file(&[], HashScheme::MosquittoPbkdf2Sha512);
}

#[test]
fn sha512_files_from_mosquitto_passwd() {
    check_generated_file(&["-H", "sha512"], HashScheme::MosquittoSha512);
}

#[test]
fn mixed_file_from_mosquitto_passwd() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    let path_arg = path.to_str().unwrap();

    run_mosquitto_passwd(&["-c", "-b", path_arg, "seven", "pw-seven"]);
    run_mosquitto_passwd(&["-H", "sha512", "-b", path_arg, "six", "pw-six"]);
    run_mosquitto_passwd(&["-H", "sha512-pbkdf2", "-b", path_arg, "gone", "pw-gone"]);
    run_mosquitto_passwd(&["-D", path_arg, "gone"]);
    // Updating a user rewrites its line with a new salt and password.
    run_mosquitto_passwd(&["-b", path_arg, "seven", "pw-seven-2"]);

    let report = PasswordFile::load(&path).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let file = report.file;
    assert_eq!(file.usernames(), ["seven", "six"]);
    assert!(file.verify("seven", b"pw-seven-2"));
    assert!(!file.verify("seven", b"pw-seven"));
    assert!(file.verify("six", b"pw-six"));
    assert!(!file.verify("gone", b"pw-gone"));
}

#[test]
fn plain_text_file_converted_by_mosquitto_passwd() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    fs::write(&path, "alpha:first secret\nbeta:second secret\n").unwrap();

    // Before conversion a plain-text password is a malformed hash, never a login.
    let before = PasswordFile::load(&path).unwrap();
    assert_eq!(before.warnings.len(), 2, "{:?}", before.warnings);
    assert!(!before.file.verify("alpha", b"first secret"));

    run_mosquitto_passwd(&["-U", path.to_str().unwrap()]);

    let after = PasswordFile::load(&path).unwrap();
    assert!(after.warnings.is_empty(), "{:?}", after.warnings);
    assert!(after.file.verify("alpha", b"first secret"));
    assert!(after.file.verify("beta", b"second secret"));
    assert!(!after.file.verify("alpha", b"second secret"));
}
