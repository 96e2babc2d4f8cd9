//! Retained messages: the last retained PUBLISH of each topic, sent to new subscribers.
//!
//! A PUBLISH with RETAIN and an empty payload deletes the topic's retained message. The
//! number of retained messages is limited only by `max_memory` (payload, topic and a fixed
//! overhead per message); a new retained message that would pass it is not stored and the
//! refusal is logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::warn;

use crate::message::Message;
use crate::topic::filter_matches;

/// Outcome of storing a retained message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainOutcome {
    Stored,
    Cleared,
    /// Not stored: the retained store is at its memory limit.
    OverLimit,
}

#[derive(Debug)]
pub struct RetainStore {
    messages: HashMap<Arc<str>, Arc<Message>>,
    bytes: usize,
    max_memory: usize,
}

impl RetainStore {
    pub fn new(max_memory: usize) -> Self {
        RetainStore { messages: HashMap::new(), bytes: 0, max_memory }
    }

    /// Stores, replaces or (for an empty payload) clears the retained message of its topic.
    pub fn store(&mut self, message: Arc<Message>) -> RetainOutcome {
        if message.payload.len() == 0 {
            if let Some(old) = self.messages.remove(&message.topic) {
                self.bytes -= old.cost();
            }
            return RetainOutcome::Cleared;
        }
        let replaced_cost = self.messages.get(&message.topic).map_or(0, |old| old.cost());
        let new_total = self.bytes - replaced_cost + message.cost();
        if new_total > self.max_memory {
            warn!(
                topic = %message.topic,
                retained_bytes = self.bytes,
                max_retained_memory = self.max_memory,
                "retained message not stored: retained store is full; raise limits.max_retained_memory"
            );
            return RetainOutcome::OverLimit;
        }
        self.bytes = new_total;
        self.messages.insert(Arc::clone(&message.topic), message);
        RetainOutcome::Stored
    }

    /// Returns the unexpired retained messages whose topic matches `filter`.
    pub fn matching(&self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        self.messages
            .values()
            .filter(|message| !message.is_expired(now) && filter_matches(filter, &message.topic))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
