//! MQTT over WebSocket, and the plain HTTP GETs answered on the same port.
//!
//! The HTTP request head is read here (bounded in size and time) so that one port serves
//! both an upgrade to WebSocket on the MQTT path (`/mqtt` by default, and `/`) and ordinary
//! GETs: `/` returns a short status page and `/ca.crt` the CA certificate. Browsers present a
//! client certificate on `wss://` only after an HTTPS request to the same origin, which
//! these GETs give them.
//!
//! The WebSocket carries MQTT in binary frames only, with subprotocol `mqtt` or `mqttv3.1`
//! echoed back. [`WsByteStream`] turns the frames back into a byte stream, so packets split
//! across frames and several packets in one frame both reach the codec whole.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::WebSocketStream;

/// Largest HTTP request head accepted.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Subprotocols of MQTT over WebSocket, in order of preference.
const MQTT_SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Result of the HTTP exchange on a new WebSocket-listener connection.
pub enum HttpOutcome<S> {
    /// Upgraded: MQTT follows on this stream.
    Upgraded(WsByteStream<S>),
    /// A plain HTTP request got its response, and the connection is done.
    Answered { path: String, status: u16 },
}

/// Error of the HTTP exchange.
#[derive(Debug, thiserror::Error)]
pub enum WebSocketError {
    #[error("no complete HTTP request within {0:?}")]
    Timeout(Duration),
    #[error("HTTP request head larger than {MAX_REQUEST_HEAD} bytes")]
    HeadTooLarge,
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    #[error("WebSocket upgrade refused ({status}): {reason}")]
    Refused { status: u16, reason: String },
    #[error("connection failed during the HTTP exchange: {0}")]
    Io(#[from] io::Error),
}

/// Settings the HTTP side needs.
pub struct HttpSettings<'a> {
    pub mqtt_path: &'a str,
    pub ca_file: Option<&'a Path>,
    /// Short text for the status page (version, clients connected).
    pub status_text: String,
}

/// Reads one HTTP request and either upgrades it to MQTT over WebSocket or sends the response to it.
pub async fn accept<S>(mut stream: S, settings: &HttpSettings<'_>, timeout: Duration) -> Result<HttpOutcome<S>, WebSocketError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (head, leftover) = match tokio::time::timeout(timeout, read_request_head(&mut stream)).await {
        Ok(result) => result?,
        Err(_) => return Err(WebSocketError::Timeout(timeout)),
    };
    let request = parse_request(&head)?;
    if request.method != "GET" {
        respond(&mut stream, 405, "Method Not Allowed", "text/plain", b"only GET is served here\n").await?;
        return Err(WebSocketError::Refused { status: 405, reason: format!("method {}", request.method) });
    }
    let path = request.path.split('?').next().unwrap_or("/").to_owned();
    if request.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        if path != settings.mqtt_path && path != "/" {
            respond(&mut stream, 404, "Not Found", "text/plain", b"no WebSocket endpoint at this path\n").await?;
            return Err(WebSocketError::Refused { status: 404, reason: format!("WebSocket path {path} is not the MQTT path {}", settings.mqtt_path) });
        }
        let stream = upgrade(stream, &request, leftover).await?;
        return Ok(HttpOutcome::Upgraded(stream));
    }
    let status = answer_get(&mut stream, &path, settings).await?;
    Ok(HttpOutcome::Answered { path, status })
}

async fn answer_get<S>(stream: &mut S, path: &str, settings: &HttpSettings<'_>) -> io::Result<u16>
where
    S: AsyncWrite + Unpin,
{
    match path {
        "/" => {
            let body = format!(
                "{}\nMQTT over WebSocket: path {}, subprotocol mqtt.\nCA certificate: /ca.crt\n",
                settings.status_text, settings.mqtt_path
            );
            respond(stream, 200, "OK", "text/plain; charset=utf-8", body.as_bytes()).await?;
            Ok(200)
        }
        "/ca.crt" => match settings.ca_file.map(std::fs::read) {
            Some(Ok(pem)) => {
                respond(stream, 200, "OK", "application/x-pem-file", &pem).await?;
                Ok(200)
            }
            _ => {
                respond(stream, 404, "Not Found", "text/plain", b"no CA certificate configured\n").await?;
                Ok(404)
            }
        },
        _ => {
            respond(stream, 404, "Not Found", "text/plain", b"not found\n").await?;
            Ok(404)
        }
    }
}

async fn upgrade<S>(mut stream: S, request: &Request, leftover: Vec<u8>) -> Result<WsByteStream<S>, WebSocketError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if request.header("sec-websocket-version") != Some("13") {
        respond(&mut stream, 426, "Upgrade Required", "text/plain", b"WebSocket version 13 required\n").await?;
        return Err(WebSocketError::Refused { status: 426, reason: "Sec-WebSocket-Version is not 13".into() });
    }
    let Some(key) = request.header("sec-websocket-key") else {
        respond(&mut stream, 400, "Bad Request", "text/plain", b"missing Sec-WebSocket-Key\n").await?;
        return Err(WebSocketError::Refused { status: 400, reason: "missing Sec-WebSocket-Key".into() });
    };
    let subprotocol = match request.header("sec-websocket-protocol") {
        None => None,
        Some(offered) => {
            let chosen = MQTT_SUBPROTOCOLS
                .iter()
                .find(|wanted| offered.split(',').any(|p| p.trim().eq_ignore_ascii_case(wanted)));
            match chosen {
                Some(protocol) => Some(*protocol),
                None => {
                    respond(&mut stream, 400, "Bad Request", "text/plain", b"WebSocket subprotocol must be mqtt or mqttv3.1\n").await?;
                    return Err(WebSocketError::Refused {
                        status: 400,
                        reason: format!("unsupported WebSocket subprotocol {offered:?}; expected mqtt or mqttv3.1"),
                    });
                }
            }
        }
    };
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(protocol) = subprotocol {
        response.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await?;
    let prefixed = Prefixed { prefix: leftover, position: 0, inner: stream };
    let socket = WebSocketStream::from_raw_socket(prefixed, Role::Server, None).await;
    Ok(WsByteStream { socket, read_buf: Bytes::new() })
}

async fn respond<S>(stream: &mut S, status: u16, reason: &str, content_type: &str, body: &[u8]) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let _ = stream.shutdown().await;
    Ok(())
}

/// Reads up to the end of the request head; returns the head and any bytes after it.
async fn read_request_head<S>(stream: &mut S) -> Result<(Vec<u8>, Vec<u8>), WebSocketError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let leftover = buf.split_off(end + 4);
            return Ok((buf, leftover));
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return Err(WebSocketError::HeadTooLarge);
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(WebSocketError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

fn parse_request(head: &[u8]) -> Result<Request, WebSocketError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(WebSocketError::Malformed("incomplete request head".into())),
        Err(error) => return Err(WebSocketError::Malformed(error.to_string())),
    }
    let headers = request
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).trim().to_owned()))
        .collect();
    Ok(Request {
        method: request.method.unwrap_or_default().to_owned(),
        path: request.path.unwrap_or("/").to_owned(),
        headers,
    })
}

/// A stream that first yields bytes already read past the HTTP head.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    position: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.position < self.prefix.len() {
            let available = &self.prefix[self.position..];
            let count = available.len().min(buf.remaining());
            buf.put_slice(&available[..count]);
            self.position += count;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// MQTT bytes carried in WebSocket binary frames.
pub struct WsByteStream<S> {
    socket: WebSocketStream<Prefixed<S>>,
    /// Rest of the last binary frame not yet read.
    read_buf: Bytes,
}

fn ws_error(error: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::other(format!("WebSocket: {error}"))
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsByteStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.read_buf.is_empty() {
                let count = self.read_buf.len().min(buf.remaining());
                let chunk = self.read_buf.split_to(count);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.socket).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(data))) => self.read_buf = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "WebSocket text frame received; MQTT needs binary frames",
                    )));
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(error)) => return Poll::Ready(Err(ws_error(error))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsByteStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.socket).poll_ready(cx)).map_err(ws_error)?;
        Pin::new(&mut self.socket)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(ws_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx).map_err(ws_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_close(cx).map_err(ws_error)
    }
}
