//! Clusters that were due while every slot for their kind of job was
//! taken, in the order they came.
//!
//! A job that ends wakes only as many waiting clusters as there are free
//! slots, oldest first: waking them all would make every finished job cost
//! a reconcile per waiting cluster, which at a fleet's first round (all
//! clusters due at once) is quadratic in the fleet.

use std::collections::{HashSet, VecDeque};

#[derive(Debug, Default)]
pub(crate) struct WaitList {
    order: VecDeque<String>,
    members: HashSet<String>,
}

impl WaitList {
    /// Adds `cluster` at the end unless it already waits.
    pub fn push(&mut self, cluster: &str) {
        if self.members.insert(cluster.to_string()) {
            self.order.push_back(cluster.to_string());
        }
    }

    /// `cluster` got a slot by itself (reconciled for another reason while
    /// a slot was free): it no longer waits. Waking it later instead of a
    /// cluster that does wait would lose that wake-up, since it has nothing
    /// left to start. Its place in the queue is dropped lazily by `take`.
    pub fn remove(&mut self, cluster: &str) {
        self.members.remove(cluster);
    }

    /// Removes and returns the `n` clusters that waited longest.
    pub fn take(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n.min(self.members.len()));
        while out.len() < n {
            let Some(c) = self.order.pop_front() else {
                break;
            };
            if self.members.remove(&c) {
                out.push(c);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_the_oldest_first_and_each_once() {
        let mut w = WaitList::default();
        for c in ["a", "b", "a", "c"] {
            w.push(c);
        }
        assert_eq!(w.take(2), ["a", "b"], "a waits once");
        w.push("a");
        assert_eq!(w.take(5), ["c", "a"]);
        assert!(w.take(1).is_empty());
    }

    #[test]
    fn a_cluster_that_started_by_itself_is_not_woken() {
        let mut w = WaitList::default();
        for c in ["a", "b", "c"] {
            w.push(c);
        }
        w.remove("a");
        assert_eq!(w.take(1), ["b"], "the wake-up goes to one that waits");
        // Waiting again after it started by itself: it queues once.
        w.push("a");
        assert_eq!(w.take(5), ["c", "a"]);
        assert!(w.take(1).is_empty());
    }
}
