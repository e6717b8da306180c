//! Byte layouts of the MVCC keyspaces: an order-preserving user-key encoding, revisions, records.
//!
//! `KvIndex`: `escape(user key) 0x00 0x01 | main (8 bytes BE) | sub (8 bytes BE)` -> record.
//! Escaping 0x00 as `0x00 0xFF` and terminating with `0x00 0x01` keeps byte order (a key sorts
//! before its extensions) and makes the encoding prefix-free, so every version of a key is one
//! contiguous run sorted by revision, and a user range `[a, b)` is the encoded range
//! `[enc(a), enc(b))`. A record is `kind u8` then, for a put, `create_revision`, `version`,
//! `lease` (8 bytes BE each) and the value; a tombstone is the kind byte alone.
//!
//! `KvRevision`: `main | sub` -> `kind u8 | user key`, the write log watches catch up from.
//!
//! `KvMeta`: `mvcc/current_revision` and `mvcc/compacted_revision`, 8 bytes BE each.

use super::MvccError;

pub(crate) const META_CURRENT_REVISION: &[u8] = b"mvcc/current_revision";
pub(crate) const META_COMPACTED_REVISION: &[u8] = b"mvcc/compacted_revision";

const REVISION_BYTES: usize = 16;
const TERMINATOR: [u8; 2] = [0x00, 0x01];
/// The terminator's successor: `enc(key)` with it in place of the terminator bounds every
/// version of `key` from above (escaping never produces `0x00 0x02`).
const TERMINATOR_END: [u8; 2] = [0x00, 0x02];
const ESCAPED_ZERO: [u8; 2] = [0x00, 0xFF];

/// Zero is reserved so a zeroed or truncated value is never mistaken for a record.
const KIND_PUT: u8 = 1;
const KIND_TOMBSTONE: u8 = 2;
const PUT_HEADER_BYTES: usize = 1 + 3 * 8;

/// A point in the store's history: `main` is the write request, `sub` orders writes inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// Big-endian so byte order is revision order; negative revisions never exist.
    pub fn to_bytes(self) -> [u8; REVISION_BYTES] {
        assert!(self.main >= 0 && self.sub >= 0, "negative revision {self:?}");
        let mut bytes = [0; REVISION_BYTES];
        bytes[..8].copy_from_slice(&self.main.to_be_bytes());
        bytes[8..].copy_from_slice(&self.sub.to_be_bytes());
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Revision, MvccError> {
        let main = read_i64(bytes, 0, "revision")?;
        let sub = read_i64(bytes, 8, "revision")?;
        if bytes.len() != REVISION_BYTES || main < 0 || sub < 0 {
            return Err(corrupt("revision", bytes));
        }
        Ok(Revision { main, sub })
    }
}

pub(crate) fn corrupt(what: &str, bytes: &[u8]) -> MvccError {
    const SHOWN_MAX: usize = 64;
    let shown = &bytes[..bytes.len().min(SHOWN_MAX)];
    MvccError::Corrupt(format!("undecodable {what} ({} bytes): {shown:02x?}", bytes.len()))
}

fn read_i64(bytes: &[u8], at: usize, what: &str) -> Result<i64, MvccError> {
    let field = bytes.get(at..at + 8).ok_or_else(|| corrupt(what, bytes))?;
    Ok(i64::from_be_bytes(field.try_into().expect("slice of 8 bytes")))
}

pub(crate) fn encode_i64(value: i64) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

pub(crate) fn decode_i64(bytes: &[u8], what: &str) -> Result<i64, MvccError> {
    if bytes.len() != 8 {
        return Err(corrupt(what, bytes));
    }
    read_i64(bytes, 0, what)
}

/// The escaped, terminated form of a user key: the prefix of all its `KvIndex` entries.
pub(crate) fn encode_user_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 + REVISION_BYTES);
    for &byte in key {
        if byte == 0 {
            out.extend_from_slice(&ESCAPED_ZERO);
        } else {
            out.push(byte);
        }
    }
    out.extend_from_slice(&TERMINATOR);
    out
}

pub(crate) fn decode_user_key(encoded: &[u8]) -> Result<Vec<u8>, MvccError> {
    let body = encoded.strip_suffix(&TERMINATOR).ok_or_else(|| corrupt("user key", encoded))?;
    let mut out = Vec::with_capacity(body.len());
    let mut bytes = body.iter();
    while let Some(&byte) = bytes.next() {
        if byte == 0 && bytes.next() != Some(&0xFF) {
            return Err(corrupt("user key", encoded));
        }
        out.push(byte);
    }
    Ok(out)
}

/// The exclusive upper bound of every `KvIndex` entry of the key encoded as `encoded`.
pub(crate) fn versions_end(encoded: &[u8]) -> Vec<u8> {
    let mut end = encoded.to_vec();
    let body = end.len() - TERMINATOR.len();
    end[body..].copy_from_slice(&TERMINATOR_END);
    end
}

pub(crate) fn index_key(encoded: &[u8], revision: Revision) -> Vec<u8> {
    let mut key = Vec::with_capacity(encoded.len() + REVISION_BYTES);
    key.extend_from_slice(encoded);
    key.extend_from_slice(&revision.to_bytes());
    key
}

/// Splits a `KvIndex` key into the encoded user key and the revision.
pub(crate) fn split_index_key(raw: &[u8]) -> Result<(&[u8], Revision), MvccError> {
    if raw.len() < TERMINATOR.len() + REVISION_BYTES {
        return Err(corrupt("index key", raw));
    }
    let (encoded, revision) = raw.split_at(raw.len() - REVISION_BYTES);
    if !encoded.ends_with(&TERMINATOR) {
        return Err(corrupt("index key", raw));
    }
    Ok((encoded, Revision::from_bytes(revision)?))
}

/// `KvIndex` bounds of a user range with etcd's conventions: `range_end` empty is the single
/// key, `[0]` is every key from `key` on, anything else is `[key, range_end)`.
pub(crate) fn index_bounds(key: &[u8], range_end: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let start = encode_user_key(key);
    let end = match range_end {
        [] => Some(versions_end(&start)),
        [0] => None,
        _ => Some(encode_user_key(range_end)),
    };
    (start, end)
}

/// The fixed-size part of a `KvIndex` record, decodable without touching the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordHeader {
    Put { create_revision: i64, version: i64, lease: i64 },
    Tombstone,
}

pub(crate) fn encode_put(create_revision: i64, version: i64, lease: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PUT_HEADER_BYTES + value.len());
    out.push(KIND_PUT);
    out.extend_from_slice(&create_revision.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&lease.to_be_bytes());
    out.extend_from_slice(value);
    out
}

pub(crate) fn encode_tombstone() -> Vec<u8> {
    vec![KIND_TOMBSTONE]
}

/// Decodes a `KvIndex` record into its header and value (empty for a tombstone).
pub(crate) fn decode_record(bytes: &[u8]) -> Result<(RecordHeader, &[u8]), MvccError> {
    match bytes.first() {
        Some(&KIND_TOMBSTONE) if bytes.len() == 1 => Ok((RecordHeader::Tombstone, &[])),
        Some(&KIND_PUT) if bytes.len() >= PUT_HEADER_BYTES => {
            let create_revision = read_i64(bytes, 1, "record")?;
            let version = read_i64(bytes, 9, "record")?;
            let lease = read_i64(bytes, 17, "record")?;
            if create_revision <= 0 || version <= 0 {
                return Err(corrupt("record", bytes));
            }
            let header = RecordHeader::Put { create_revision, version, lease };
            Ok((header, &bytes[PUT_HEADER_BYTES..]))
        }
        _ => Err(corrupt("record", bytes)),
    }
}

pub(crate) fn encode_revision_entry(tombstone: bool, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(if tombstone { KIND_TOMBSTONE } else { KIND_PUT });
    out.extend_from_slice(key);
    out
}

/// Decodes a `KvRevision` value into (is tombstone, user key).
pub(crate) fn decode_revision_entry(bytes: &[u8]) -> Result<(bool, &[u8]), MvccError> {
    match bytes.split_first() {
        Some((&KIND_PUT, key)) if !key.is_empty() => Ok((false, key)),
        Some((&KIND_TOMBSTONE, key)) if !key.is_empty() => Ok((true, key)),
        _ => Err(corrupt("revision entry", bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_key_encoding_round_trips_and_keeps_order() {
        let ordered: [&[u8]; 9] =
            [b"", &[0], &[0, 0], &[0, 1], &[0, 0xFF], &[1], b"a", &[0xFF], &[0xFF, 0]];
        let encoded: Vec<Vec<u8>> = ordered.iter().map(|k| encode_user_key(k)).collect();
        for (key, enc) in ordered.iter().zip(&encoded) {
            assert_eq!(decode_user_key(enc).unwrap(), key.to_vec());
            assert!(enc < &versions_end(enc));
        }
        for pair in encoded.windows(2) {
            assert!(pair[0] < pair[1], "{:?} !< {:?}", pair[0], pair[1]);
            // No version of the smaller key reaches the larger key.
            let last = index_key(&pair[0], Revision::new(i64::MAX, i64::MAX));
            assert!(last < versions_end(&pair[0]) && versions_end(&pair[0]) <= pair[1]);
        }
    }

    #[test]
    fn index_keys_split_back() {
        let enc = encode_user_key(&[0, 7, 0]);
        let raw = index_key(&enc, Revision::new(5, 2));
        assert_eq!(split_index_key(&raw).unwrap(), (enc.as_slice(), Revision::new(5, 2)));
        assert!(index_key(&enc, Revision::new(5, 2)) < index_key(&enc, Revision::new(6, 0)));
        assert!(index_key(&enc, Revision::new(5, 2)) < index_key(&enc, Revision::new(5, 3)));
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        assert!(decode_user_key(&[0, 5, 0, 1]).is_err());
        assert!(decode_user_key(b"abc").is_err());
        assert!(split_index_key(b"short").is_err());
        assert!(Revision::from_bytes(&[0xFF; 16]).is_err());
        assert!(decode_record(&[]).is_err());
        assert!(decode_record(&[KIND_PUT, 0]).is_err());
        assert!(decode_record(&[KIND_TOMBSTONE, 0]).is_err());
        assert!(decode_record(&[0; 40]).is_err());
        assert!(decode_revision_entry(&[KIND_PUT]).is_err());
        assert!(decode_i64(&[1, 2], "meta").is_err());
    }

    #[test]
    fn records_round_trip() {
        let put = encode_put(3, 2, 9, b"v\0");
        let header = RecordHeader::Put { create_revision: 3, version: 2, lease: 9 };
        assert_eq!(decode_record(&put).unwrap(), (header, &b"v\0"[..]));
        assert_eq!(decode_record(&encode_tombstone()).unwrap(), (RecordHeader::Tombstone, &[][..]));
        let entry = encode_revision_entry(true, b"k");
        assert_eq!(decode_revision_entry(&entry).unwrap(), (true, &b"k"[..]));
        assert_eq!(decode_i64(&encode_i64(-4), "meta").unwrap(), -4);
    }
}
