//! Opening an MQTT session over TCP: connect, CONNECT/CONNACK, SUBSCRIBE/SUBACK.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use crate::codec::{self, Connect, Packet};

/// Time allowed for each step of a session opening: TCP connect, CONNACK, SUBACK.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Credentials and protocol of every client of a run.
#[derive(Clone, Debug)]
pub struct Login {
    pub level: u8,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive_secs: u16,
}

fn timed_out(step: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{step} timed out after {STEP_TIMEOUT:?}"))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Opens a TCP connection to `broker`, from `source` (port chosen by the kernel) when given.
pub async fn connect_tcp(broker: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if broker.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = timeout(STEP_TIMEOUT, socket.connect(broker)).await.map_err(|_| timed_out("TCP connect"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads from `stream` until one whole packet is decoded. Bytes after it stay in `buf`.
pub async fn read_packet<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut, level: u8) -> io::Result<Packet> {
    loop {
        if let Some(packet) = codec::decode(buf, level).map_err(|error| invalid(error.to_string()))? {
            return Ok(packet);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "broker closed the connection"));
        }
    }
}

/// Sends CONNECT on `stream` and waits for a CONNACK that accepts it.
pub async fn handshake<S>(stream: &mut S, buf: &mut BytesMut, login: &Login, client_id: &str, clean_start: bool) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::with_capacity(128);
    codec::encode_connect(
        &mut out,
        &Connect {
            level: login.level,
            client_id,
            username: login.username.as_deref(),
            password: login.password.as_deref(),
            clean_start,
            keep_alive_secs: login.keep_alive_secs,
            session_expiry_secs: if clean_start { 0 } else { 3600 },
        },
    );
    stream.write_all(&out).await?;
    let packet = timeout(STEP_TIMEOUT, read_packet(stream, buf, login.level)).await.map_err(|_| timed_out("CONNACK"))??;
    match packet {
        Packet::ConnAck { return_code: 0 } => Ok(()),
        Packet::ConnAck { return_code } => Err(invalid(format!("CONNACK rejected client {client_id} with code {return_code:#04x}"))),
        other => Err(invalid(format!("expected CONNACK for client {client_id}, received {other:?}"))),
    }
}

/// Subscribes to `filter` at `qos` and waits for a SUBACK that grants it.
pub async fn subscribe<S>(stream: &mut S, buf: &mut BytesMut, level: u8, filter: &str, qos: u8) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::with_capacity(64);
    codec::encode_subscribe(&mut out, level, 1, filter, qos);
    stream.write_all(&out).await?;
    let packet = timeout(STEP_TIMEOUT, read_packet(stream, buf, level)).await.map_err(|_| timed_out("SUBACK"))??;
    match packet {
        Packet::SubAck { return_codes, .. } if return_codes.first().is_some_and(|code| *code < 0x80) => Ok(()),
        other => Err(invalid(format!("SUBSCRIBE to {filter} not granted: {other:?}"))),
    }
}

/// Opens a session: TCP connect, then CONNECT/CONNACK. Returns the stream and the bytes read past CONNACK.
pub async fn open(broker: SocketAddr, source: Option<IpAddr>, login: &Login, client_id: &str, clean_start: bool) -> io::Result<(TcpStream, BytesMut)> {
    let mut stream = connect_tcp(broker, source).await?;
    let mut buf = BytesMut::with_capacity(4096);
    handshake(&mut stream, &mut buf, login, client_id, clean_start).await?;
    Ok((stream, buf))
}
