//! [`LeaseTable`]: the in-memory lease table with injected time: which leases exist (as
//! applied), and on the primary (the leader) when each expires.
//!
//! Followers keep no deadlines ("never expires"), like etcd's non-primary lessor: only the
//! leader decides expiry, and a new leader starts from full TTLs (see [`LeaseTable::promote`]).
//! Remaining TTLs are not replicated on keep-alive (etcd 3.4 without checkpointing).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::LeaseId;

/// Why the table cannot answer for a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// This member is not the primary (leader) and keeps no deadlines.
    #[error("not the primary lessor")]
    NotPrimary,
    /// No such lease, or it has expired and awaits its revoke.
    #[error("requested lease not found")]
    NotFound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    ttl_seconds: i64,
    /// `Some` exactly when the table is primary.
    expiry: Option<Instant>,
}

/// A lease's remaining and granted TTL, as TimeToLive reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remaining {
    pub ttl_seconds: i64,
    pub granted_ttl_seconds: i64,
}

#[derive(Debug, Default)]
pub struct LeaseTable {
    leases: HashMap<LeaseId, Entry>,
    /// (expiry, id) for every lease, when primary: the expiry order.
    deadlines: BTreeSet<(Instant, LeaseId)>,
    primary: bool,
}

fn ttl(seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

impl LeaseTable {
    pub fn new() -> LeaseTable {
        LeaseTable::default()
    }

    pub fn is_primary(&self) -> bool {
        self.primary
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    pub fn contains(&self, id: LeaseId) -> bool {
        self.leases.contains_key(&id)
    }

    /// Every lease id, ascending.
    pub fn ids(&self) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> = self.leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn set_expiry(&mut self, id: LeaseId, expiry: Option<Instant>) {
        let entry = self.leases.get_mut(&id).expect("lease is in the table");
        if let Some(old) = entry.expiry {
            self.deadlines.remove(&(old, id));
        }
        entry.expiry = expiry;
        if let Some(new) = expiry {
            self.deadlines.insert((new, id));
        }
    }

    /// A grant was applied. On the primary the lease runs from now.
    pub fn granted(&mut self, id: LeaseId, ttl_seconds: i64, now: Instant) {
        assert!(id != 0, "lease 0 means no lease");
        let previous = self.leases.insert(id, Entry { ttl_seconds, expiry: None });
        assert!(previous.is_none(), "lease {id:x} granted twice (apply checks duplicates)");
        if self.primary {
            self.set_expiry(id, Some(now + ttl(ttl_seconds)));
        }
    }

    /// A revoke was applied.
    pub fn revoked(&mut self, id: LeaseId) {
        if let Some(entry) = self.leases.remove(&id) {
            if let Some(expiry) = entry.expiry {
                self.deadlines.remove(&(expiry, id));
            }
        }
    }

    /// Replaces the lease set with what storage holds (start-up, snapshot install). On the
    /// primary every lease gets its full TTL again.
    pub fn reset(&mut self, leases: impl IntoIterator<Item = (LeaseId, i64)>, now: Instant) {
        self.leases.clear();
        self.deadlines.clear();
        for (id, ttl_seconds) in leases {
            self.granted(id, ttl_seconds, now);
        }
    }

    /// This member became leader: every lease expires `extend` plus its full TTL from now
    /// (etcd's `Promote`), so no lease expires before its holder could reach the new leader.
    pub fn promote(&mut self, now: Instant, extend: Duration) {
        self.primary = true;
        let leases: Vec<(LeaseId, i64)> =
            self.leases.iter().map(|(id, entry)| (*id, entry.ttl_seconds)).collect();
        for (id, ttl_seconds) in leases {
            self.set_expiry(id, Some(now + extend + ttl(ttl_seconds)));
        }
    }

    /// This member stopped leading: it keeps no deadlines until promoted again.
    pub fn demote(&mut self) {
        self.primary = false;
        self.deadlines.clear();
        for entry in self.leases.values_mut() {
            entry.expiry = None;
        }
    }

    fn live_expiry(&self, id: LeaseId) -> Result<(Entry, Instant), TableError> {
        if !self.primary {
            return Err(TableError::NotPrimary);
        }
        let entry = *self.leases.get(&id).ok_or(TableError::NotFound)?;
        let expiry = entry.expiry.expect("the primary keeps a deadline per lease");
        Ok((entry, expiry))
    }

    /// Renews a lease to its full TTL; returns the TTL. An expired lease is not renewed: it is
    /// as good as revoked (etcd answers "not found" once the revoke lands).
    pub fn keep_alive(&mut self, id: LeaseId, now: Instant) -> Result<i64, TableError> {
        let (entry, expiry) = self.live_expiry(id)?;
        if expiry <= now {
            return Err(TableError::NotFound);
        }
        self.set_expiry(id, Some(now + ttl(entry.ttl_seconds)));
        Ok(entry.ttl_seconds)
    }

    /// Whole seconds left (truncated, as etcd) and the granted TTL.
    pub fn remaining(&self, id: LeaseId, now: Instant) -> Result<Remaining, TableError> {
        let (entry, expiry) = self.live_expiry(id)?;
        let left = expiry.saturating_duration_since(now).as_secs();
        Ok(Remaining {
            ttl_seconds: i64::try_from(left).unwrap_or(i64::MAX),
            granted_ttl_seconds: entry.ttl_seconds,
        })
    }

    /// Up to `max` expired leases, earliest first, for the leader to revoke. Each is given
    /// `retry` more before it is handed out again, in case its revoke is lost.
    pub fn expired(&mut self, now: Instant, max: usize, retry: Duration) -> Vec<LeaseId> {
        if !self.primary {
            return Vec::new();
        }
        let due: Vec<LeaseId> = self
            .deadlines
            .iter()
            .take_while(|(expiry, _)| *expiry <= now)
            .take(max)
            .map(|(_, id)| *id)
            .collect();
        for id in &due {
            self.set_expiry(*id, Some(now + retry));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const RETRY: Duration = Duration::from_secs(3);

    fn primary(now: Instant) -> LeaseTable {
        let mut table = LeaseTable::new();
        table.promote(now, Duration::ZERO);
        table
    }

    #[test]
    fn a_granted_lease_expires_after_its_ttl_on_the_primary() {
        let t0 = Instant::now();
        let mut table = primary(t0);
        table.granted(7, 10, t0);
        assert_eq!(
            table.remaining(7, t0),
            Ok(Remaining { ttl_seconds: 10, granted_ttl_seconds: 10 })
        );
        assert_eq!(table.remaining(7, t0 + SECOND / 2).map(|r| r.ttl_seconds), Ok(9));
        assert!(table.expired(t0 + 9 * SECOND, 10, RETRY).is_empty());
        assert_eq!(table.expired(t0 + 10 * SECOND, 10, RETRY), vec![7]);
    }

    #[test]
    fn keep_alive_restarts_the_full_ttl() {
        let t0 = Instant::now();
        let mut table = primary(t0);
        table.granted(1, 5, t0);
        assert_eq!(table.keep_alive(1, t0 + 4 * SECOND), Ok(5));
        assert!(table.expired(t0 + 8 * SECOND, 10, RETRY).is_empty());
        assert_eq!(table.remaining(1, t0 + 8 * SECOND).map(|r| r.ttl_seconds), Ok(1));
        assert_eq!(table.expired(t0 + 9 * SECOND, 10, RETRY), vec![1]);
    }

    #[test]
    fn unknown_and_expired_leases_are_not_found_for_keep_alive() {
        let t0 = Instant::now();
        let mut table = primary(t0);
        assert_eq!(table.keep_alive(3, t0), Err(TableError::NotFound));
        table.granted(3, 2, t0);
        assert_eq!(table.keep_alive(3, t0 + 2 * SECOND), Err(TableError::NotFound));
        assert_eq!(table.remaining(3, t0 + 5 * SECOND).map(|r| r.ttl_seconds), Ok(0));
        table.revoked(3);
        assert_eq!(table.remaining(3, t0), Err(TableError::NotFound));
        assert!(!table.contains(3));
    }

    #[test]
    fn expiry_comes_in_deadline_order_and_is_bounded_per_call() {
        let t0 = Instant::now();
        let mut table = primary(t0);
        for (id, ttl_seconds) in [(10, 5), (11, 2), (12, 4), (13, 3), (14, 60)] {
            table.granted(id, ttl_seconds, t0);
        }
        let now = t0 + 10 * SECOND;
        assert_eq!(table.expired(now, 2, RETRY), vec![11, 13]);
        assert_eq!(table.expired(now, 10, RETRY), vec![12, 10]);
        // Handed-out leases come back only after the retry interval, if still not revoked.
        assert!(table.expired(now + SECOND, 10, RETRY).is_empty());
        table.revoked(11);
        // All were handed out at once, so they share a retry deadline (ties go by id).
        assert_eq!(table.expired(now + RETRY, 10, RETRY), vec![10, 12, 13]);
    }

    #[test]
    fn followers_keep_no_deadlines_and_never_expire_anything() {
        let t0 = Instant::now();
        let mut table = LeaseTable::new();
        table.granted(1, 1, t0);
        assert!(table.expired(t0 + 100 * SECOND, 10, RETRY).is_empty());
        assert_eq!(table.keep_alive(1, t0), Err(TableError::NotPrimary));
        assert_eq!(table.remaining(1, t0), Err(TableError::NotPrimary));
        assert_eq!(table.ids(), vec![1]);
    }

    #[test]
    fn promote_extends_every_lease_by_its_ttl_plus_the_extension() {
        let t0 = Instant::now();
        let mut table = primary(t0);
        table.granted(1, 10, t0);
        table.granted(2, 3, t0);
        // Leadership is lost at 9 s and regained at 20 s: both would have expired by now.
        table.demote();
        let t1 = t0 + 20 * SECOND;
        table.promote(t1, 2 * SECOND);
        assert_eq!(table.remaining(1, t1).map(|r| r.ttl_seconds), Ok(12));
        assert_eq!(table.remaining(2, t1).map(|r| r.ttl_seconds), Ok(5));
        assert!(table.expired(t1 + 4 * SECOND, 10, RETRY).is_empty());
        assert_eq!(table.expired(t1 + 5 * SECOND, 10, RETRY), vec![2]);
        table.revoked(2);
        assert_eq!(table.expired(t1 + 12 * SECOND, 10, RETRY), vec![1]);
    }

    #[test]
    fn demote_forgets_deadlines_and_reset_reloads_the_set() {
        let t0 = Instant::now();
        let mut table = primary(t0);
        table.granted(1, 1, t0);
        table.demote();
        assert!(!table.is_primary());
        assert!(table.expired(t0 + 10 * SECOND, 10, RETRY).is_empty());
        table.reset([(5, 30), (4, 20)], t0);
        assert_eq!(table.ids(), vec![4, 5]);
        assert_eq!(table.len(), 2);
        table.promote(t0, Duration::ZERO);
        assert_eq!(table.expired(t0 + 25 * SECOND, 10, RETRY), vec![4]);
    }

    #[test]
    fn a_primary_reset_gives_full_ttls() {
        let t0 = Instant::now();
        let mut table = primary(t0);
        table.reset([(9, 7)], t0 + SECOND);
        assert_eq!(table.remaining(9, t0 + SECOND).map(|r| r.ttl_seconds), Ok(7));
        assert!(!table.is_empty());
    }
}
