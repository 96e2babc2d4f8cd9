//! Will messages: published when a connection closes without a clean DISCONNECT.
//!
//! A v5 Will Delay Interval holds the will back; it is cancelled if the client reconnects
//! to the same session before the delay ends, and it is published when the session ends,
//! whichever comes first.

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::broker::Broker;
use crate::message::Message;
use crate::session::{Session, SessionExpiry};

/// A will taken from CONNECT.
#[derive(Debug, Clone)]
pub struct Will {
    pub message: Message,
    /// v5 Will Delay Interval; zero for 3.1 and 3.1.1.
    pub delay: Duration,
}

/// Publishes `will` now, or after its delay if the session outlives the connection.
pub fn publish_will(broker: &Arc<Broker>, session: &Arc<Session>, generation: u64, will: Will, expiry: SessionExpiry) {
    let wait = match expiry {
        SessionExpiry::OnDisconnect => Duration::ZERO,
        SessionExpiry::After(session_expiry) => will.delay.min(session_expiry),
        SessionExpiry::Never => will.delay,
    };
    if wait.is_zero() {
        info!(client_id = %session.client_id, topic = %will.message.topic, "publishing will");
        broker.publish(will.message);
        return;
    }
    let broker = Arc::clone(broker);
    let session = Arc::clone(session);
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = broker.shutdown.cancelled() => return,
        }
        let reconnected = {
            let state = session.lock();
            state.generation != generation
        };
        if reconnected {
            info!(client_id = %session.client_id, "will cancelled: client reconnected within the will delay");
            return;
        }
        info!(client_id = %session.client_id, topic = %will.message.topic, "publishing delayed will");
        broker.publish(will.message);
    });
}
