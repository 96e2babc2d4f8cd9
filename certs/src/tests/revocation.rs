//! Revocation: the CRL as OpenSSL reads it, the revoked flag, reissuing after revocation.

use super::{openssl_on, openssl_verify, DataDir};
use crate::{crl_path, issue_client, list, revoke, show, CertError};

#[test]
fn revoked_client_fails_openssl_crl_check() {
    let data = DataDir::with_ca_and_server(None);
    let revoked = issue_client(&data.path, "lost-sensor", None, None, 30).unwrap();
    let other = issue_client(&data.path, "kept-sensor", None, None, 30).unwrap();
    let (ok, output) = openssl_verify(&data, &revoked.cert_file, "sslclient", true);
    assert!(ok, "client rejected before revocation: {output}");

    let info = revoke(&data.path, "lost-sensor", None).unwrap();
    assert!(info.revoked);
    assert_eq!(info.serial, revoked.info.serial);

    let (ok, output) = openssl_verify(&data, &revoked.cert_file, "sslclient", true);
    assert!(!ok, "openssl accepts a revoked certificate: {output}");
    assert!(output.contains("revoked"), "openssl fails for another reason: {output}");
    let (ok, output) = openssl_verify(&data, &other.cert_file, "sslclient", true);
    assert!(ok, "revoking one client broke another: {output}");
}

#[test]
fn crl_lists_serial_and_number_grows() {
    let data = DataDir::with_ca_and_server(None);
    let first = issue_client(&data.path, "one", None, None, 30).unwrap();
    let second = issue_client(&data.path, "two", None, None, 30).unwrap();
    revoke(&data.path, "one", None).unwrap();
    revoke(&data.path, "two", None).unwrap();

    let output = openssl_on(&["crl", "-noout", "-text"], &crl_path(&data.path));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "openssl cannot read the CRL: {}", String::from_utf8_lossy(&output.stderr));
    for serial in [&first.info.serial, &second.info.serial] {
        assert!(text.contains(serial.as_str()), "CRL lacks serial {serial}:\n{text}");
    }
    // init_ca writes CRL number 1, each revocation adds one.
    let number = openssl_on(&["crl", "-noout", "-crlnumber"], &crl_path(&data.path));
    let number = String::from_utf8_lossy(&number.stdout).into_owned();
    let hex = number.trim().trim_start_matches("crlNumber=").trim_start_matches("0x");
    assert_eq!(u64::from_str_radix(hex, 16), Ok(3), "CRL number output: {number}");
    let verify = super::openssl([
        "crl".as_ref(),
        "-noout".as_ref(),
        "-CAfile".as_ref(),
        data.join("ca.crt").as_os_str(),
        "-in".as_ref(),
        crl_path(&data.path).as_os_str(),
    ]);
    let verify_text = String::from_utf8_lossy(&verify.stderr).into_owned() + &String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "openssl crl failed: {verify_text}");
    assert!(verify_text.contains("verify OK"), "CRL signature does not verify: {verify_text}");
}

#[test]
fn list_marks_revoked_clients() {
    let data = DataDir::with_ca_and_server(None);
    issue_client(&data.path, "gone", None, None, 30).unwrap();
    issue_client(&data.path, "here", None, None, 30).unwrap();
    revoke(&data.path, "gone", None).unwrap();

    let infos = list(&data.path).unwrap();
    let status: Vec<_> = infos.iter().map(|info| (info.common_name.as_str(), info.revoked)).collect();
    assert!(status.contains(&("gone", true)), "{status:?}");
    assert!(status.contains(&("here", false)), "{status:?}");

    let mut shown_info = show(&data.join("clients/gone/gone.crt")).unwrap();
    assert!(!shown_info.revoked, "show alone cannot know the CRL");
    crate::check_revoked(&data.path, &mut shown_info).unwrap();
    assert!(shown_info.revoked);
}

#[test]
fn revoke_errors_name_the_problem() {
    let data = DataDir::with_ca_and_server(None);
    let error = revoke(&data.path, "nobody", None).unwrap_err();
    assert!(matches!(error, CertError::ClientNotFound { .. }), "{error}");
    assert!(error.to_string().contains("clients/nobody/nobody.crt"), "{error}");

    issue_client(&data.path, "twice", None, None, 30).unwrap();
    revoke(&data.path, "twice", None).unwrap();
    let error = revoke(&data.path, "twice", None).unwrap_err();
    assert!(matches!(error, CertError::AlreadyRevoked { .. }), "{error}");
}

#[test]
fn revoked_name_can_be_reissued() {
    let data = DataDir::with_ca_and_server(None);
    let old = issue_client(&data.path, "sensor", None, None, 30).unwrap();
    revoke(&data.path, "sensor", None).unwrap();

    let new = issue_client(&data.path, "sensor", None, None, 30).unwrap();
    assert_ne!(new.info.serial, old.info.serial);
    let (ok, output) = openssl_verify(&data, &new.cert_file, "sslclient", true);
    assert!(ok, "reissued certificate rejected: {output}");
    let infos = list(&data.path).unwrap();
    let client = infos.iter().find(|info| info.common_name == "sensor").unwrap();
    assert!(!client.revoked);
}

#[test]
fn encrypted_ca_revoke_needs_passphrase() {
    let data = DataDir::with_ca_and_server(Some("secret"));
    issue_client(&data.path, "sensor", None, Some("secret"), 30).unwrap();
    let error = revoke(&data.path, "sensor", None).unwrap_err();
    assert!(matches!(error, CertError::PassphraseRequired { .. }), "{error}");
    revoke(&data.path, "sensor", Some("secret")).unwrap();
}
