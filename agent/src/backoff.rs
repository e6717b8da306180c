//! Restart back-off of crashing containers, as client-go's `flowcontrol.Backoff` that the
//! kubelet uses: the first restart after an exit is immediate; each later one waits, from the
//! exit, a delay that starts at 10 s and doubles up to 5 min; an entry not touched for twice
//! the maximum (10 min, e.g. a container that ran that long) starts over. Time is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::limits::RESTART_BACKOFF_ENTRIES_MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    delay: Duration,
    last_update: Instant,
}

/// Back-off per key (pod uid + container name).
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        assert!(initial <= max);
        Backoff { initial, max, entries: HashMap::new() }
    }

    fn expired(&self, entry: &Entry, event: Instant) -> bool {
        event.saturating_duration_since(entry.last_update) > self.max * 2
    }

    /// The delay `key` is under, if any.
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    /// Whether a restart of `key` after an exit at `event` must still wait at `now`
    /// (`IsInBackOffSince`).
    pub fn in_backoff_since(&self, key: &str, event: Instant, now: Instant) -> bool {
        match self.entries.get(key) {
            None => false,
            Some(entry) if self.expired(entry, event) => false,
            Some(entry) => now.saturating_duration_since(event) < entry.delay,
        }
    }

    /// When a restart after an exit at `event` may happen.
    pub fn release_at(&self, key: &str, event: Instant) -> Instant {
        self.entries.get(key).map_or(event, |e| event + e.delay)
    }

    /// Records a restart after an exit at `event` (`Next`): the delay grows for the next one.
    pub fn next(&mut self, key: &str, event: Instant) {
        let fresh = Entry { delay: self.initial, last_update: event };
        let entry = match self.entries.get(key) {
            None => fresh,
            Some(entry) if self.expired(entry, event) => fresh,
            Some(entry) => Entry { delay: (entry.delay * 2).min(self.max), last_update: event },
        };
        if self.entries.len() >= RESTART_BACKOFF_ENTRIES_MAX && !self.entries.contains_key(key) {
            self.forget_expired(event);
        }
        if self.entries.len() < RESTART_BACKOFF_ENTRIES_MAX || self.entries.contains_key(key) {
            self.entries.insert(key.to_string(), entry);
        }
    }

    /// Drops entries that have expired by `now`.
    pub fn forget_expired(&mut self, now: Instant) {
        let max = self.max;
        self.entries.retain(|_, e| now.saturating_duration_since(e.last_update) <= max * 2);
    }

    /// Forgets `key` (its pod is gone).
    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_wait_10s_then_doubling_to_5_minutes_then_reset() {
        let mut backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        // First exit: restart at once.
        assert!(!backoff.in_backoff_since("c", at(0), at(0)));
        backoff.next("c", at(0));
        // Second exit at 1 s: wait 10 s from it.
        assert!(backoff.in_backoff_since("c", at(1), at(5)));
        assert!(!backoff.in_backoff_since("c", at(1), at(11)));
        backoff.next("c", at(11));
        assert_eq!(backoff.delay("c"), Some(Duration::from_secs(20)));
        let mut t = 11;
        for _ in 0..10 {
            t += 1;
            backoff.next("c", at(t));
        }
        assert_eq!(backoff.delay("c"), Some(Duration::from_secs(300)), "capped");
        // Ran for more than 10 minutes: the next restart starts over.
        let late = t + 601;
        assert!(!backoff.in_backoff_since("c", at(late), at(late)));
        backoff.next("c", at(late));
        assert_eq!(backoff.delay("c"), Some(Duration::from_secs(10)));
    }
}
