//! ReadIndex batching: linearizable reads that arrive together share one leadership check.
//!
//! A linearizable read needs a read index obtained *after* the read arrived: on the leader a
//! quorum round confirming it still leads, on a follower a call to the leader. Done per read,
//! that is one quorum round (or one peer call) per request. A [`Coalescer`] runs at most one
//! round at a time: reads that arrive while one is in flight wait for the next, which starts
//! when the current one ends and serves all of them. Every read is served by a round that
//! began after it arrived, which is what linearizability asks; under load one round serves
//! many reads, as etcd's `linearizableReadLoop` does.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::error::StoreError;

type Waiter = oneshot::Sender<Result<u64, StoreError>>;

#[derive(Default)]
struct State {
    /// A round runner task exists.
    running: bool,
    /// Reads waiting for the next round.
    waiting: Vec<Waiter>,
}

/// Shares read-index rounds between concurrent reads (see the module docs).
#[derive(Default)]
pub struct Coalescer {
    state: Mutex<State>,
}

impl Coalescer {
    /// The read index of a round that starts after this call; `round` obtains one. Rounds
    /// run on a task of their own, so a read that is dropped while waiting stalls no one.
    /// `on_round` is told how many reads each round served.
    pub async fn read_index<F, Fut>(
        self: &Arc<Self>,
        round: F,
        on_round: impl Fn(usize) + Send + 'static,
    ) -> Result<u64, StoreError>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, StoreError>> + Send,
    {
        let (sender, receiver) = oneshot::channel();
        let start = {
            let mut state = self.state.lock().expect("read index state");
            state.waiting.push(sender);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            let coalescer = self.clone();
            tokio::spawn(async move { coalescer.run(round, on_round).await });
        }
        receiver.await.map_err(|_| StoreError::Stopped)?
    }

    async fn run<F, Fut>(&self, round: F, on_round: impl Fn(usize))
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<u64, StoreError>>,
    {
        loop {
            let batch = {
                let mut state = self.state.lock().expect("read index state");
                if state.waiting.is_empty() {
                    state.running = false;
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            let result = round().await;
            on_round(batch.len());
            for waiter in batch {
                let _ = waiter.send(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_reads_share_rounds_that_start_after_they_arrive() {
        let coalescer = Arc::new(Coalescer::default());
        // The "commit index" moves on all the time; a round reports it as it starts.
        let commit = Arc::new(AtomicU64::new(0));
        let rounds = Arc::new(AtomicUsize::new(0));
        let round = {
            let (commit, rounds) = (commit.clone(), rounds.clone());
            move || {
                let (commit, rounds) = (commit.clone(), rounds.clone());
                async move {
                    rounds.fetch_add(1, Ordering::SeqCst);
                    let index = commit.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(index)
                }
            }
        };
        let mut reads = Vec::new();
        for _ in 0..100 {
            commit.fetch_add(1, Ordering::SeqCst);
            let arrived_at = commit.load(Ordering::SeqCst);
            let (coalescer, round) = (coalescer.clone(), round.clone());
            reads.push(tokio::spawn(async move {
                let index = coalescer.read_index(round, |_| {}).await.unwrap();
                (arrived_at, index)
            }));
        }
        for read in reads {
            let (arrived_at, index) = read.await.unwrap();
            assert!(index >= arrived_at, "a round that began before the read: {index}");
        }
        let rounds = rounds.load(Ordering::SeqCst);
        assert!((1..=3).contains(&rounds), "100 concurrent reads took {rounds} rounds");
        // Idle again: the next read starts a round of its own.
        let index = coalescer.read_index(round, |_| {}).await.unwrap();
        assert_eq!(index, 100);
    }

    #[tokio::test]
    async fn a_failed_round_fails_its_reads_and_a_dropped_read_stalls_nothing() {
        let coalescer = Arc::new(Coalescer::default());
        let failing = || async { Err(StoreError::NotLeader) };
        assert_eq!(coalescer.read_index(failing, |_| {}).await, Err(StoreError::NotLeader));
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(7)
        };
        let dropped =
            tokio::time::timeout(Duration::from_millis(5), coalescer.read_index(slow, |_| {}));
        assert!(dropped.await.is_err());
        assert_eq!(coalescer.read_index(slow, |_| {}).await, Ok(7));
    }
}
