//! `server_tls_config` with the generated files, and real TLS handshakes over loopback.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::DataDir;
use crate::ca::Validity;
use crate::issue::issue_client_for_period;
use crate::{crypto_provider, issue_client, revoke, server_tls_config, CertError, ClientOptions, TlsOptions};

/// Upper bound of one handshake test, so that a hang fails instead of blocking the run.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Outcome of one connection: the server's accept and the client's connect-then-read.
struct Outcome {
    server: Result<(), String>,
    client: Result<(), String>,
}

fn client_config(
    data: &DataDir,
    client: Option<&str>,
    version: &'static SupportedProtocolVersion,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(data.join("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(name) => {
            let dir = data.join(&format!("clients/{name}"));
            let certs = CertificateDer::pem_file_iter(dir.join(format!("{name}.crt")))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Connects a client to a one-shot server on 127.0.0.1, which writes `ok` after its handshake.
/// The client succeeds only if it reads that, because in TLS 1.3 the client finishes its
/// handshake before the server has checked the client certificate.
async fn connect(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.map_err(|error| error.to_string())?;
        let mut tls = TlsAcceptor::from(server).accept(stream).await.map_err(|error| error.to_string())?;
        tls.write_all(b"ok").await.map_err(|error| error.to_string())?;
        tls.shutdown().await.map_err(|error| error.to_string())?;
        Ok::<(), String>(())
    });
    let client_result = async {
        let stream = TcpStream::connect(address).await.map_err(|error| error.to_string())?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(client).connect(name, stream).await.map_err(|error| error.to_string())?;
        let mut reply = [0u8; 2];
        tls.read_exact(&mut reply).await.map_err(|error| error.to_string())?;
        if &reply == b"ok" {
            Ok(())
        } else {
            Err(format!("unexpected reply {reply:?}"))
        }
    };
    let client = tokio::time::timeout(HANDSHAKE_TIMEOUT, client_result)
        .await
        .unwrap_or_else(|_| Err("client timed out".to_owned()));
    let server = match tokio::time::timeout(HANDSHAKE_TIMEOUT, server_task).await {
        Ok(joined) => joined.unwrap(),
        Err(_) => Err("server timed out".to_owned()),
    };
    Outcome { server, client }
}

fn server_config(data: &DataDir) -> Arc<ServerConfig> {
    server_tls_config(&TlsOptions::for_data_dir(&data.path)).expect("server_tls_config with the generated files")
}

#[tokio::test]
async fn client_certificate_handshake_succeeds() {
    let data = DataDir::with_ca_and_server(None);
    issue_client(&data.path, "sensor", None, None, 30).unwrap();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let outcome = connect(server_config(&data), client_config(&data, Some("sensor"), version)).await;
        assert_eq!(outcome.server, Ok(()), "server side, {version:?}");
        assert_eq!(outcome.client, Ok(()), "client side, {version:?}");
    }
}

#[tokio::test]
async fn missing_client_certificate_fails_when_required() {
    let data = DataDir::with_ca_and_server(None);
    let outcome = connect(server_config(&data), client_config(&data, None, &rustls::version::TLS13)).await;
    assert!(outcome.server.is_err(), "server accepted a client without certificate");
    assert!(outcome.client.is_err(), "client read data without a certificate");

    let mut options = TlsOptions::for_data_dir(&data.path);
    options.require_client_cert = false;
    let optional = server_tls_config(&options).unwrap();
    let outcome = connect(optional, client_config(&data, None, &rustls::version::TLS13)).await;
    assert_eq!(outcome.server, Ok(()), "optional client certificate");
    assert_eq!(outcome.client, Ok(()), "optional client certificate");
}

#[tokio::test]
async fn revoked_client_fails_after_revoke() {
    let data = DataDir::with_ca_and_server(None);
    issue_client(&data.path, "stolen", None, None, 30).unwrap();
    let before = connect(server_config(&data), client_config(&data, Some("stolen"), &rustls::version::TLS12)).await;
    assert_eq!(before.server, Ok(()), "before revocation");

    revoke(&data.path, "stolen", None).unwrap();
    // The configuration is built again, as the broker does on SIGHUP.
    let after = connect(server_config(&data), client_config(&data, Some("stolen"), &rustls::version::TLS12)).await;
    let error = after.server.expect_err("server accepted a revoked certificate");
    assert!(error.to_lowercase().contains("revoked"), "failed for another reason: {error}");
    assert!(after.client.is_err());
}

#[tokio::test]
async fn expired_client_fails() {
    let data = DataDir::with_ca_and_server(None);
    let now = OffsetDateTime::now_utc();
    let past = Validity { not_before: now - time::Duration::days(10), not_after: now - time::Duration::hours(1) };
    issue_client_for_period(&data.path, "expired", &ClientOptions::default(), None, past).unwrap();
    let outcome = connect(server_config(&data), client_config(&data, Some("expired"), &rustls::version::TLS13)).await;
    let error = outcome.server.expect_err("server accepted an expired certificate");
    assert!(error.to_lowercase().contains("expired"), "failed for another reason: {error}");
}

#[tokio::test]
async fn client_of_other_ca_fails() {
    let data = DataDir::with_ca_and_server(None);
    let other = DataDir::with_ca_and_server(None);
    issue_client(&other.path, "intruder", None, None, 30).unwrap();
    let intruder_dir = data.join("clients/intruder");
    std::fs::create_dir_all(&intruder_dir).unwrap();
    for file in ["intruder.crt", "intruder.key"] {
        std::fs::copy(other.join(&format!("clients/intruder/{file}")), intruder_dir.join(file)).unwrap();
    }
    let outcome = connect(server_config(&data), client_config(&data, Some("intruder"), &rustls::version::TLS13)).await;
    assert!(outcome.server.is_err(), "server accepted a certificate of another CA");
}

#[tokio::test]
async fn small_records_and_alpn_handshake() {
    let data = DataDir::with_ca_and_server(None);
    issue_client(&data.path, "esp", None, None, 30).unwrap();
    let mut options = TlsOptions::for_data_dir(&data.path);
    options.max_fragment_size = Some(512);
    options.alpn = vec![b"mqtt".to_vec()];
    let config = server_tls_config(&options).unwrap();
    assert_eq!(config.max_fragment_size, Some(512));
    assert_eq!(config.alpn_protocols, vec![b"mqtt".to_vec()]);
    let outcome = connect(config, client_config(&data, Some("esp"), &rustls::version::TLS12)).await;
    assert_eq!(outcome.server, Ok(()));
    assert_eq!(outcome.client, Ok(()));
}

#[test]
fn tls_config_errors_name_the_file() {
    let data = DataDir::with_ca_and_server(None);

    let mut options = TlsOptions::for_data_dir(&data.path);
    options.cert_file = data.join("missing.crt");
    let error = server_tls_config(&options).unwrap_err().to_string();
    assert!(error.contains("missing.crt"), "{error}");

    let mut options = TlsOptions::for_data_dir(&data.path);
    options.key_file = data.join("missing.key");
    let error = server_tls_config(&options).unwrap_err().to_string();
    assert!(error.contains("missing.key"), "{error}");

    let mut options = TlsOptions::for_data_dir(&data.path);
    options.client_ca_files = vec![data.join("missing-ca.crt")];
    let error = server_tls_config(&options).unwrap_err().to_string();
    assert!(error.contains("missing-ca.crt"), "{error}");

    let mut options = TlsOptions::for_data_dir(&data.path);
    options.crl_file = Some(data.join("no-crl-yet.pem"));
    assert!(server_tls_config(&options).is_ok(), "an absent CRL file must be skipped");

    let mut options = TlsOptions::for_data_dir(&data.path);
    options.client_ca_files.clear();
    let error = server_tls_config(&options).unwrap_err();
    assert!(matches!(error, CertError::Tls(_)), "{error}");

    let mut options = TlsOptions::for_data_dir(&data.path);
    options.max_fragment_size = Some(16);
    let error = server_tls_config(&options).unwrap_err().to_string();
    assert!(error.contains("max_fragment_size 16"), "{error}");
}

#[test]
fn tls_config_rejects_mismatched_key() {
    let data = DataDir::with_ca_and_server(None);
    let mut options = TlsOptions::for_data_dir(&data.path);
    options.key_file = data.join("ca.key");
    let error = server_tls_config(&options).unwrap_err().to_string();
    assert!(error.contains("server.crt"), "{error}");
    assert!(error.contains("ca.key"), "{error}");
}

#[test]
fn tls_config_rejects_encrypted_key() {
    let data = DataDir::with_ca_and_server(Some("pass"));
    let mut options = TlsOptions::for_data_dir(&data.path);
    options.key_file = data.join("ca.key");
    let error = server_tls_config(&options).unwrap_err();
    assert!(matches!(error, CertError::EncryptedKey { .. }), "{error}");
    assert!(error.to_string().contains("unencrypted"), "{error}");
}

#[test]
fn tls_config_reads_sec1_and_pkcs1_keys() {
    let data = DataDir::with_ca_and_server(None);
    let key_path = data.join("server.key");
    let sec1 = data.join("server-sec1.key");
    convert_key(&key_path, &sec1, &["ec", "-in"]);
    let mut options = TlsOptions::for_data_dir(&data.path);
    options.key_file = sec1.clone();
    server_tls_config(&options).unwrap_or_else(|error| panic!("SEC1 key rejected: {error}"));
    assert!(std::fs::read_to_string(&sec1).unwrap().contains("BEGIN EC PRIVATE KEY"));

    let rsa = DataDir::new();
    crate::init_ca(&rsa.path, &crate::CaOptions::default(), false).unwrap();
    crate::issue_server(&rsa.path, &["localhost".to_owned()], &[], crate::KeyType::Rsa2048, None, 5).unwrap();
    let pkcs1 = rsa.join("server-pkcs1.key");
    convert_key(&rsa.join("server.key"), &pkcs1, &["rsa", "-traditional", "-in"]);
    let mut options = TlsOptions::for_data_dir(&rsa.path);
    options.key_file = pkcs1.clone();
    server_tls_config(&options).unwrap_or_else(|error| panic!("PKCS#1 key rejected: {error}"));
    assert!(std::fs::read_to_string(&pkcs1).unwrap().contains("BEGIN RSA PRIVATE KEY"));
}

fn convert_key(from: &Path, to: &Path, args: &[&str]) {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    all.extend([from.as_os_str(), "-out".as_ref(), to.as_os_str()]);
    let output = super::openssl(all);
    assert!(output.status.success(), "openssl key conversion failed: {}", String::from_utf8_lossy(&output.stderr));
}
