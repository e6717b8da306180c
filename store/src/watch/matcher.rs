//! Which events a watcher wants: its key range, filters and start revision. Pure.

use crate::mvcc::{Event, EventKind};

/// What a client asked to watch, in etcd's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSpec {
    pub key: Vec<u8>,
    /// Empty: the single key; `[0]`: every key >= `key`; otherwise `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// 0: from the next revision.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub progress_notify: bool,
}

impl WatchSpec {
    pub fn matches_key(&self, key: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => key == self.key.as_slice(),
            [0] => key >= self.key.as_slice(),
            end => key >= self.key.as_slice() && key < end,
        }
    }

    fn wants(&self, event: &Event) -> bool {
        let filtered = match event.kind {
            EventKind::Put => self.no_put,
            EventKind::Delete => self.no_delete,
        };
        !filtered && self.matches_key(&event.kv.key)
    }

    /// The events at or after `from_revision` this watcher wants, as it wants them.
    pub fn select(&self, events: &[Event], from_revision: i64) -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.kv.mod_revision >= from_revision && self.wants(e))
            .map(|e| {
                let mut event = e.clone();
                if !self.prev_kv {
                    event.prev_kv = None;
                }
                event
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::KeyValue;

    fn put(key: &str, revision: i64) -> Event {
        let kv = KeyValue { key: key.into(), mod_revision: revision, ..KeyValue::default() };
        Event::put(kv.clone(), Some(kv))
    }

    fn delete(key: &str, revision: i64) -> Event {
        let kv = KeyValue { key: key.into(), mod_revision: revision, ..KeyValue::default() };
        Event::delete(kv, None)
    }

    fn check(spec: WatchSpec, from: i64, expected: &[&str]) {
        let events = [put("a", 2), put("b", 3), delete("b", 4), put("c", 5), put("d\0", 6)];
        let selected: Vec<String> = spec
            .select(&events, from)
            .iter()
            .map(|e| {
                let kind = if e.kind == EventKind::Put { "put" } else { "del" };
                let prev = if e.prev_kv.is_some() { "+prev" } else { "" };
                format!("{kind} {}@{}{prev}", String::from_utf8_lossy(&e.kv.key), e.kv.mod_revision)
            })
            .collect();
        assert_eq!(selected, expected, "{spec:?} from {from}");
    }

    fn spec(key: &str, range_end: &[u8]) -> WatchSpec {
        WatchSpec { key: key.into(), range_end: range_end.to_vec(), ..WatchSpec::default() }
    }

    #[test]
    fn selects_by_key_range_revision_and_filter() {
        check(spec("b", b""), 0, &["put b@3", "del b@4"]);
        check(spec("b", b"d"), 0, &["put b@3", "del b@4", "put c@5"]);
        check(spec("b", &[0]), 0, &["put b@3", "del b@4", "put c@5", "put d\0@6"]);
        check(spec("\0", &[0]), 4, &["del b@4", "put c@5", "put d\0@6"]);
        check(spec("d", b"e"), 0, &["put d\0@6"]);
        check(WatchSpec { no_put: true, ..spec("b", b"") }, 0, &["del b@4"]);
        check(WatchSpec { no_delete: true, ..spec("b", b"") }, 0, &["put b@3"]);
        check(WatchSpec { prev_kv: true, ..spec("a", b"") }, 0, &["put a@2+prev"]);
        check(spec("zz", b""), 0, &[]);
    }
}
