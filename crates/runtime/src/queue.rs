//! One controller's keyed work queue: keys ready to run (each once), keys
//! running (never twice at once; an event meanwhile marks them dirty), and
//! a timer per key for requeues and backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_util::time::{delay_queue, DelayQueue};

use crate::{BACKOFF_MAX, BACKOFF_MIN, CONFLICT_BACKOFF_MIN};

#[derive(Default)]
pub(crate) struct Queue {
    ready: VecDeque<String>,
    queued: HashSet<String>,
    busy: HashSet<String>,
    dirty: HashSet<String>,
    timers: DelayQueue<String>,
    timer_of: HashMap<String, delay_queue::Key>,
    backoff: HashMap<String, Duration>,
}

impl Queue {
    /// Asks for a reconcile of `key` as soon as possible.
    pub fn enqueue(&mut self, key: String) {
        if self.busy.contains(&key) {
            self.dirty.insert(key);
        } else if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
        }
    }

    /// The next key to run, now marked busy.
    pub fn start_next(&mut self) -> Option<String> {
        let key = self.ready.pop_front()?;
        self.queued.remove(&key);
        self.busy.insert(key.clone());
        Some(key)
    }

    pub fn running(&self) -> usize {
        self.busy.len()
    }

    /// A reconcile of `key` ended; `after` is when to run it again (`None`:
    /// on change only). A key that got events while it ran runs again now.
    pub fn finish(&mut self, key: &str, after: Option<Duration>) {
        self.busy.remove(key);
        match after {
            Some(d) => self.schedule(key, d),
            None => self.unschedule(key),
        }
        if self.dirty.remove(key) {
            self.enqueue(key.to_string());
        }
    }

    /// A reconcile of `key` failed: retried after its backoff, which
    /// doubles per failure in a row.
    pub fn fail(&mut self, key: &str) -> Duration {
        self.fail_from(key, BACKOFF_MIN)
    }

    /// A reconcile lost a compare-and-swap: another writer changed what it
    /// read a moment ago, so reading again will most likely do. Retried
    /// soon, backing off from a much shorter first delay.
    pub fn conflict(&mut self, key: &str) -> Duration {
        self.fail_from(key, CONFLICT_BACKOFF_MIN)
    }

    fn fail_from(&mut self, key: &str, min: Duration) -> Duration {
        let b = self.backoff.get(key).copied().unwrap_or(min).max(min);
        self.backoff
            .insert(key.to_string(), (b * 2).min(BACKOFF_MAX));
        self.finish(key, Some(b));
        b
    }

    /// A reconcile of `key` succeeded: its backoff starts over.
    pub fn succeed(&mut self, key: &str, after: Option<Duration>) {
        self.backoff.remove(key);
        self.finish(key, after);
    }

    fn schedule(&mut self, key: &str, after: Duration) {
        match self.timer_of.get(key) {
            Some(t) => self.timers.reset(t, after),
            None => {
                let t = self.timers.insert(key.to_string(), after);
                self.timer_of.insert(key.to_string(), t);
            }
        }
    }

    fn unschedule(&mut self, key: &str) {
        if let Some(t) = self.timer_of.remove(key) {
            self.timers.remove(&t);
        }
    }

    pub fn has_timers(&self) -> bool {
        !self.timers.is_empty()
    }

    /// Enqueues the keys whose timer fired; pending while none did.
    pub fn poll_timers(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut fired = false;
        while let Poll::Ready(Some(expired)) = self.timers.poll_expired(cx) {
            let key = expired.into_inner();
            self.timer_of.remove(&key);
            self.enqueue(key);
            fired = true;
        }
        if fired {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_queued_once_and_never_runs_twice_at_once() {
        let mut q = Queue::default();
        q.enqueue("a".into());
        q.enqueue("a".into());
        q.enqueue("b".into());
        assert_eq!(q.start_next().as_deref(), Some("a"));
        q.enqueue("a".into());
        assert_eq!(q.start_next().as_deref(), Some("b"));
        assert_eq!(q.start_next(), None, "a is running: its event waits");
        q.succeed("a", None);
        assert_eq!(q.start_next().as_deref(), Some("a"), "then it runs again");
    }

    #[tokio::test]
    async fn failures_back_off_per_key() {
        let mut q = Queue::default();
        q.enqueue("a".into());
        q.start_next();
        assert_eq!(q.fail("a"), BACKOFF_MIN);
        q.enqueue("a".into());
        q.start_next();
        assert_eq!(q.fail("a"), BACKOFF_MIN * 2);
        q.enqueue("b".into());
        q.start_next();
        assert_eq!(q.fail("b"), BACKOFF_MIN, "b has its own backoff");
        q.enqueue("a".into());
        q.start_next();
        q.succeed("a", None);
        q.enqueue("a".into());
        q.start_next();
        assert_eq!(q.fail("a"), BACKOFF_MIN, "success resets it");
    }

    #[tokio::test]
    async fn conflicts_retry_sooner_but_still_back_off() {
        let mut q = Queue::default();
        let run_and = |q: &mut Queue, f: fn(&mut Queue, &str) -> Duration| {
            q.enqueue("a".into());
            q.start_next();
            f(q, "a")
        };
        assert_eq!(run_and(&mut q, Queue::conflict), CONFLICT_BACKOFF_MIN);
        assert_eq!(run_and(&mut q, Queue::conflict), CONFLICT_BACKOFF_MIN * 2);
        // A real failure after conflicts waits at least the normal minimum.
        assert_eq!(run_and(&mut q, Queue::fail), BACKOFF_MIN);
        assert_eq!(run_and(&mut q, Queue::conflict), BACKOFF_MIN * 2);
    }
}
