//! The topic tree: which sessions subscribe to which filters, and who receives a PUBLISH.
//!
//! Filters are stored level by level in a tree whose edges are the literal level, `+` or
//! `#`. Matching a topic walks only the branches the topic can reach. A client that has
//! several subscriptions matching one topic receives one copy, at the highest granted QoS,
//! carrying every matching subscription identifier. Members of a shared subscription group
//! (`$share/GROUP/FILTER`) receive messages in turn, online members first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mqtt_protocol_core::mqtt::packet::Qos;

use crate::message::min_qos;
use crate::session::Session;
use crate::topic::SubscriptionFilter;

/// Options of one subscription, as granted in SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    /// Maximum QoS granted.
    pub qos: Qos,
    /// v5 No Local: messages this client publishes are not sent back to it.
    pub no_local: bool,
    /// v5 Retain As Published: keep the RETAIN flag on live messages.
    pub retain_as_published: bool,
    /// v5 Retain Handling: 0 send retained on subscribe, 1 only if new, 2 never.
    pub retain_handling: u8,
    /// v5 Subscription Identifier.
    pub identifier: Option<u32>,
}

/// One session's subscription stored at a node of the tree.
#[derive(Debug, Clone)]
struct Subscriber {
    session: Arc<Session>,
    options: SubscriptionOptions,
}

/// Members of one shared subscription group on one filter.
#[derive(Debug, Default)]
struct SharedGroup {
    members: Vec<Subscriber>,
    /// Round-robin position of the next member to receive a message.
    next: AtomicUsize,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    subscribers: Vec<Subscriber>,
    shared: HashMap<String, SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty() && self.shared.is_empty()
    }
}

/// A session that receives a message, with the QoS and options that apply to it.
#[derive(Debug, Clone)]
pub struct Target {
    pub session: Arc<Session>,
    pub qos: Qos,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub subscription_ids: Vec<u32>,
}

/// The topic tree of all subscriptions.
#[derive(Debug, Default)]
pub struct Router {
    root: Node,
    count: usize,
}

impl Router {
    /// Adds or replaces a subscription; returns true if the session already had this filter.
    pub fn subscribe(
        &mut self,
        session: &Arc<Session>,
        filter: &SubscriptionFilter,
        options: SubscriptionOptions,
    ) -> bool {
        let mut node = &mut self.root;
        for level in filter.filter.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        let list = match &filter.share_group {
            Some(group) => &mut node.shared.entry(group.clone()).or_default().members,
            None => &mut node.subscribers,
        };
        let subscriber = Subscriber { session: Arc::clone(session), options };
        if let Some(existing) = list.iter_mut().find(|s| s.session.id == session.id) {
            *existing = subscriber;
            return true;
        }
        list.push(subscriber);
        self.count += 1;
        false
    }

    /// Removes a subscription; returns true if it existed.
    pub fn unsubscribe(&mut self, session_id: u64, filter: &SubscriptionFilter) -> bool {
        let levels: Vec<&str> = filter.filter.split('/').collect();
        let removed = remove_at(&mut self.root, &levels, filter.share_group.as_deref(), session_id);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Returns the number of subscriptions held.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Returns the sessions that receive a message published on `topic`, one entry each.
    pub fn targets(&self, topic: &str) -> Vec<Target> {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut found = Vec::new();
        let mut groups = Vec::new();
        collect(&self.root, &levels, 0, topic.starts_with('$'), &mut found, &mut groups);
        for group in groups {
            if let Some(member) = pick_shared_member(group) {
                found.push(member);
            }
        }
        merge_by_session(found)
    }
}

fn remove_at(node: &mut Node, levels: &[&str], group: Option<&str>, session_id: u64) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        let removed = match group {
            Some(name) => {
                let Some(shared) = node.shared.get_mut(name) else { return false };
                let before = shared.members.len();
                shared.members.retain(|s| s.session.id != session_id);
                let removed = shared.members.len() != before;
                if shared.members.is_empty() {
                    node.shared.remove(name);
                }
                removed
            }
            None => {
                let before = node.subscribers.len();
                node.subscribers.retain(|s| s.session.id != session_id);
                node.subscribers.len() != before
            }
        };
        return removed;
    };
    let Some(child) = node.children.get_mut(*first) else { return false };
    let removed = remove_at(child, rest, group, session_id);
    if child.is_empty() {
        node.children.remove(*first);
    }
    removed
}

fn collect<'a>(
    node: &'a Node,
    levels: &[&str],
    depth: usize,
    dollar_topic: bool,
    found: &mut Vec<Subscriber>,
    groups: &mut Vec<&'a SharedGroup>,
) {
    // Wildcards at the first level never match a topic that starts with '$'.
    let wildcards_allowed = !(depth == 0 && dollar_topic);
    if wildcards_allowed {
        if let Some(hash) = node.children.get("#") {
            found.extend(hash.subscribers.iter().cloned());
            groups.extend(hash.shared.values());
        }
    }
    let Some((level, rest)) = levels.split_first() else {
        found.extend(node.subscribers.iter().cloned());
        groups.extend(node.shared.values());
        return;
    };
    if let Some(child) = node.children.get(*level) {
        collect(child, rest, depth + 1, dollar_topic, found, groups);
    }
    if wildcards_allowed {
        if let Some(child) = node.children.get("+") {
            collect(child, rest, depth + 1, dollar_topic, found, groups);
        }
    }
}

fn pick_shared_member(group: &SharedGroup) -> Option<Subscriber> {
    let count = group.members.len();
    if count == 0 {
        return None;
    }
    let start = group.next.fetch_add(1, Ordering::Relaxed);
    let online = (0..count)
        .map(|offset| &group.members[(start + offset) % count])
        .find(|member| member.session.is_online());
    Some(online.unwrap_or(&group.members[start % count]).clone())
}

fn merge_by_session(found: Vec<Subscriber>) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::with_capacity(found.len());
    let mut index_by_session: HashMap<u64, usize> = HashMap::new();
    for subscriber in found {
        let options = subscriber.options;
        if let Some(&index) = index_by_session.get(&subscriber.session.id) {
            let target = &mut targets[index];
            if options.qos as u8 > target.qos as u8 {
                target.qos = options.qos;
            }
            target.no_local &= options.no_local;
            target.retain_as_published |= options.retain_as_published;
            target.subscription_ids.extend(options.identifier);
            continue;
        }
        index_by_session.insert(subscriber.session.id, targets.len());
        targets.push(Target {
            session: subscriber.session,
            qos: options.qos,
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            subscription_ids: options.identifier.into_iter().collect(),
        });
    }
    targets
}

/// Returns the QoS a target receives for a message published at `published`.
pub fn delivered_qos(published: Qos, target: &Target) -> Qos {
    min_qos(published, target.qos)
}
