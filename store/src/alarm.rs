//! Alarms, as etcd keeps them: a member raises NOSPACE when its storage passes the backend
//! quota; the alarm is replicated through Raft, so every member refuses writes that need space
//! (puts, txns that write, lease grants) until an operator frees space and disarms it.
//!
//! The set lives in the state machine's meta keyspace (so it survives restarts and travels in
//! snapshots) and, for the apply loop and the serving side, in memory ([`SharedAlarms`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::engine::{EngineError, Keyspace, KvRead};
use crate::mvcc::{Overlay, RequestOp, TxnRequest, WriteRequest};

/// etcd's alarm types that a member can raise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlarmKind {
    /// The backend passed its quota.
    NoSpace,
    /// The consistency check found this member's data differs.
    Corrupt,
}

impl AlarmKind {
    /// From etcd's `AlarmType` (0 is NONE, meaning "any").
    pub fn from_proto(value: i32) -> Option<AlarmKind> {
        match value {
            1 => Some(AlarmKind::NoSpace),
            2 => Some(AlarmKind::Corrupt),
            _ => None,
        }
    }

    pub fn to_proto(self) -> i32 {
        match self {
            AlarmKind::NoSpace => 1,
            AlarmKind::Corrupt => 2,
        }
    }

    /// The name etcd prints (`NOSPACE`, `CORRUPT`).
    pub fn name(self) -> &'static str {
        match self {
            AlarmKind::NoSpace => "NOSPACE",
            AlarmKind::Corrupt => "CORRUPT",
        }
    }

    fn tag(self) -> u8 {
        self.to_proto() as u8
    }
}

/// One raised alarm: which member, which kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlarmMember {
    pub member_id: u64,
    pub alarm: AlarmKind,
}

impl std::fmt::Display for AlarmMember {
    /// etcd's rendering of an `AlarmMember` in `endpoint status` errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "memberID:{} alarm:{} ", self.member_id, self.alarm.name())
    }
}

/// Raising or clearing an alarm, as a Raft entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmProposal {
    Activate(AlarmMember),
    Deactivate(AlarmMember),
}

/// The applied alarm set, shared by the apply loop and the serving side.
pub type SharedAlarms = Arc<Mutex<BTreeSet<AlarmMember>>>;

const ALARM_PREFIX: &[u8] = b"alarm/";

fn alarm_key(alarm: &AlarmMember) -> Vec<u8> {
    let mut key = ALARM_PREFIX.to_vec();
    key.extend_from_slice(&alarm.member_id.to_be_bytes());
    key.push(alarm.alarm.tag());
    key
}

fn decode_key(key: &[u8]) -> Option<AlarmMember> {
    let rest = key.strip_prefix(ALARM_PREFIX)?;
    let (id, tag) = rest.split_at_checked(8)?;
    let member_id = u64::from_be_bytes(id.try_into().ok()?);
    match tag {
        [tag] => Some(AlarmMember { member_id, alarm: AlarmKind::from_proto(i32::from(*tag))? }),
        _ => None,
    }
}

/// Reads the stored alarm set (at start, and after a snapshot is installed).
pub(crate) fn load(view: &dyn KvRead) -> Result<BTreeSet<AlarmMember>, EngineError> {
    let mut end = ALARM_PREFIX.to_vec();
    *end.last_mut().expect("prefix is not empty") += 1;
    let mut alarms = BTreeSet::new();
    let mut undecodable = None;
    view.scan(Keyspace::KvMeta, ALARM_PREFIX, Some(&end), &mut |key, _| {
        match decode_key(key) {
            Some(alarm) => {
                alarms.insert(alarm);
            }
            None => undecodable = Some(key.to_vec()),
        }
        true
    })?;
    match undecodable {
        Some(key) => Err(EngineError::Backend(format!("undecodable alarm key {key:?}"))),
        None => Ok(alarms),
    }
}

/// Applies one proposal to the batch's working set and the overlay. Returns the alarm as
/// etcd's apply answers it: activating answers the alarm (also when it was already raised);
/// deactivating answers it only if it was raised.
pub(crate) fn apply(
    overlay: &mut Overlay<'_>,
    alarms: &mut BTreeSet<AlarmMember>,
    proposal: &AlarmProposal,
) -> Option<AlarmMember> {
    match *proposal {
        AlarmProposal::Activate(alarm) => {
            if alarms.insert(alarm) {
                overlay.put(Keyspace::KvMeta, alarm_key(&alarm), Vec::new());
            }
            Some(alarm)
        }
        AlarmProposal::Deactivate(alarm) => {
            if !alarms.remove(&alarm) {
                return None;
            }
            overlay.delete(Keyspace::KvMeta, alarm_key(&alarm));
            Some(alarm)
        }
    }
}

/// Whether a raised NOSPACE alarm refuses this write: puts, and txns that may write (etcd's
/// capped applier refuses every txn that is not read-only, whichever branch runs).
pub fn needs_space(request: &WriteRequest) -> bool {
    match request {
        WriteRequest::Put(_) => true,
        WriteRequest::Txn(txn) => !txn_is_read_only(txn),
        WriteRequest::DeleteRange(_) | WriteRequest::Compaction(_) => false,
    }
}

/// True if no branch of the txn (nested txns included) writes.
pub fn txn_is_read_only(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).all(|op| match op {
        RequestOp::Range(_) => true,
        RequestOp::Txn(nested) => txn_is_read_only(nested),
        RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
    })
}

/// Whether any member has raised NOSPACE.
pub fn has_no_space(alarms: &BTreeSet<AlarmMember>) -> bool {
    alarms.iter().any(|a| a.alarm == AlarmKind::NoSpace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{KvEngine, MemoryEngine};
    use crate::mvcc::{PutRequest, RangeRequest};

    fn nospace(member_id: u64) -> AlarmMember {
        AlarmMember { member_id, alarm: AlarmKind::NoSpace }
    }

    #[test]
    fn activation_is_stored_and_reloaded_and_deactivation_removes_it() {
        let engine = MemoryEngine::default();
        let mut alarms = BTreeSet::new();
        let mut overlay = Overlay::new(&engine);
        assert_eq!(
            apply(&mut overlay, &mut alarms, &AlarmProposal::Activate(nospace(7))),
            Some(nospace(7))
        );
        // Raising it again answers the alarm and changes nothing.
        assert_eq!(
            apply(&mut overlay, &mut alarms, &AlarmProposal::Activate(nospace(7))),
            Some(nospace(7))
        );
        let corrupt = AlarmMember { member_id: u64::MAX, alarm: AlarmKind::Corrupt };
        apply(&mut overlay, &mut alarms, &AlarmProposal::Activate(corrupt));
        engine.write(overlay.into_batch(), crate::engine::Durability::Buffered).unwrap();
        assert_eq!(load(&engine).unwrap(), BTreeSet::from([nospace(7), corrupt]));
        assert!(has_no_space(&alarms));

        let mut overlay = Overlay::new(&engine);
        let deactivate = AlarmProposal::Deactivate(nospace(7));
        assert_eq!(apply(&mut overlay, &mut alarms, &deactivate), Some(nospace(7)));
        assert_eq!(apply(&mut overlay, &mut alarms, &deactivate), None, "already cleared");
        engine.write(overlay.into_batch(), crate::engine::Durability::Buffered).unwrap();
        assert_eq!(load(&engine).unwrap(), BTreeSet::from([corrupt]));
        assert!(!has_no_space(&alarms));
    }

    #[test]
    fn only_writes_that_add_data_need_space() {
        let put = PutRequest { key: b"k".to_vec(), ..Default::default() };
        let range = RangeRequest { key: b"k".to_vec(), ..Default::default() };
        assert!(needs_space(&WriteRequest::Put(put.clone())));
        let read_only = TxnRequest {
            success: vec![RequestOp::Range(range.clone())],
            failure: vec![RequestOp::Txn(TxnRequest {
                success: vec![RequestOp::Range(range.clone())],
                ..Default::default()
            })],
            ..Default::default()
        };
        assert!(!needs_space(&WriteRequest::Txn(read_only)));
        // A put in a nested failure branch is enough, as in etcd.
        let nested_put = TxnRequest {
            success: vec![RequestOp::Range(range)],
            failure: vec![RequestOp::Txn(TxnRequest {
                success: vec![RequestOp::Put(put)],
                ..Default::default()
            })],
            ..Default::default()
        };
        assert!(needs_space(&WriteRequest::Txn(nested_put)));
    }

    #[test]
    fn display_matches_etcd_text_form() {
        assert_eq!(nospace(42).to_string(), "memberID:42 alarm:NOSPACE ");
    }
}
