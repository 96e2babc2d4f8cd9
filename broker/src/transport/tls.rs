//! TLS: the handshake, under a timeout, and the identity of the client certificate.
//!
//! Certificate checks (chain to the configured CAs, validity dates, CRL) are done by the
//! rustls verifier in the listener's `ServerConfig`; a client that fails them never gets to
//! send CONNECT.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::TlsConfigHandle;

/// Why a TLS handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsHandshakeError {
    #[error("TLS handshake not finished within {0:?}")]
    Timeout(Duration),
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
}

/// Runs the server side of the TLS handshake.
pub async fn accept<S>(config: &TlsConfigHandle, stream: S, timeout: Duration) -> Result<TlsStream<S>, TlsHandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = TlsAcceptor::from(config.current());
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(TlsHandshakeError::Failed(error)),
        Err(_) => Err(TlsHandshakeError::Timeout(timeout)),
    }
}

/// Returns the Common Name of the client certificate, if the client sent one.
pub fn client_common_name<S>(stream: &TlsStream<S>) -> Option<String> {
    let (_, connection) = stream.get_ref();
    let leaf = connection.peer_certificates()?.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let common_name = certificate.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    Some(common_name)
}
