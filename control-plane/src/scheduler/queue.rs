//! The scheduling queue, kube-scheduler's three queues in one pure structure with time passed
//! in: *active* (ready to be tried, highest priority first, then first come), *backoff* (tried
//! and failed, waiting 1 s doubling to 10 s per attempt before they may be tried again) and
//! *unschedulable* (no node fit; they wait for a cluster change that could help, or at most
//! `unschedulable_max`). A popped pod is *in flight* until the driver says how its attempt
//! ended.
//!
//! Bounds: the queue holds each pending pod once, keyed by `namespace/name`, so its size is
//! bounded by the pods in the cluster view. Heap and deque entries are removed lazily (an entry
//! is valid only while its sequence number matches the pod's state); they are compacted once
//! stale entries outnumber live ones, so they stay within twice the pods plus a constant.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long pods wait in the backoff and unschedulable queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueTiming {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// The longest a pod waits in the unschedulable queue without a cluster change.
    pub unschedulable_max: Duration,
}

impl QueueTiming {
    /// kube-scheduler's back-off after `attempts` failed attempts: the initial duration
    /// doubled per further attempt, at most the maximum.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let mut duration = self.backoff_initial;
        for _ in 1..attempts {
            duration = duration.saturating_mul(2);
            if duration >= self.backoff_max {
                return self.backoff_max;
            }
        }
        duration.min(self.backoff_max)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Active { seq: u64 },
    Backoff { seq: u64 },
    Unschedulable { seq: u64 },
    InFlight { cycle: u64 },
}

#[derive(Debug)]
struct Entry<T> {
    item: T,
    priority: i32,
    state: State,
    attempts: u32,
    /// Before this instant a retry goes through the backoff queue.
    backoff_until: Option<Instant>,
}

/// A pod taken from the active queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Popped<T> {
    pub key: String,
    pub item: T,
    /// Attempts including this one.
    pub attempts: u32,
    /// The scheduling cycle of this attempt, to hand back to [`SchedulingQueue::unschedulable`].
    pub cycle: u64,
}

/// How many pods are in each queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueLengths {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub in_flight: usize,
}

/// Stale entries tolerated beyond twice the live ones before a compaction.
const STALE_SLACK: usize = 64;

#[derive(Debug)]
pub struct SchedulingQueue<T> {
    timing: QueueTiming,
    pods: HashMap<String, Entry<T>>,
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// In the order pods became unschedulable, hence by time.
    unschedulable: VecDeque<(Instant, u64, String)>,
    lengths: QueueLengths,
    seq: u64,
    cycle: u64,
    /// The cycle during which a cluster change last asked waiting pods to retry.
    move_request_cycle: Option<u64>,
}

impl<T: Clone> SchedulingQueue<T> {
    pub fn new(timing: QueueTiming) -> SchedulingQueue<T> {
        SchedulingQueue {
            timing,
            pods: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            unschedulable: VecDeque::new(),
            lengths: QueueLengths::default(),
            seq: 0,
            cycle: 0,
            move_request_cycle: None,
        }
    }

    pub fn lengths(&self) -> QueueLengths {
        self.lengths
    }

    pub fn get(&self, key: &str) -> Option<&T> {
        self.pods.get(key).map(|e| &e.item)
    }

    pub fn keys(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn count(&mut self, state: State, delta: isize) {
        let length = match state {
            State::Active { .. } => &mut self.lengths.active,
            State::Backoff { .. } => &mut self.lengths.backoff,
            State::Unschedulable { .. } => &mut self.lengths.unschedulable,
            State::InFlight { .. } => &mut self.lengths.in_flight,
        };
        *length = length.checked_add_signed(delta).expect("queue length never negative");
    }

    /// Puts the pod `key` into state `to`, pushing the entry its queue needs.
    fn set_state(&mut self, key: &str, to: Target, now: Instant) {
        let seq = self.next_seq();
        let cycle = self.cycle;
        let entry = self.pods.get_mut(key).expect("pod in the queue");
        let (from, priority) = (entry.state, entry.priority);
        entry.state = match to {
            Target::Active => State::Active { seq },
            Target::Backoff(_) => State::Backoff { seq },
            Target::Unschedulable => State::Unschedulable { seq },
            Target::InFlight => State::InFlight { cycle },
        };
        let state = entry.state;
        match to {
            Target::Active => self.active.push((priority, Reverse(seq), key.to_string())),
            Target::Backoff(until) => self.backoff.push(Reverse((until, seq, key.to_string()))),
            Target::Unschedulable => self.unschedulable.push_back((now, seq, key.to_string())),
            Target::InFlight => {}
        }
        self.count(from, -1);
        self.count(state, 1);
    }

    /// Adds a pending pod, or updates the one queued under `key` (keeping its place; see
    /// [`SchedulingQueue::activate`] for updates that may make it schedulable).
    pub fn add(&mut self, key: &str, item: T, priority: i32) {
        match self.pods.get_mut(key) {
            Some(entry) => {
                entry.item = item;
                let reorder = entry.priority != priority;
                entry.priority = priority;
                if reorder && matches!(entry.state, State::Active { .. }) {
                    let seq = self.next_seq();
                    let entry = self.pods.get_mut(key).expect("just found");
                    entry.state = State::Active { seq };
                    self.active.push((priority, Reverse(seq), key.to_string()));
                    self.compact();
                }
            }
            None => {
                let seq = self.next_seq();
                self.pods.insert(
                    key.to_string(),
                    Entry {
                        item,
                        priority,
                        state: State::Active { seq },
                        attempts: 0,
                        backoff_until: None,
                    },
                );
                self.active.push((priority, Reverse(seq), key.to_string()));
                self.lengths.active += 1;
            }
        }
    }

    /// Moves an unschedulable pod back to be tried (through backoff if its back-off has not
    /// run out): it changed in a way that may make it fit.
    pub fn activate(&mut self, key: &str, now: Instant) {
        if matches!(self.pods.get(key), Some(Entry { state: State::Unschedulable { .. }, .. })) {
            self.retry(key, now);
            self.compact();
        }
    }

    fn retry(&mut self, key: &str, now: Instant) {
        let until = self.pods[key].backoff_until.filter(|until| *until > now);
        let target = until.map_or(Target::Active, Target::Backoff);
        self.set_state(key, target, now);
    }

    /// A cluster change that may help waiting pods (a node added or changed, capacity freed):
    /// every unschedulable pod is tried again, and pods in flight that turn out unschedulable
    /// go to backoff instead of waiting for another change.
    pub fn move_all(&mut self, now: Instant) {
        self.move_request_cycle = Some(self.cycle);
        while let Some((_, seq, key)) = self.unschedulable.pop_front() {
            if self.pods.get(&key).is_some_and(|e| e.state == State::Unschedulable { seq }) {
                self.retry(&key, now);
            }
        }
    }

    /// Moves pods whose back-off ended to active, and pods unschedulable for longer than
    /// `unschedulable_max` back to be tried.
    pub fn flush(&mut self, now: Instant) {
        while let Some(Reverse((until, seq, key))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            if self.pods.get(&key).is_some_and(|e| e.state == State::Backoff { seq }) {
                self.set_state(&key, Target::Active, now);
            }
        }
        while let Some((since, seq, key)) = self.unschedulable.front().cloned() {
            if since + self.timing.unschedulable_max > now {
                break;
            }
            self.unschedulable.pop_front();
            if self.pods.get(&key).is_some_and(|e| e.state == State::Unschedulable { seq }) {
                self.retry(&key, now);
            }
        }
    }

    /// When [`SchedulingQueue::flush`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let backoff = self.backoff.peek().map(|Reverse((until, _, _))| *until);
        let unschedulable =
            self.unschedulable.front().map(|(since, _, _)| *since + self.timing.unschedulable_max);
        match (backoff, unschedulable) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the next pod to try (after flushing what is due), marking it in flight.
    pub fn pop(&mut self, now: Instant) -> Option<Popped<T>> {
        self.flush(now);
        while let Some((_, Reverse(seq), key)) = self.active.pop() {
            if !self.pods.get(&key).is_some_and(|e| e.state == State::Active { seq }) {
                continue;
            }
            self.cycle += 1;
            self.set_state(&key, Target::InFlight, now);
            let entry = self.pods.get_mut(&key).expect("pod in the queue");
            entry.attempts += 1;
            return Some(Popped {
                item: entry.item.clone(),
                attempts: entry.attempts,
                cycle: self.cycle,
                key,
            });
        }
        None
    }

    fn in_flight(&self, key: &str) -> bool {
        matches!(self.pods.get(key), Some(Entry { state: State::InFlight { .. }, .. }))
    }

    /// The attempt succeeded (the pod is bound): it leaves the queue.
    pub fn done(&mut self, key: &str) {
        if self.in_flight(key) {
            self.delete(key);
        }
    }

    /// The attempt failed for a reason other than fit (binding failed, API error): the pod
    /// retries after its back-off.
    pub fn backoff(&mut self, key: &str, now: Instant) {
        if self.in_flight(key) {
            let until = now + self.timing.backoff(self.pods[key].attempts);
            self.pods.get_mut(key).expect("in flight").backoff_until = Some(until);
            self.set_state(key, Target::Backoff(until), now);
        }
    }

    /// No node fit in the attempt of scheduling cycle `cycle`: the pod waits for a cluster
    /// change, unless one already happened since the attempt began (then it backs off).
    pub fn unschedulable(&mut self, key: &str, cycle: u64, now: Instant) {
        if !self.in_flight(key) {
            return;
        }
        let until = now + self.timing.backoff(self.pods[key].attempts);
        self.pods.get_mut(key).expect("in flight").backoff_until = Some(until);
        if self.move_request_cycle.is_some_and(|moved| moved >= cycle) {
            self.set_state(key, Target::Backoff(until), now);
        } else {
            self.set_state(key, Target::Unschedulable, now);
        }
    }

    /// The pod is gone, bound by someone else, or no longer ours to schedule.
    pub fn delete(&mut self, key: &str) {
        if let Some(entry) = self.pods.remove(key) {
            self.count(entry.state, -1);
            self.compact();
        }
    }

    /// Drops stale heap and deque entries once they outnumber the live ones.
    fn compact(&mut self) {
        let live = self.pods.len();
        let over = |len: usize| len > 2 * live + STALE_SLACK;
        let pods = &self.pods;
        if over(self.active.len()) {
            self.active.retain(|(_, Reverse(seq), key)| {
                pods.get(key).is_some_and(|e| e.state == State::Active { seq: *seq })
            });
        }
        if over(self.backoff.len()) {
            self.backoff.retain(|Reverse((_, seq, key))| {
                pods.get(key).is_some_and(|e| e.state == State::Backoff { seq: *seq })
            });
        }
        if over(self.unschedulable.len()) {
            self.unschedulable.retain(|(_, seq, key)| {
                pods.get(key).is_some_and(|e| e.state == State::Unschedulable { seq: *seq })
            });
        }
    }

    /// Entries held in the heaps and the deque, stale ones included (for bound checks).
    pub fn entries_len(&self) -> usize {
        self.active.len() + self.backoff.len() + self.unschedulable.len()
    }
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Active,
    Backoff(Instant),
    Unschedulable,
    InFlight,
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
