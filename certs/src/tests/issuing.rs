//! CA, server and client certificates as OpenSSL reads them, file modes, passphrases, names.

use std::net::IpAddr;

use time::{Duration, OffsetDateTime};

use super::{mode_of, openssl_on, openssl_verify, DataDir};
use crate::ca::Validity;
use crate::issue::issue_client_for_period;
use crate::{
    bootstrap, default_server_names, expiry_warnings, fingerprint_sha256, init_ca, issue_client, issue_client_with,
    issue_server, list, show, validate_client_name, CaOptions, CertError, CertKind, ClientOptions, KeyType,
};

#[test]
fn ca_and_server_verify_with_openssl() {
    let data = DataDir::with_ca_and_server(None);

    let (ok, output) = openssl_verify(&data, &data.join("ca.crt"), "any", false);
    assert!(ok, "openssl rejects the CA certificate: {output}");
    let (ok, output) = openssl_verify(&data, &data.join("server.crt"), "sslserver", true);
    assert!(ok, "openssl rejects the server certificate: {output}");

    let output = openssl_on(&["x509", "-noout", "-text"], &data.join("ca.crt"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(text.contains("CA:TRUE"), "CA certificate lacks CA:TRUE:\n{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "CA certificate lacks keyCertSign and cRLSign:\n{text}");
}

#[test]
fn server_certificate_has_names_and_usage() {
    let data = DataDir::new();
    init_ca(&data.path, &CaOptions::default(), false).unwrap();
    let names = vec!["broker.example".to_owned(), "localhost".to_owned()];
    let ips: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap(), "::1".parse().unwrap()];
    let info = issue_server(&data.path, &names, &ips, KeyType::EcdsaP256, None, 10).unwrap();

    assert_eq!(info.kind, CertKind::Server);
    assert_eq!(info.common_name, "broker.example");
    for expected in ["DNS:broker.example", "DNS:localhost", "IP:192.0.2.7", "IP:::1"] {
        assert!(info.sans.iter().any(|san| san == expected), "missing {expected} in {:?}", info.sans);
    }
    assert!((9..=10).contains(&info.days_left()), "days_left {} for a 10-day certificate", info.days_left());
    let (ok, output) = openssl_verify(&data, &data.join("server.crt"), "sslclient", false);
    assert!(!ok, "a server certificate must not pass as a client certificate: {output}");
}

#[test]
fn rsa_server_key_verifies() {
    let data = DataDir::new();
    init_ca(&data.path, &CaOptions::default(), false).unwrap();
    issue_server(&data.path, &["localhost".to_owned()], &[], KeyType::Rsa2048, None, 10).unwrap();

    let (ok, output) = openssl_verify(&data, &data.join("server.crt"), "sslserver", false);
    assert!(ok, "openssl rejects the RSA server certificate: {output}");
    let key = openssl_on(&["pkey", "-noout", "-text"], &data.join("server.key"));
    let text = String::from_utf8_lossy(&key.stdout);
    assert!(text.contains("2048 bit"), "server key is not RSA 2048: {text}");
}

#[test]
fn client_certificate_verifies_as_client() {
    let data = DataDir::with_ca_and_server(None);
    let bundle = issue_client(&data.path, "sensor-1", None, None, 30).unwrap();

    assert_eq!(bundle.info.kind, CertKind::Client);
    assert_eq!(bundle.info.common_name, "sensor-1");
    assert_eq!(bundle.cert_file, data.join("clients/sensor-1/sensor-1.crt"));
    for file in [&bundle.cert_file, &bundle.key_file, &bundle.ca_file, &bundle.p12_file] {
        assert!(file.is_file(), "{} was not written", file.display());
    }
    assert_eq!(std::fs::read(&bundle.ca_file).unwrap(), std::fs::read(data.join("ca.crt")).unwrap());

    let (ok, output) = openssl_verify(&data, &bundle.cert_file, "sslclient", true);
    assert!(ok, "openssl rejects the client certificate: {output}");
    let (ok, output) = openssl_verify(&data, &bundle.cert_file, "sslserver", false);
    assert!(!ok, "a client certificate must not pass as a server certificate: {output}");
}

#[test]
fn keys_are_private_files() {
    let data = DataDir::with_ca_and_server(None);
    let bundle = issue_client(&data.path, "sensor", None, None, 30).unwrap();

    for key in [data.join("ca.key"), data.join("server.key"), bundle.key_file.clone(), bundle.p12_file.clone()] {
        assert_eq!(mode_of(&key), 0o600, "{} must be mode 0600", key.display());
    }
    for public in [data.join("ca.crt"), data.join("server.crt"), data.join("crl.pem"), bundle.cert_file.clone()] {
        assert_eq!(mode_of(&public), 0o644, "{} must be mode 0644", public.display());
    }
}

#[test]
fn encrypted_ca_key_needs_passphrase() {
    let data = DataDir::with_ca_and_server(Some("correct horse"));
    let key_text = std::fs::read_to_string(data.join("ca.key")).unwrap();
    assert!(
        key_text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "CA key is not encrypted PKCS#8:\n{key_text}"
    );

    let missing = issue_client(&data.path, "a", None, None, 30).unwrap_err();
    assert!(matches!(missing, CertError::PassphraseRequired { .. }), "without passphrase: {missing}");
    let wrong = issue_client(&data.path, "a", None, Some("wrong horse"), 30).unwrap_err();
    assert!(matches!(wrong, CertError::WrongPassphrase { .. }), "wrong passphrase: {wrong}");
    assert!(wrong.to_string().contains("ca.key"), "error does not name the key file: {wrong}");

    issue_client(&data.path, "a", None, Some("correct horse"), 30).unwrap();
    let read = openssl_on(&["pkey", "-noout", "-passin", "pass:correct horse"], &data.join("ca.key"));
    assert!(read.status.success(), "openssl cannot decrypt the CA key: {}", String::from_utf8_lossy(&read.stderr));
}

#[test]
fn init_ca_keeps_existing_files() {
    let data = DataDir::with_ca_and_server(None);
    let before = std::fs::read(data.join("ca.crt")).unwrap();

    let error = init_ca(&data.path, &CaOptions::default(), false).unwrap_err();
    assert!(matches!(error, CertError::AlreadyExists { .. }), "{error}");
    assert!(error.to_string().contains("--force"), "error does not name the fix: {error}");
    assert_eq!(std::fs::read(data.join("ca.crt")).unwrap(), before);

    init_ca(&data.path, &CaOptions::default(), true).unwrap();
    assert_ne!(std::fs::read(data.join("ca.crt")).unwrap(), before, "force did not replace the CA");
    let (ok, _) = openssl_verify(&data, &data.join("server.crt"), "sslserver", false);
    assert!(!ok, "the old server certificate still verifies against the new CA");
}

#[test]
fn live_client_certificate_is_not_replaced() {
    let data = DataDir::with_ca_and_server(None);
    let first = issue_client(&data.path, "sensor", None, None, 30).unwrap();

    let error = issue_client(&data.path, "sensor", None, None, 30).unwrap_err();
    assert!(matches!(error, CertError::ClientExists { .. }), "{error}");
    assert!(error.to_string().contains("certs revoke sensor"), "error does not name the fix: {error}");
    assert_eq!(show(&first.cert_file).unwrap().serial, first.info.serial);
}

#[test]
fn expired_client_certificate_can_be_replaced() {
    let data = DataDir::with_ca_and_server(None);
    let now = OffsetDateTime::now_utc();
    let past = Validity { not_before: now - Duration::days(30), not_after: now - Duration::days(1) };
    let expired = issue_client_for_period(&data.path, "old", &ClientOptions::default(), None, past).unwrap();
    assert!(expired.info.is_expired());
    let (ok, output) = openssl_verify(&data, &expired.cert_file, "sslclient", false);
    assert!(!ok, "openssl accepts an expired certificate: {output}");
    assert!(output.contains("expired"), "openssl rejects for another reason: {output}");

    let renewed = issue_client(&data.path, "old", None, None, 30).unwrap();
    assert_ne!(renewed.info.serial, expired.info.serial);
    assert!(!renewed.info.is_expired());
}

#[test]
fn client_names_are_checked() {
    for valid in ["a", "sensor-1", "tank_2.esp", &"x".repeat(64)] {
        assert!(validate_client_name(valid).is_ok(), "{valid:?} should be valid");
    }
    for invalid in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(65), "../etc"] {
        let error = validate_client_name(invalid).unwrap_err();
        assert!(error.to_string().contains("1 to 64 characters"), "{invalid:?}: {error}");
    }
    let data = DataDir::with_ca_and_server(None);
    assert!(issue_client(&data.path, "../escape", None, None, 30).is_err());
    assert!(!data.path.join("escape").exists());
}

#[test]
fn invalid_inputs_are_rejected() {
    let data = DataDir::new();
    let error = issue_client(&data.path, "sensor", None, None, 30).unwrap_err();
    assert!(matches!(error, CertError::NoCa { .. }), "{error}");
    assert!(error.to_string().contains("certs init"), "{error}");

    init_ca(&data.path, &CaOptions::default(), false).unwrap();
    let error = issue_server(&data.path, &[], &[], KeyType::EcdsaP256, None, 30).unwrap_err();
    assert!(matches!(error, CertError::NoServerNames), "{error}");
    let error = issue_server(&data.path, &["bad name".to_owned()], &[], KeyType::EcdsaP256, None, 30).unwrap_err();
    assert!(matches!(error, CertError::InvalidDnsName { .. }), "{error}");
    let error = issue_server(&data.path, &["localhost".to_owned()], &[], KeyType::EcdsaP256, None, 0).unwrap_err();
    assert!(matches!(error, CertError::InvalidValidity { days: 0 }), "{error}");
}

#[test]
fn validity_is_capped_by_ca() {
    let data = DataDir::new();
    let options = CaOptions { validity_days: 5, ..CaOptions::default() };
    let ca = init_ca(&data.path, &options, false).unwrap();
    let client = issue_client(&data.path, "sensor", None, None, 365).unwrap();
    assert_eq!(client.info.not_after, ca.not_after);
}

#[test]
fn fingerprint_matches_openssl() {
    let data = DataDir::with_ca_and_server(None);
    let pem = std::fs::read(data.join("ca.crt")).unwrap();
    let output = openssl_on(&["x509", "-noout", "-fingerprint", "-sha256"], &data.join("ca.crt"));
    let text = String::from_utf8_lossy(&output.stdout);
    let expected = text.trim().rsplit('=').next().unwrap().to_owned();

    assert_eq!(fingerprint_sha256(&pem), expected);
    assert_eq!(show(&data.join("ca.crt")).unwrap().fingerprint_sha256, expected);
    let der = crate::files::certificate_der(&data.join("ca.crt"), &pem).unwrap();
    assert_eq!(fingerprint_sha256(&der), expected);
}

#[test]
fn serial_matches_openssl() {
    let data = DataDir::with_ca_and_server(None);
    let output = openssl_on(&["x509", "-noout", "-serial"], &data.join("server.crt"));
    let text = String::from_utf8_lossy(&output.stdout);
    let expected = text.trim().trim_start_matches("serial=");
    assert_eq!(show(&data.join("server.crt")).unwrap().serial, expected);
}

#[test]
fn list_shows_every_certificate() {
    let data = DataDir::with_ca_and_server(None);
    issue_client(&data.path, "b-sensor", None, None, 30).unwrap();
    issue_client(&data.path, "a-sensor", None, None, 30).unwrap();

    let infos = list(&data.path).unwrap();
    let kinds: Vec<_> = infos.iter().map(|info| (info.kind.clone(), info.common_name.clone())).collect();
    assert_eq!(
        kinds,
        vec![
            (CertKind::Ca, "test CA".to_owned()),
            (CertKind::Server, "localhost".to_owned()),
            (CertKind::Client, "a-sensor".to_owned()),
            (CertKind::Client, "b-sensor".to_owned()),
        ]
    );
    assert!(infos.iter().all(|info| !info.revoked));
}

#[test]
fn expiry_warnings_name_soon_expiring() {
    let data = DataDir::with_ca_and_server(None);
    issue_client(&data.path, "long", None, None, 300).unwrap();

    let warnings = expiry_warnings(&data.path, 60);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("server certificate"), "{warnings:?}");
    assert!(warnings[0].contains("certs server"), "warning does not name the fix: {warnings:?}");
    assert!(expiry_warnings(&data.path, 10).is_empty());
    assert!(expiry_warnings(&DataDir::new().path, 10).is_empty());
}

#[test]
fn bootstrap_makes_ca_once() {
    let data = DataDir::new();
    let report = bootstrap(&data.path).unwrap().expect("first bootstrap creates the CA");
    assert_eq!(report.ca_cert, data.join("ca.crt"));
    assert_eq!(report.server_cert, Some(data.join("server.crt")));
    assert_eq!(report.ca_fingerprint_sha256, show(&data.join("ca.crt")).unwrap().fingerprint_sha256);
    for expected in ["DNS:localhost", "IP:127.0.0.1", "IP:::1"] {
        assert!(report.server_names.iter().any(|san| san == expected), "missing {expected}: {:?}", report.server_names);
    }
    let (ok, output) = openssl_verify(&data, &data.join("server.crt"), "sslserver", true);
    assert!(ok, "{output}");

    assert!(bootstrap(&data.path).unwrap().is_none(), "second bootstrap must do nothing");
}

#[test]
fn default_names_include_loopback() {
    let (names, ips) = default_server_names();
    assert!(names.contains(&"localhost".to_owned()), "{names:?}");
    assert!(ips.contains(&"127.0.0.1".parse().unwrap()), "{ips:?}");
    assert!(ips.contains(&"::1".parse().unwrap()), "{ips:?}");
    assert!(ips.iter().all(|ip| !ip.to_string().starts_with("fe80")), "link-local address in {ips:?}");
}

#[test]
fn rsa_client_with_options() {
    let data = DataDir::with_ca_and_server(None);
    let options = ClientOptions { key_type: KeyType::Rsa2048, validity_days: 30, ..ClientOptions::default() };
    let bundle = issue_client_with(&data.path, "rsa-sensor", &options, None).unwrap();
    let (ok, output) = openssl_verify(&data, &bundle.cert_file, "sslclient", true);
    assert!(ok, "{output}");
}

#[test]
fn replaced_ca_clients_reissue() {
    let data = DataDir::with_ca_and_server(None);
    let old = issue_client(&data.path, "sensor", None, None, 30).unwrap();
    let options = CaOptions { common_name: "test CA".to_owned(), ..CaOptions::default() };
    init_ca(&data.path, &options, true).unwrap();

    let infos = list(&data.path).unwrap();
    let client = infos.iter().find(|info| info.common_name == "sensor").unwrap();
    assert_eq!(client.signed_by_ca, Some(false), "a client of the replaced CA with the same CA name");
    assert!(!client.revoked);
    let error = crate::revoke(&data.path, "sensor", None).unwrap_err();
    assert!(matches!(error, CertError::ForeignIssuer { .. }), "{error}");

    let new = issue_client(&data.path, "sensor", None, None, 30).unwrap();
    assert_ne!(new.info.serial, old.info.serial);
    let (ok, output) = openssl_verify(&data, &new.cert_file, "sslclient", true);
    assert!(ok, "{output}");
    let infos = list(&data.path).unwrap();
    let client = infos.iter().find(|info| info.common_name == "sensor").unwrap();
    assert_eq!(client.signed_by_ca, Some(true));
}
