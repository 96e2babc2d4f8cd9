//! TLS handshakes per second: workers in parallel each open a TCP connection, complete a full
//! TLS handshake (no session resumption), CONNECT with a password, wait for CONNACK and close.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::client::{self, Login, STEP_TIMEOUT};
use crate::codec;
use crate::measure::{CpuMeter, Report};

pub struct TlsConfig {
    pub broker: SocketAddr,
    pub login: Login,
    pub parallel: usize,
    pub duration: Duration,
    /// CA that signed the broker's certificate, or `None` to accept any certificate.
    pub ca_file: Option<PathBuf>,
    pub server_name: String,
    pub run_id: String,
}

/// Accepts every server certificate and signature. It spares the generator the verification
/// cost, so that the broker's share of the handshake is what limits the rate.
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, _: &[u8], _: &CertificateDer<'_>, _: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(&self, _: &[u8], _: &CertificateDer<'_>, _: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(ca_file: Option<&PathBuf>) -> io::Result<ClientConfig> {
    // ring is the provider the broker under test uses. rustls 0.23.48 deprecates it because it
    // lacks post-quantum key exchange, which Mosquitto 2.0.11 on OpenSSL 3.0 does not offer either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let mut config = match ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|error| io::Error::other(format!("cannot read CA file {}: {error}", path.display())))? {
                roots.add(cert.map_err(io::Error::other)?).map_err(io::Error::other)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider))).with_no_client_auth(),
    };
    config.resumption = Resumption::disabled();
    Ok(config)
}

async fn one_session(connector: &TlsConnector, config: &TlsConfig, server_name: ServerName<'static>, client_id: &str) -> io::Result<()> {
    let tcp = client::connect_tcp(config.broker, None).await?;
    let mut tls = timeout(STEP_TIMEOUT, connector.connect(server_name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let mut buf = BytesMut::with_capacity(256);
    client::handshake(&mut tls, &mut buf, &config.login, client_id, true).await?;
    let mut out = BytesMut::with_capacity(2);
    codec::encode_disconnect(&mut out);
    tls.write_all(&out).await?;
    tls.shutdown().await?;
    Ok(())
}

pub async fn run(config: Arc<TlsConfig>) -> io::Result<Report> {
    let connector = TlsConnector::from(Arc::new(client_config(config.ca_file.as_ref())?));
    let server_name = ServerName::try_from(config.server_name.clone()).map_err(io::Error::other)?;
    let completed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu = CpuMeter::start();
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut workers = Vec::new();
    for worker in 0..config.parallel {
        let (connector, config, server_name) = (connector.clone(), config.clone(), server_name.clone());
        let (completed, failed) = (completed.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let mut attempt = 0u64;
            while Instant::now() < deadline {
                let client_id = format!("{}-w{worker}-{attempt}", config.run_id);
                attempt += 1;
                match one_session(&connector, &config, server_name.clone(), &client_id).await {
                    Ok(()) => {
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("mqtt-load: TLS session failed: {error}");
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await.map_err(io::Error::other)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut report = Report::default();
    report.set("handshakes_per_sec", completed.load(Ordering::Relaxed) as f64 / elapsed);
    report.set("completed", completed.load(Ordering::Relaxed) as f64);
    report.set("failed", failed.load(Ordering::Relaxed) as f64);
    report.set("gen_cpu_pct", cpu.percent());
    Ok(report)
}
