//! Reading a numeric `$SYS` topic, such as `$SYS/broker/publish/messages/dropped`.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::time::timeout_at;

use crate::client::{self, Login};
use crate::codec::{self, Packet};

/// Subscribes to `topic` and returns the last number published on it within `listen`:
/// the retained value first, then any update. `None` if nothing numeric arrived.
pub async fn read_number(broker: SocketAddr, login: &Login, client_id: &str, topic: &str, listen: Duration) -> io::Result<Option<f64>> {
    let (mut stream, mut buf) = client::open(broker, None, login, client_id, true).await?;
    client::subscribe(&mut stream, &mut buf, login.level, topic, 0).await?;
    let until = Instant::now() + listen;
    let mut last = None;
    loop {
        while let Some(packet) = codec::decode(&mut buf, login.level).map_err(io::Error::other)? {
            if let Packet::Publish { payload, .. } = packet {
                let text = String::from_utf8_lossy(&payload);
                if let Ok(value) = text.trim().parse::<f64>() {
                    last = Some(value);
                }
            }
        }
        match timeout_at(until.into(), stream.read_buf(&mut buf)).await {
            Err(_) => return Ok(last),
            Ok(Ok(0)) => return Ok(last),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error),
        }
    }
}
