//! [`Overlay`]: buffered writes layered over a read view, readable as if already applied.
//!
//! MVCC apply reads its own earlier writes (a txn's range sees the txn's puts, the second
//! request of a batch sees the first) without touching storage; the caller turns the overlay
//! into one atomic [`WriteBatch`] when the whole batch is applied.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::engine::{EngineError, Keyspace, KvRead, Visit, WriteBatch};

/// Per keyspace, key -> `Some(value)` (put) or `None` (deleted).
pub(crate) type Writes = BTreeMap<Keyspace, BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

/// Read-your-writes layer over a [`KvRead`]; itself a [`KvRead`], so overlays nest.
pub struct Overlay<'a> {
    base: &'a dyn KvRead,
    writes: Writes,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn KvRead) -> Overlay<'a> {
        Overlay { base, writes: Writes::new() }
    }

    pub fn put(&mut self, keyspace: Keyspace, key: Vec<u8>, value: Vec<u8>) {
        self.writes.entry(keyspace).or_default().insert(key, Some(value));
    }

    pub fn delete(&mut self, keyspace: Keyspace, key: Vec<u8>) {
        self.writes.entry(keyspace).or_default().insert(key, None);
    }

    /// True if nothing has been written through this overlay.
    pub fn is_empty(&self) -> bool {
        self.writes.values().all(BTreeMap::is_empty)
    }

    /// The buffered writes as one batch (only the last write of each key survives).
    pub fn into_batch(self) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for (keyspace, keys) in self.writes {
            for (key, value) in keys {
                match value {
                    Some(value) => batch.put(keyspace, key, value),
                    None => batch.delete(keyspace, key),
                }
            }
        }
        batch
    }

    pub(crate) fn into_writes(self) -> Writes {
        self.writes
    }

    /// Applies writes buffered by a child overlay (which read through this one).
    pub(crate) fn merge(&mut self, writes: Writes) {
        for (keyspace, keys) in writes {
            self.writes.entry(keyspace).or_default().extend(keys);
        }
    }

    fn local(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Vec<(&[u8], Option<&[u8]>)> {
        let Some(keys) = self.writes.get(&keyspace) else {
            return Vec::new();
        };
        if end.is_some_and(|end| start >= end) {
            return Vec::new();
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        keys.range::<[u8], _>((Bound::Included(start), upper))
            .map(|(key, value)| (key.as_slice(), value.as_deref()))
            .collect()
    }
}

/// Merges the overlay's entries (`local`, in visiting order) into a base scan. `before(a, b)`
/// says whether key `a` is visited before key `b` in this scan's direction.
fn merged_scan(
    local: Vec<(&[u8], Option<&[u8]>)>,
    before: fn(&[u8], &[u8]) -> bool,
    base_scan: impl FnOnce(&mut Visit<'_>) -> Result<(), EngineError>,
    visit: &mut Visit<'_>,
) -> Result<(), EngineError> {
    let mut local = local.into_iter().peekable();
    let mut stopped = false;
    let mut on_base = |key: &[u8], value: &[u8]| {
        while let Some((local_key, local_value)) = local.next_if(|(k, _)| before(k, key)) {
            if let Some(local_value) = local_value {
                if !visit(local_key, local_value) {
                    stopped = true;
                    return false;
                }
            }
        }
        // The overlay's write of this key, if any, replaces the base's value.
        let visible = match local.next_if(|(k, _)| *k == key) {
            Some((_, local_value)) => local_value,
            None => Some(value),
        };
        if let Some(visible) = visible {
            if !visit(key, visible) {
                stopped = true;
                return false;
            }
        }
        true
    };
    base_scan(&mut on_base)?;
    if stopped {
        return Ok(());
    }
    for (key, value) in local {
        if let Some(value) = value {
            if !visit(key, value) {
                break;
            }
        }
    }
    Ok(())
}

impl KvRead for Overlay<'_> {
    fn get(&self, keyspace: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        match self.writes.get(&keyspace).and_then(|keys| keys.get(key)) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(keyspace, key),
        }
    }

    fn scan(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError> {
        let local = self.local(keyspace, start, end);
        let base_scan = |on_base: &mut Visit<'_>| self.base.scan(keyspace, start, end, on_base);
        merged_scan(local, |a, b| a < b, base_scan, visit)
    }

    fn scan_reverse(
        &self,
        keyspace: Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError> {
        let mut local = self.local(keyspace, start, end);
        local.reverse();
        let base_scan =
            |on_base: &mut Visit<'_>| self.base.scan_reverse(keyspace, start, end, on_base);
        merged_scan(local, |a, b| a > b, base_scan, visit)
    }
}

#[cfg(test)]
mod tests {
    use super::Overlay;
    use crate::engine::{Durability, Keyspace, KvEngine, KvRead, MemoryEngine, WriteBatch};

    const KS: Keyspace = Keyspace::KvIndex;

    fn base(keys: &[&str]) -> MemoryEngine {
        let engine = MemoryEngine::new();
        let mut batch = WriteBatch::default();
        for key in keys {
            batch.put(KS, key.as_bytes().to_vec(), b"base".to_vec());
        }
        engine.write(batch, Durability::Buffered).unwrap();
        engine
    }

    /// Scans `[start, end)` both ways, stopping after `stop_after` entries, as "key=value".
    fn scans(read: &dyn KvRead, start: &str, end: Option<&str>, stop_after: usize) -> [String; 2] {
        let mut results = [Vec::new(), Vec::new()];
        for (reverse, out) in results.iter_mut().enumerate() {
            let mut visit = |k: &[u8], v: &[u8]| {
                out.push(format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)));
                out.len() < stop_after
            };
            let end = end.map(str::as_bytes);
            if reverse == 1 {
                read.scan_reverse(KS, start.as_bytes(), end, &mut visit).unwrap();
            } else {
                read.scan(KS, start.as_bytes(), end, &mut visit).unwrap();
            }
        }
        results.map(|out| out.join(" "))
    }

    fn layered(engine: &MemoryEngine) -> Overlay<'_> {
        let mut overlay = Overlay::new(engine);
        overlay.put(KS, b"a".to_vec(), b"new".to_vec());
        overlay.put(KS, b"c".to_vec(), b"over".to_vec());
        overlay.delete(KS, b"d".to_vec());
        overlay.put(KS, b"f".to_vec(), b"new".to_vec());
        overlay.delete(KS, b"zz".to_vec());
        overlay
    }

    #[test]
    fn scans_merge_overlay_and_base() {
        let engine = base(&["b", "c", "d", "e"]);
        let overlay = layered(&engine);
        let [forward, backward] = scans(&overlay, "", None, usize::MAX);
        assert_eq!(forward, "a=new b=base c=over e=base f=new");
        assert_eq!(backward, "f=new e=base c=over b=base a=new");
        assert_eq!(
            scans(&overlay, "b", Some("f"), usize::MAX),
            ["b=base c=over e=base".to_string(), "e=base c=over b=base".to_string()]
        );
        assert_eq!(scans(&overlay, "f", Some("a"), usize::MAX), [String::new(), String::new()]);
    }

    #[test]
    fn scans_stop_early_in_every_position() {
        let engine = base(&["b", "c", "d", "e"]);
        let overlay = layered(&engine);
        for (stop_after, forward, backward) in [
            (1, "a=new", "f=new"),
            (2, "a=new b=base", "f=new e=base"),
            (3, "a=new b=base c=over", "f=new e=base c=over"),
            (5, "a=new b=base c=over e=base f=new", "f=new e=base c=over b=base a=new"),
        ] {
            let [f, b] = scans(&overlay, "", None, stop_after);
            assert_eq!((f.as_str(), b.as_str()), (forward, backward), "stop after {stop_after}");
        }
    }

    #[test]
    fn nested_overlays_merge_into_parent() {
        let engine = base(&["b"]);
        let mut parent = layered(&engine);
        let writes = {
            let mut child = Overlay::new(&parent);
            child.delete(KS, b"a".to_vec());
            child.put(KS, b"d".to_vec(), b"child".to_vec());
            assert_eq!(child.get(KS, b"c").unwrap(), Some(b"over".to_vec()));
            assert_eq!(scans(&child, "", None, usize::MAX)[0], "b=base c=over d=child f=new");
            child.into_writes()
        };
        assert_eq!(parent.get(KS, b"a").unwrap(), Some(b"new".to_vec()));
        parent.merge(writes);
        assert_eq!(parent.get(KS, b"a").unwrap(), None);
        assert_eq!(parent.get(KS, b"b").unwrap(), Some(b"base".to_vec()));
        assert!(!parent.is_empty());
        let batch = parent.into_batch();
        engine.write(batch, Durability::Sync).unwrap();
        assert_eq!(scans(&engine, "", None, usize::MAX)[0], "b=base c=over d=child f=new");
        assert!(Overlay::new(&engine).is_empty());
    }
}
