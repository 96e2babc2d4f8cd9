//! Topic ACLs: which topics each client may publish to and read, from a file in
//! Mosquitto's `acl_file` format (parsed by `lpiotia_auth::acl`).
//!
//! A PUBLISH and a will need write access, a SUBSCRIBE filter read access. Every message is
//! checked again as it leaves for a subscriber, retained messages included, so a
//! subscription to a wide filter never carries a denied topic. A reload
//! (SIGHUP) re-checks the subscriptions of connected clients; a resumed session's
//! subscriptions are re-checked when its client reconnects.

use std::sync::Arc;

use lpiotia_auth::{Access, AclError, AclFile};
use tracing::{info, warn};

use crate::broker::Broker;
use crate::session::Session;

impl Broker {
    /// Returns the ACL in force, or `None` when every topic is allowed.
    pub fn acl(&self) -> Option<Arc<AclFile>> {
        self.acl.read().clone()
    }

    /// Puts `acl` in force for every check from now on.
    pub fn set_acl(&self, acl: Option<AclFile>) {
        *self.acl.write() = acl.map(Arc::new);
    }

    /// Re-reads the configured ACL file and re-checks the subscriptions of connected
    /// clients. Returns the number of rules, or `None` when no ACL file is configured. On
    /// error the rules loaded before stay in force.
    pub fn reload_acl(&self) -> Result<Option<usize>, AclError> {
        let Some(path) = &self.config.acl_file else { return Ok(None) };
        let acl = AclFile::load(path)?;
        let rules = acl.rule_count();
        self.set_acl(Some(acl));
        if rules == 0 {
            warn!(file = %path.display(), "ACL file reloaded with no rules, so every PUBLISH and SUBSCRIBE is denied");
        } else {
            info!(file = %path.display(), rules, "ACL file reloaded");
        }
        let online: Vec<Arc<Session>> = self.sessions_snapshot().into_iter().filter(|session| session.is_online()).collect();
        for session in online {
            let username = session.lock().username.clone();
            self.recheck_subscriptions(&session, username.as_deref());
        }
        Ok(Some(rules))
    }

    /// Returns whether `username` (None: anonymous) with `client_id` may publish to `topic`.
    pub fn may_publish(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        self.acl.read().as_ref().is_none_or(|acl| acl.allows(username, client_id, topic, Access::Write))
    }

    /// Returns whether `username` with `client_id` may subscribe to `filter`, given without
    /// its `$share/GROUP/` prefix.
    pub fn may_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        self.acl.read().as_ref().is_none_or(|acl| acl.allows_subscribe(username, client_id, filter))
    }

    /// Removes the subscriptions of `session` that the ACL no longer allows to `username`;
    /// returns how many were removed.
    pub fn recheck_subscriptions(&self, session: &Arc<Session>, username: Option<&str>) -> usize {
        let Some(acl) = self.acl() else { return 0 };
        let denied: Vec<_> = session
            .lock()
            .subscriptions
            .iter()
            .filter(|(_, (filter, _))| !acl.allows_subscribe(username, &session.client_id, &filter.filter))
            .map(|(key, (filter, _))| (key.clone(), filter.clone()))
            .collect();
        if denied.is_empty() {
            return 0;
        }
        for (key, filter) in &denied {
            self.router.write().unsubscribe(session.id, filter);
            session.lock().subscriptions.remove(key);
            info!(client_id = %session.client_id, filter = %key, "subscription removed: the ACL no longer allows it");
        }
        let _ = self.persist_session(session);
        denied.len()
    }
}
