//! A trivial MQTT server for checking that the generator is not the bottleneck.
//!
//! It accepts every CONNECT, grants every SUBSCRIBE, acknowledges QoS 1 PUBLISHes and forwards
//! every PUBLISH at QoS 0 to every connection that subscribed, whatever the topic filter. It
//! keeps no sessions, no queues beyond a bounded channel per connection, and no topic tree, so
//! the rate the generator reaches against it bounds what the generator can measure.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::LocalSet;

use crate::codec::{self, Packet, V311};

/// Outgoing packets buffered per connection. Forwarded PUBLISHes beyond it are dropped.
const OUTGOING_CAPACITY: usize = 4096;

/// Subscribed connections: protocol level and outgoing channel.
type Subscribers = Rc<RefCell<Vec<(u8, mpsc::Sender<Bytes>)>>>;

/// Serves on `bind` for at most `lifetime`.
pub async fn run(bind: SocketAddr, lifetime: Duration) -> io::Result<()> {
    let listener = TcpListener::bind(bind).await?;
    eprintln!("mqtt-load sink: listening on {bind} for at most {lifetime:?}");
    let subscribers: Subscribers = Rc::new(RefCell::new(Vec::new()));
    let local = LocalSet::new();
    local
        .run_until(async move {
            let accept_loop = async {
                loop {
                    let (stream, _) = listener.accept().await?;
                    stream.set_nodelay(true)?;
                    tokio::task::spawn_local(serve(stream, subscribers.clone()));
                }
            };
            tokio::select! {
                result = accept_loop => result,
                _ = tokio::time::sleep(lifetime) => Ok(()),
            }
        })
        .await
}

async fn write_outgoing(mut writer: tokio::net::tcp::OwnedWriteHalf, mut outgoing: mpsc::Receiver<Bytes>) {
    let mut batch = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = outgoing.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < 64 * 1024 {
            match outgoing.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if writer.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
}

async fn serve(stream: TcpStream, subscribers: Subscribers) {
    let (mut reader, writer) = stream.into_split();
    let (sender, receiver) = mpsc::channel(OUTGOING_CAPACITY);
    tokio::task::spawn_local(write_outgoing(writer, receiver));
    let mut level = V311;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            let packet = match codec::decode(&mut buf, level) {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(_) => return,
            };
            let mut reply = BytesMut::new();
            match packet {
                Packet::Connect { level: connect_level } => {
                    level = connect_level;
                    codec::encode_connack(&mut reply, level);
                }
                Packet::Subscribe { packet_id, filters } => {
                    codec::encode_suback(&mut reply, level, packet_id, filters);
                    subscribers.borrow_mut().push((level, sender.clone()));
                }
                Packet::Publish { qos, packet_id, topic, payload } => {
                    if qos > 0 {
                        codec::encode_puback(&mut reply, packet_id);
                    }
                    forward(&subscribers, &topic, &payload);
                }
                Packet::PingReq => codec::encode_pingresp(&mut reply),
                Packet::Disconnect => return,
                _ => {}
            }
            if !reply.is_empty() && sender.send(reply.freeze()).await.is_err() {
                return;
            }
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn forward(subscribers: &Subscribers, topic: &[u8], payload: &[u8]) {
    let mut encoded: [Option<Bytes>; 2] = [None, None];
    subscribers.borrow_mut().retain(|(level, sender)| {
        let slot = usize::from(*level == codec::V5);
        let packet = encoded[slot].get_or_insert_with(|| {
            let mut out = BytesMut::with_capacity(topic.len() + payload.len() + 8);
            codec::encode_publish(&mut out, *level, topic, 0, 0, payload);
            out.freeze()
        });
        !matches!(sender.try_send(packet.clone()), Err(mpsc::error::TrySendError::Closed(_)))
    });
}
