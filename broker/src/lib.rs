//! The lpiotia-mqtt broker engine: listeners, connections, sessions, topic tree, retained
//! messages and wills, for MQTT 3.1, 3.1.1 and 5.0.
//!
//! Packet encoding, decoding and per-connection protocol state come from
//! `mqtt-protocol-core`; everything a broker adds on top is here. Start with
//! [`Broker::new`], bind each [`listener::Listener`], and run them on a tokio runtime;
//! cancel [`Broker::shutdown`] to stop.

#![forbid(unsafe_code)]

pub mod access;
pub mod broker;
pub mod connection;
pub mod handshake;
pub mod listener;
pub mod message;
pub mod persist;
mod outbound;
mod packets;
pub mod retain;
pub mod router;
pub mod session;
pub mod stats;
pub mod sys;
pub mod topic;
pub mod transport;
pub mod will;
pub mod wire;

pub use broker::{Broker, BrokerConfig};
pub use listener::{Listener, ListenerConfig};
