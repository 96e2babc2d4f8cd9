//! PKCS#12 files as OpenSSL and NSS (Firefox, Chrome on Linux) import them.

use std::path::Path;

use super::{openssl, run_tool, DataDir};
use crate::{issue_client, issue_client_with, ClientOptions, Pkcs12Encryption};

/// Reads the PKCS#12 file with OpenSSL and returns its PEM output.
fn openssl_read_p12(p12: &Path, password: &str) -> String {
    let passin = format!("pass:{password}");
    let output = openssl([
        "pkcs12".as_ref(),
        "-nodes".as_ref(),
        "-passin".as_ref(),
        passin.as_ref(),
        "-in".as_ref(),
        p12.as_os_str(),
    ]);
    assert!(
        output.status.success(),
        "openssl cannot read {}: {}",
        p12.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Imports the PKCS#12 file into a new NSS database and returns `certutil -L` of it.
fn nss_import(p12: &Path, password: &str) -> String {
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sql:{}", db_dir.path().display());
    let create = run_tool("certutil", "libnss3-tools", ["-N", "-d", &db, "--empty-password"]);
    assert!(create.status.success(), "certutil -N failed: {}", String::from_utf8_lossy(&create.stderr));

    let import = run_tool(
        "pk12util",
        "libnss3-tools",
        ["-i".as_ref(), p12.as_os_str(), "-d".as_ref(), db.as_ref(), "-W".as_ref(), password.as_ref()],
    );
    let import_text = String::from_utf8_lossy(&import.stdout).into_owned() + &String::from_utf8_lossy(&import.stderr);
    assert!(import.status.success(), "pk12util cannot import {}: {import_text}", p12.display());

    let keys = run_tool("certutil", "libnss3-tools", ["-K", "-d", &db]);
    assert!(keys.status.success(), "certutil -K failed: {}", String::from_utf8_lossy(&keys.stderr));
    let certs = run_tool("certutil", "libnss3-tools", ["-L", "-d", &db]);
    String::from_utf8_lossy(&keys.stdout).into_owned() + &String::from_utf8_lossy(&certs.stdout)
}

#[test]
fn pkcs12_imports_with_openssl() {
    let data = DataDir::with_ca_and_server(None);
    let bundle = issue_client(&data.path, "browser", Some("p12 pass"), None, 30).unwrap();

    let pem = openssl_read_p12(&bundle.p12_file, "p12 pass");
    assert!(pem.contains("-----BEGIN PRIVATE KEY-----"), "no key in the PKCS#12 file:\n{pem}");
    assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 2, "expected client and CA certificates:\n{pem}");
    assert!(pem.contains("friendlyName: browser"), "friendly name missing:\n{pem}");

    let info = openssl([
        "pkcs12".as_ref(),
        "-info".as_ref(),
        "-noout".as_ref(),
        "-passin".as_ref(),
        "pass:p12 pass".as_ref(),
        "-in".as_ref(),
        bundle.p12_file.as_os_str(),
    ]);
    let info_text = String::from_utf8_lossy(&info.stderr).into_owned() + &String::from_utf8_lossy(&info.stdout);
    assert!(info_text.contains("AES-256-CBC"), "not AES-256-encrypted:\n{info_text}");
    assert!(info_text.contains("MAC: sha256"), "MAC is not HMAC-SHA256:\n{info_text}");

    let passin = "pass:wrong";
    let wrong = openssl([
        "pkcs12".as_ref(),
        "-nodes".as_ref(),
        "-passin".as_ref(),
        passin.as_ref(),
        "-in".as_ref(),
        bundle.p12_file.as_os_str(),
    ]);
    assert!(!wrong.status.success(), "openssl reads the PKCS#12 file with a wrong password");
}

#[test]
fn pkcs12_imports_with_nss() {
    let data = DataDir::with_ca_and_server(None);
    let bundle = issue_client(&data.path, "firefox", Some("p12 pass"), None, 30).unwrap();
    let listing = nss_import(&bundle.p12_file, "p12 pass");
    assert!(listing.contains("firefox"), "NSS database lacks the client certificate or key:\n{listing}");
    assert!(listing.contains("test CA"), "NSS database lacks the CA certificate:\n{listing}");
}

#[test]
fn pkcs12_empty_password_imports() {
    let data = DataDir::with_ca_and_server(None);
    let bundle = issue_client(&data.path, "nopass", None, None, 30).unwrap();
    let pem = openssl_read_p12(&bundle.p12_file, "");
    assert!(pem.contains("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let listing = nss_import(&bundle.p12_file, "");
    assert!(listing.contains("nopass"), "{listing}");
}

#[test]
fn pkcs12_legacy_imports() {
    let data = DataDir::with_ca_and_server(None);
    let options = ClientOptions {
        p12_password: Some("old".to_owned()),
        p12_encryption: Pkcs12Encryption::Legacy3Des,
        validity_days: 30,
        ..ClientOptions::default()
    };
    let bundle = issue_client_with(&data.path, "legacy", &options, None).unwrap();

    let info = openssl([
        "pkcs12".as_ref(),
        "-info".as_ref(),
        "-noout".as_ref(),
        "-passin".as_ref(),
        "pass:old".as_ref(),
        "-in".as_ref(),
        bundle.p12_file.as_os_str(),
    ]);
    let info_text = String::from_utf8_lossy(&info.stderr).into_owned() + &String::from_utf8_lossy(&info.stdout);
    assert!(info_text.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "not 3DES-encrypted:\n{info_text}");
    let pem = openssl_read_p12(&bundle.p12_file, "old");
    assert!(pem.contains("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let listing = nss_import(&bundle.p12_file, "old");
    assert!(listing.contains("legacy"), "{listing}");
}
