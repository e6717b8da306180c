//! Unit tests of the scheduling queue: ordering, back-off growth, the unschedulable queue and
//! what moves pods out of it, in-flight bookkeeping and the bound on stale entries.

use super::*;

fn timing() -> QueueTiming {
    QueueTiming {
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(10),
        unschedulable_max: Duration::from_secs(300),
    }
}

fn queue() -> SchedulingQueue<&'static str> {
    SchedulingQueue::new(timing())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn pop_key(q: &mut SchedulingQueue<&'static str>, now: Instant) -> Option<String> {
    q.pop(now).map(|p| p.key)
}

fn lengths(active: usize, backoff: usize, unschedulable: usize, in_flight: usize) -> QueueLengths {
    QueueLengths { active, backoff, unschedulable, in_flight }
}

#[test]
fn backoff_doubles_from_one_second_to_ten() {
    let t = timing();
    let got: Vec<u64> = (1..=7).map(|a| t.backoff(a).as_secs()).collect();
    assert_eq!(got, [1, 2, 4, 8, 10, 10, 10]);
    assert_eq!(t.backoff(0), secs(1));
    assert_eq!(t.backoff(u32::MAX), secs(10));
}

#[test]
fn active_pods_come_out_by_priority_then_arrival() {
    let mut q = queue();
    let now = Instant::now();
    q.add("ns/low", "low", 0);
    q.add("ns/high", "high", 100);
    q.add("ns/low2", "low2", 0);
    q.add("ns/mid", "mid", 10);
    let order: Vec<String> = std::iter::from_fn(|| pop_key(&mut q, now)).collect();
    assert_eq!(order, ["ns/high", "ns/mid", "ns/low", "ns/low2"]);
    assert_eq!(q.lengths(), lengths(0, 0, 0, 4));
}

#[test]
fn updates_replace_the_item_and_a_priority_change_reorders() {
    let mut q = queue();
    let now = Instant::now();
    q.add("ns/a", "a1", 0);
    q.add("ns/b", "b", 5);
    q.add("ns/a", "a2", 10);
    assert_eq!(q.lengths(), lengths(2, 0, 0, 0), "an update is not a second pod");
    let first = q.pop(now).expect("a");
    assert_eq!((first.key.as_str(), first.item, first.attempts), ("ns/a", "a2", 1));
    assert_eq!(pop_key(&mut q, now).as_deref(), Some("ns/b"));
    assert_eq!(q.pop(now), None, "the stale entry of a is skipped");
}

#[test]
fn an_error_backs_off_for_growing_durations() {
    let mut q = queue();
    let t0 = Instant::now();
    q.add("ns/p", "p", 0);
    let mut now = t0;
    for expected in [1, 2, 4, 8, 10, 10] {
        assert!(q.pop(now).is_some());
        q.backoff("ns/p", now);
        assert_eq!(q.lengths(), lengths(0, 1, 0, 0));
        assert_eq!(q.next_deadline(), Some(now + secs(expected)));
        assert_eq!(q.pop(now + secs(expected) - Duration::from_millis(1)), None);
        now += secs(expected);
    }
    let last = q.pop(now).expect("due");
    assert_eq!(last.attempts, 7);
}

#[test]
fn success_removes_the_pod() {
    let mut q = queue();
    let now = Instant::now();
    q.add("ns/p", "p", 0);
    q.pop(now).expect("p");
    q.done("ns/p");
    assert_eq!(q.lengths(), QueueLengths::default());
    assert_eq!(q.get("ns/p"), None);
}

#[test]
fn unschedulable_pods_wait_for_a_cluster_change() {
    let mut q = queue();
    let now = Instant::now();
    q.add("ns/p", "p", 0);
    let popped = q.pop(now).expect("p");
    q.unschedulable("ns/p", popped.cycle, now);
    assert_eq!(q.lengths(), lengths(0, 0, 1, 0));
    assert_eq!(q.pop(now + secs(60)), None, "not retried on its own before the timeout");
    // A node is added long after the back-off: straight to active.
    q.move_all(now + secs(60));
    assert_eq!(q.lengths(), lengths(1, 0, 0, 0));
    assert_eq!(pop_key(&mut q, now + secs(60)).as_deref(), Some("ns/p"));
}

#[test]
fn a_change_during_back_off_goes_through_backoff() {
    let mut q = queue();
    let now = Instant::now();
    q.add("ns/p", "p", 0);
    let popped = q.pop(now).expect("p");
    q.unschedulable("ns/p", popped.cycle, now);
    q.move_all(now + Duration::from_millis(200));
    assert_eq!(q.lengths(), lengths(0, 1, 0, 0));
    assert_eq!(q.pop(now + Duration::from_millis(500)), None);
    assert_eq!(pop_key(&mut q, now + secs(1)).as_deref(), Some("ns/p"));
}

#[test]
fn a_change_while_the_pod_was_being_tried_sends_it_to_backoff_not_unschedulable() {
    let mut q = queue();
    let now = Instant::now();
    q.add("ns/p", "p", 0);
    q.add("ns/q", "q", 0);
    let p = q.pop(now).expect("p");
    // A node appears while p is being scheduled against the old view.
    q.move_all(now);
    q.unschedulable("ns/p", p.cycle, now);
    assert_eq!(q.lengths(), lengths(1, 1, 0, 0));
    // q's attempt starts after the change: it may wait as unschedulable.
    let q_popped = q.pop(now).expect("q");
    q.unschedulable("ns/q", q_popped.cycle, now);
    assert_eq!(q.lengths(), lengths(0, 1, 1, 0));
}

#[test]
fn unschedulable_pods_are_flushed_after_the_maximum_wait() {
    let mut q = queue();
    let now = Instant::now();
    q.add("ns/p", "p", 0);
    let popped = q.pop(now).expect("p");
    q.unschedulable("ns/p", popped.cycle, now);
    assert_eq!(q.next_deadline(), Some(now + secs(300)));
    q.flush(now + secs(299));
    assert_eq!(q.lengths(), lengths(0, 0, 1, 0));
    assert_eq!(pop_key(&mut q, now + secs(300)).as_deref(), Some("ns/p"));
}

#[test]
fn activate_moves_only_that_unschedulable_pod() {
    let mut q = queue();
    let now = Instant::now();
    for key in ["ns/a", "ns/b"] {
        q.add(key, "x", 0);
        let popped = q.pop(now).expect("popped");
        q.unschedulable(key, popped.cycle, now);
    }
    q.activate("ns/a", now + secs(30));
    assert_eq!(q.lengths(), lengths(1, 0, 1, 0));
    // Activating a pod that is not unschedulable does nothing.
    q.activate("ns/a", now + secs(30));
    assert_eq!(q.lengths(), lengths(1, 0, 1, 0));
    assert_eq!(pop_key(&mut q, now + secs(30)).as_deref(), Some("ns/a"));
    assert_eq!(q.pop(now + secs(30)), None);
}

#[test]
fn deleted_pods_leave_every_queue() {
    let mut q = queue();
    let now = Instant::now();
    q.add("ns/active", "a", 0);
    q.add("ns/backoff", "b", 3);
    q.add("ns/unschedulable", "u", 2);
    q.add("ns/flight", "f", 1);
    q.add("ns/stay", "s", -1);
    let b = q.pop(now).expect("b");
    q.backoff(&b.key, now);
    let u = q.pop(now).expect("u");
    q.unschedulable(&u.key, u.cycle, now);
    assert_eq!(q.pop(now).expect("f").key, "ns/flight");
    assert_eq!(q.lengths(), lengths(2, 1, 1, 1));
    for key in ["ns/active", "ns/backoff", "ns/unschedulable", "ns/flight"] {
        q.delete(key);
    }
    assert_eq!(q.lengths(), lengths(1, 0, 0, 0));
    assert_eq!(pop_key(&mut q, now + secs(400)).as_deref(), Some("ns/stay"));
    assert_eq!(q.pop(now + secs(400)), None);
}

#[test]
fn outcomes_for_pods_no_longer_in_flight_are_ignored() {
    let mut q = queue();
    let now = Instant::now();
    q.add("ns/p", "old", 0);
    let popped = q.pop(now).expect("p");
    // Deleted and created again under the same name while the old one was being bound.
    q.delete("ns/p");
    q.add("ns/p", "new", 0);
    q.done("ns/p");
    q.backoff("ns/p", now);
    q.unschedulable("ns/p", popped.cycle, now);
    assert_eq!(q.lengths(), lengths(1, 0, 0, 0));
    assert_eq!(q.pop(now).expect("new").item, "new");
}

#[test]
fn an_update_in_flight_is_used_by_the_retry() {
    let mut q = queue();
    let now = Instant::now();
    q.add("ns/p", "v1", 0);
    q.pop(now).expect("p");
    q.add("ns/p", "v2", 0);
    assert_eq!(q.lengths(), lengths(0, 0, 0, 1));
    q.backoff("ns/p", now);
    assert_eq!(q.pop(now + secs(1)).expect("retry").item, "v2");
}

#[test]
fn stale_entries_stay_bounded() {
    let mut q = queue();
    let now = Instant::now();
    for round in 0..1000 {
        q.add("ns/p", "p", round % 7);
        q.delete("ns/p");
        q.add("ns/q", "q", round % 5);
    }
    assert!(q.entries_len() <= 2 * 2 + STALE_SLACK + 1, "{}", q.entries_len());
    let keys: Vec<String> = std::iter::from_fn(|| pop_key(&mut q, now)).collect();
    assert_eq!(keys, ["ns/q"]);
}
