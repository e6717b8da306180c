//! Reads: the store's revisions, the live keys of a range at a revision, and etcd's Range.

use std::cmp::Ordering;

use super::keys::{self, RecordHeader, Revision};
use super::{Event, EventKind, KeyValue, MvccError, RangeRequest, RangeResponse};
use super::{SortOrder, SortTarget};
use crate::engine::{Keyspace, KvRead};

/// The store's current revision: 1 on an empty store, as in etcd.
pub fn current_revision(r: &dyn KvRead) -> Result<i64, MvccError> {
    let stored = r.get(Keyspace::KvMeta, keys::META_CURRENT_REVISION)?;
    let revision = match stored {
        Some(bytes) => keys::decode_i64(&bytes, "current revision")?,
        None => 1,
    };
    if revision < 1 {
        return Err(MvccError::Corrupt(format!("current revision {revision} < 1")));
    }
    Ok(revision)
}

/// The revision history was last compacted at; 0 if it never was.
pub fn compacted_revision(r: &dyn KvRead) -> Result<i64, MvccError> {
    match r.get(Keyspace::KvMeta, keys::META_COMPACTED_REVISION)? {
        Some(bytes) => keys::decode_i64(&bytes, "compacted revision"),
        None => Ok(0),
    }
}

/// A key's version chosen by a scan, before its value is fetched.
struct Found {
    encoded_key: Vec<u8>,
    revision: Revision,
    create_revision: i64,
    version: i64,
    lease: i64,
}

/// The live keys of a range at one revision.
pub(crate) struct LiveKeys {
    /// The first `fetch_max` live keys in key order.
    pub kvs: Vec<KeyValue>,
    /// All live keys in the range, fetched or not.
    pub count: usize,
}

/// Collects the keys of `[key, range_end)` (etcd's conventions) live at revision `at`: each
/// key's newest version with `main <= at`, unless that version is a tombstone.
///
/// A multi-key scan decodes only record headers; values are read afterwards, one point lookup
/// per returned key, so versions that are not returned are never copied. `r` must be a
/// consistent view (a snapshot or an overlay over one).
pub(crate) fn live_keys(
    r: &dyn KvRead,
    key: &[u8],
    range_end: &[u8],
    at: i64,
    fetch_max: usize,
    with_values: bool,
) -> Result<LiveKeys, MvccError> {
    if range_end.is_empty() {
        // A single key (the common get, compare and delete): seek its newest version directly.
        let kvs: Vec<KeyValue> = live_version(r, key, Some(at))?.into_iter().collect();
        let count = kvs.len();
        return Ok(LiveKeys { kvs: kvs.into_iter().take(fetch_max).collect(), count });
    }
    let (start, end) = keys::index_bounds(key, range_end);
    let mut scan =
        GroupScan { at, fetch_max, found: Vec::new(), count: 0, group: Vec::new(), newest: None };
    let mut failure = None;
    let mut visit = |raw: &[u8], record: &[u8]| match scan.visit(raw, record) {
        Ok(()) => true,
        Err(error) => {
            failure = Some(error);
            false
        }
    };
    r.scan(Keyspace::KvIndex, &start, end.as_deref(), &mut visit)?;
    if let Some(error) = failure {
        return Err(error);
    }
    scan.finish_group();
    let kvs = scan
        .found
        .into_iter()
        .map(|found| key_value(r, found, with_values))
        .collect::<Result<_, _>>()?;
    Ok(LiveKeys { kvs, count: scan.count })
}

/// State of a forward `KvIndex` scan: versions of one key arrive together, oldest first.
struct GroupScan {
    at: i64,
    fetch_max: usize,
    found: Vec<Found>,
    count: usize,
    /// The encoded key whose versions are being visited (empty before the first).
    group: Vec<u8>,
    /// The group's newest version so far with `main <= at`.
    newest: Option<(Revision, RecordHeader)>,
}

impl GroupScan {
    fn visit(&mut self, raw: &[u8], record: &[u8]) -> Result<(), MvccError> {
        let (encoded, revision) = keys::split_index_key(raw)?;
        if encoded != self.group.as_slice() {
            self.finish_group();
            self.group = encoded.to_vec();
        }
        if revision.main <= self.at {
            let (header, _) = keys::decode_record(record)?;
            let in_order = self.newest.is_none_or(|(newest, _)| newest < revision);
            assert!(in_order, "index versions out of revision order at {revision:?}");
            self.newest = Some((revision, header));
        }
        Ok(())
    }

    fn finish_group(&mut self) {
        let Some((revision, header)) = self.newest.take() else {
            return;
        };
        let RecordHeader::Put { create_revision, version, lease } = header else {
            return;
        };
        self.count += 1;
        if self.found.len() < self.fetch_max {
            let encoded_key = self.group.clone();
            let found = Found { encoded_key, revision, create_revision, version, lease };
            self.found.push(found);
        }
    }
}

fn key_value(r: &dyn KvRead, found: Found, with_values: bool) -> Result<KeyValue, MvccError> {
    let mut value = Vec::new();
    if with_values {
        let index_key = keys::index_key(&found.encoded_key, found.revision);
        let record = r.get(Keyspace::KvIndex, &index_key)?.ok_or_else(|| {
            MvccError::Corrupt(format!("version {:?} vanished during a read", found.revision))
        })?;
        value = keys::decode_record(&record)?.1.to_vec();
    }
    Ok(KeyValue {
        key: keys::decode_user_key(&found.encoded_key)?,
        create_revision: found.create_revision,
        mod_revision: found.revision.main,
        version: found.version,
        value,
        lease: found.lease,
    })
}

/// The newest version of `key` (at any revision, including an overlay's writes) if it is live.
pub(crate) fn latest(r: &dyn KvRead, key: &[u8]) -> Result<Option<KeyValue>, MvccError> {
    live_version(r, key, None)
}

/// The newest version of `key` with `main <= at` (no `at`: any), if it is live. One bounded
/// reverse seek, however long the key's history.
pub(crate) fn live_version(
    r: &dyn KvRead,
    key: &[u8],
    at: Option<i64>,
) -> Result<Option<KeyValue>, MvccError> {
    let encoded = keys::encode_user_key(key);
    let end = match at {
        Some(at) => keys::index_key(&encoded, Revision::new(at.saturating_add(1), 0)),
        None => keys::versions_end(&encoded),
    };
    let mut newest = None;
    let mut visit = |raw: &[u8], record: &[u8]| {
        newest = Some((raw.to_vec(), record.to_vec()));
        false
    };
    r.scan_reverse(Keyspace::KvIndex, &encoded, Some(&end), &mut visit)?;
    let Some((raw, record)) = newest else {
        return Ok(None);
    };
    let (_, revision) = keys::split_index_key(&raw)?;
    match keys::decode_record(&record)? {
        (RecordHeader::Tombstone, _) => Ok(None),
        (RecordHeader::Put { create_revision, version, lease }, value) => Ok(Some(KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: revision.main,
            version,
            value: value.to_vec(),
            lease,
        })),
    }
}

/// etcd's Range, served from `r`. `header_revision` is the current revision.
pub fn range(r: &dyn KvRead, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
    let current = current_revision(r)?;
    let mut response = range_at(r, req, current, current)?;
    response.header_revision = current;
    Ok(response)
}

/// How many keys are live (not deleted) at the current revision: one scan of the index, for
/// start-up and snapshot install; applied events keep the count afterwards
/// ([`live_key_delta`]).
pub fn live_key_count(r: &dyn KvRead) -> Result<i64, MvccError> {
    let every_key = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        count_only: true,
        ..RangeRequest::default()
    };
    Ok(range(r, &every_key)?.count)
}

/// How applied events change the number of live keys: a put that creates a key (its first
/// version) adds one, a delete removes one; other puts change nothing.
pub fn live_key_delta(events: &[Event]) -> i64 {
    events
        .iter()
        .map(|event| match event.kind {
            EventKind::Put if event.kv.version == 1 => 1,
            EventKind::Put => 0,
            EventKind::Delete => -1,
        })
        .sum()
}

/// Range with the revision defaulting to `default_revision`; revisions above
/// `newest_revision` are in the future. Inside a txn the two differ: reads see the txn's own
/// writes, but an explicit revision is checked against the store before the txn, as etcd does.
pub(crate) fn range_at(
    r: &dyn KvRead,
    req: &RangeRequest,
    default_revision: i64,
    newest_revision: i64,
) -> Result<RangeResponse, MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    if req.revision > newest_revision {
        return Err(MvccError::FutureRevision);
    }
    let at = if req.revision > 0 { req.revision } else { default_revision };
    if at < compacted_revision(r)? {
        return Err(MvccError::Compacted);
    }
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // As etcd 3.4: with a sort order or a filter, fetch everything, then filter, sort and
    // truncate; otherwise fetch one past the limit, which is enough to know there are `more`.
    let fetch_max = if req.count_only {
        0
    } else if req.sort_order != SortOrder::None || filtered || req.limit <= 0 {
        usize::MAX
    } else {
        usize::try_from(req.limit).map_or(usize::MAX, |limit| limit.saturating_add(1))
    };
    let with_values = !req.keys_only || req.sort_target == SortTarget::Value;
    let live = live_keys(r, &req.key, &req.range_end, at, fetch_max, with_values)?;
    let mut kvs = live.kvs;
    kvs.retain(|kv| passes_filters(req, kv));
    sort(req, &mut kvs);
    let mut more = false;
    if let Ok(limit) = usize::try_from(req.limit) {
        if limit > 0 && kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
    }
    if req.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    let count = i64::try_from(live.count).expect("key count fits i64");
    Ok(RangeResponse { header_revision: 0, kvs, more, count })
}

fn passes_filters(req: &RangeRequest, kv: &KeyValue) -> bool {
    (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
        && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
        && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
        && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
}

fn sort(req: &RangeRequest, kvs: &mut [KeyValue]) {
    let order = match (req.sort_order, req.sort_target) {
        // Results are already in ascending key order.
        (SortOrder::None, SortTarget::Key) | (SortOrder::Ascend, SortTarget::Key) => return,
        // etcd sorts ascending when only a target other than the key is given.
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    let by_target = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match req.sort_target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    // Stable, so ties stay in key order (etcd leaves their order unspecified).
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| by_target(b, a)),
        _ => kvs.sort_by(by_target),
    }
}
