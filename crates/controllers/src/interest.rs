//! The clusters a feature controller serves, so that the events of every
//! backup wake it only for those.
//!
//! A backup writes its cluster's status three times; a controller for a
//! feature most clusters leave off (copies, drills) reconciled each of
//! them for every cluster, to find the feature off. With an [`Interest`],
//! the controller records in each reconcile whether the cluster uses the
//! feature, and its per-backup inputs map only clusters that do. Cluster
//! events still reach every cluster, so one that turns the feature on is
//! reconciled and joins; the start-up listing reconciles every cluster.
//!
//! No wake-up is lost as long as a reconcile marks its cluster *before* it
//! reads the state those inputs carry: an event after the mark is mapped,
//! and the reconcile sees the state of any event before it.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use omni_resources::Resource;
use omni_runtime::Input;

#[derive(Clone, Default)]
pub(crate) struct Interest(Arc<RwLock<HashSet<String>>>);

impl Interest {
    /// Records whether `key` uses the feature.
    pub fn mark(&self, key: &str, on: bool) {
        if self.contains(key) == on {
            return;
        }
        let mut set = self.0.write().unwrap_or_else(|e| e.into_inner());
        if on {
            set.insert(key.to_string());
        } else {
            set.remove(key);
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    /// Events of `kind` reconcile the resource's id while it is marked.
    pub fn by_id(&self, kind: &'static str) -> Input {
        let interest = self.clone();
        Input::lookup(kind, move |_, r: Resource| {
            let keys = if interest.contains(&r.metadata.id) {
                vec![r.metadata.id]
            } else {
                Vec::new()
            };
            Box::pin(std::future::ready(keys))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_follow_the_last_word() {
        let i = Interest::default();
        assert!(!i.contains("c1"));
        i.mark("c1", true);
        i.mark("c1", true);
        assert!(i.contains("c1") && !i.contains("c2"));
        i.mark("c1", false);
        assert!(!i.contains("c1"));
    }
}
