//! The tail of the Raft log, in memory.
//!
//! openraft reads entries back right after appending them: the core reads committed entries
//! to hand them to the state machine, and each replication task reads what it sends to its
//! follower. Served from the engine, every such read is a seek, a scan and a decode, and the
//! core's read runs on its own task, holding up everything else it does. The cache keeps the
//! latest appended entries, contiguous up to the last one, so those reads are copies.
//!
//! Invariant: the cache holds a contiguous run of entries `first..=last` exactly as they are
//! in the engine. Every append, truncation and purge goes through it; eviction drops only the
//! oldest entries, so the run stays contiguous. A read it cannot serve completely returns
//! `None` and goes to the engine.

use std::collections::VecDeque;

use openraft::RaftLogId;

use super::TypeConfig;

type Entry = openraft::Entry<TypeConfig>;

/// Bounded by entry count and encoded bytes (`limits::LOG_CACHE_*`).
#[derive(Debug)]
pub struct LogCache {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
    entries_max: usize,
    bytes_max: usize,
}

impl LogCache {
    pub fn new(entries_max: usize, bytes_max: usize) -> LogCache {
        LogCache { entries: VecDeque::new(), bytes: 0, entries_max, bytes_max }
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.get_log_id().index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.get_log_id().index)
    }

    /// Records entries just written to the engine (`size`: each one's encoded length). An
    /// append that does not continue the cached run (after a restart, or after entries the
    /// cache never saw) starts a new run.
    pub fn append(&mut self, appended: impl IntoIterator<Item = (Entry, usize)>) {
        for (entry, size) in appended {
            let index = entry.get_log_id().index;
            // Overwriting from `index` (openraft truncates first; this keeps the invariant
            // even if it did not).
            self.truncate(index);
            if self.last_index().is_some_and(|last| last + 1 != index) {
                self.clear();
            }
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        while self.entries.len() > self.entries_max
            || (self.bytes > self.bytes_max && self.entries.len() > 1)
        {
            let (_, size) = self.entries.pop_front().expect("not empty");
            self.bytes -= size;
        }
    }

    /// Drops entries from `index` on (the log was truncated there).
    pub fn truncate(&mut self, index: u64) {
        while self.last_index().is_some_and(|last| last >= index) {
            let (_, size) = self.entries.pop_back().expect("not empty");
            self.bytes -= size;
        }
    }

    /// Drops entries up to and including `index` (the log was purged there).
    pub fn purge(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            let (_, size) = self.entries.pop_front().expect("not empty");
            self.bytes -= size;
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries `start..end` (`end` `None`: through the last), if the cache holds all of them
    /// that the log holds: the range starts inside the cached run and, when bounded, ends
    /// inside it or just past its last entry.
    pub fn read(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry>> {
        let (first, last) = (self.first_index()?, self.last_index()?);
        if start < first || end.is_some_and(|end| end > last + 1) {
            return None;
        }
        let end = end.unwrap_or(last + 1).max(start);
        let from = (start - first) as usize;
        let to = ((end - first) as usize).min(self.entries.len());
        Some(self.entries.range(from.min(to)..to).map(|(e, _)| e.clone()).collect())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;

    fn entry(index: u64) -> (Entry, usize) {
        let log_id = LogId::new(CommittedLeaderId::new(1, 1), index);
        (Entry { log_id, payload: EntryPayload::Blank }, 100)
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|e| e.iter().map(|e| e.get_log_id().index).collect())
    }

    #[test]
    fn serves_only_ranges_it_holds_completely() {
        let mut cache = LogCache::new(100, 1 << 20);
        assert_eq!(indexes(cache.read(1, None)), None, "empty: everything from the engine");
        cache.append((5..=9).map(entry));
        assert_eq!(indexes(cache.read(5, Some(10))), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(indexes(cache.read(7, None)), Some(vec![7, 8, 9]));
        assert_eq!(indexes(cache.read(10, None)), Some(vec![]), "past the end: nothing yet");
        assert_eq!(indexes(cache.read(6, Some(6))), Some(vec![]));
        assert_eq!(indexes(cache.read(4, Some(8))), None, "4 is only in the engine");
        assert_eq!(indexes(cache.read(8, Some(12))), None, "bounded past the last entry");
    }

    #[test]
    fn truncation_purge_and_overwrites_keep_it_equal_to_the_log() {
        let mut cache = LogCache::new(100, 1 << 20);
        cache.append((1..=6).map(entry));
        cache.truncate(5);
        assert_eq!(indexes(cache.read(1, None)), Some(vec![1, 2, 3, 4]));
        cache.purge(2);
        assert_eq!(indexes(cache.read(3, None)), Some(vec![3, 4]));
        assert_eq!(indexes(cache.read(2, None)), None);
        // Overwriting from 4 drops the old 4.
        cache.append([entry(4), entry(5)]);
        assert_eq!(indexes(cache.read(3, None)), Some(vec![3, 4, 5]));
        // An append that skips ahead (entries the cache never saw) starts a new run.
        cache.append([entry(9)]);
        assert_eq!(indexes(cache.read(9, None)), Some(vec![9]));
        assert_eq!(indexes(cache.read(5, None)), None);
    }

    #[test]
    fn evicts_the_oldest_past_either_bound() {
        let mut by_count = LogCache::new(3, 1 << 20);
        by_count.append((1..=5).map(entry));
        assert_eq!(by_count.len(), 3);
        assert_eq!(indexes(by_count.read(3, None)), Some(vec![3, 4, 5]));
        let mut by_bytes = LogCache::new(100, 250);
        by_bytes.append((1..=5).map(entry));
        assert_eq!(indexes(by_bytes.read(4, None)), Some(vec![4, 5]));
        assert_eq!(by_bytes.read(3, None).map(|e| e.len()), None);
    }
}
