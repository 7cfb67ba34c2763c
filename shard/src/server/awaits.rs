//! The deadlines of creates that wait for their instance's result (`await_result`), and of
//! the answers to user task transitions held for their task listeners (the same machinery,
//! a second sweeper: a timer per held transition cost about 1.5% of a shard's time in the
//! `task_listeners` scenario).
//!
//! Each awaited create used to race its result against a timer of its own and a wait on the
//! server's shutdown: a timer inserted into and removed from glommio's reactor and a waker
//! in the shutdown list, per request (about 4% of a shard's time in `one_task` load, see
//! bench/RESULTS.md). Now one task per shard server keeps the deadlines and gives up the
//! waits whose time is over, and every wait when the server shuts down
//! ([`Shard::give_up_result`](crate::shard::Shard::give_up_result) puts `None` in the
//! connection's result queue).
//!
//! Deadlines go into buckets of [`AWAIT_TICK_MS`] by the tick they fall in, rounded up: a
//! wait is given up at most one tick after its time (never before). A bucket is a vector of
//! instance keys; an instance that completed stays in its bucket until the bucket is due
//! (then giving it up does nothing), and when the buckets hold more than twice the waits
//! still open plus [`AWAIT_COMPACT_MIN`], the finished ones are dropped: memory stays
//! proportional to the open waits, at amortized constant cost per create.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringflow_core::Key;

use super::ShardServer;
use crate::wait::Notify;

/// The granularity of awaited-result deadlines, in milliseconds: a wait ends at most this
/// much after its `await_timeout_ms`.
pub const AWAIT_TICK_MS: u64 = 10;

/// Entries the deadline buckets may hold beyond twice the open waits before the finished
/// ones are dropped.
pub const AWAIT_COMPACT_MIN: usize = 4096;

/// The deadlines of one shard server's awaited creates, by tick.
pub(crate) struct AwaitDeadlines {
    origin: Instant,
    buckets: RefCell<BTreeMap<u64, Vec<Key>>>,
    entries: Cell<usize>,
    /// The tick the sweeper sleeps until (`u64::MAX`: it waits for a first deadline).
    sleeping_until: Cell<u64>,
    earlier: Notify,
}

impl AwaitDeadlines {
    pub(crate) fn new() -> Self {
        AwaitDeadlines {
            origin: Instant::now(),
            buckets: RefCell::new(BTreeMap::new()),
            entries: Cell::new(0),
            sleeping_until: Cell::new(u64::MAX),
            earlier: Notify::default(),
        }
    }

    /// The tick a deadline `timeout` from now falls in, rounded up.
    fn tick_after(&self, timeout: Duration) -> u64 {
        tick_at_or_after(self.origin.elapsed() + timeout)
    }

    /// The last tick that is over now.
    fn tick_now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX) / AWAIT_TICK_MS
    }

    /// Gives up the wait for `instance` once `timeout` is over. `open` is how many waits are
    /// open now and `still_open` tells whether one is (for dropping finished entries).
    pub(crate) fn add(
        &self,
        instance: Key,
        timeout: Duration,
        open: usize,
        still_open: impl Fn(Key) -> bool,
    ) {
        let tick = self.tick_after(timeout);
        self.buckets
            .borrow_mut()
            .entry(tick)
            .or_default()
            .push(instance);
        self.entries.set(self.entries.get() + 1);
        if tick < self.sleeping_until.get() {
            self.earlier.notify();
        }
        if self.entries.get() > 2 * open + AWAIT_COMPACT_MIN {
            self.compact(still_open);
        }
    }

    /// Drops the entries of waits that are no longer open.
    fn compact(&self, still_open: impl Fn(Key) -> bool) {
        let mut buckets = self.buckets.borrow_mut();
        buckets.retain(|_, keys| {
            keys.retain(|key| still_open(*key));
            !keys.is_empty()
        });
        self.entries
            .set(buckets.values().map(Vec::len).sum::<usize>());
    }

    /// Takes the keys of every bucket up to `tick`.
    fn take_due(&self, tick: u64) -> Vec<Key> {
        let mut buckets = self.buckets.borrow_mut();
        let later = buckets.split_off(&(tick.saturating_add(1)));
        let due = std::mem::replace(&mut *buckets, later);
        let keys: Vec<Key> = due.into_values().flatten().collect();
        self.entries
            .set(self.entries.get().saturating_sub(keys.len()));
        keys
    }

    fn first_tick(&self) -> Option<u64> {
        self.buckets.borrow().keys().next().copied()
    }

    /// Entries held (for tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.entries.get()
    }
}

/// The first tick that begins at or after `since_origin`. Rounded up from the nanosecond:
/// whole milliseconds first (`as_millis`, which truncates) gave a deadline up to a
/// millisecond before its time (a CI run saw a 200 ms wait answered TIMEOUT after 199.97 ms).
fn tick_at_or_after(since_origin: Duration) -> u64 {
    let tick_nanos = u128::from(AWAIT_TICK_MS) * 1_000_000;
    u64::try_from(since_origin.as_nanos().div_ceil(tick_nanos)).unwrap_or(u64::MAX)
}

/// Which waits a sweeper gives up: awaited creates' results, or the answers of user task
/// transitions held for their task listeners.
#[derive(Clone, Copy)]
pub(crate) enum Waits {
    /// Creates that await their instance's result ([`ShardServer::awaits`]; keys are
    /// instance keys).
    Results,
    /// Held user task transitions ([`ShardServer::transition_awaits`]; keys are the
    /// shard's numbers for the waits).
    Transitions,
}

/// The task that gives up the waits (`which`) whose time is over, and all of them when the
/// server begins to shut down. Runs until then.
pub(crate) async fn sweep(server: Rc<ShardServer>, which: Waits) {
    let awaits = match which {
        Waits::Results => &server.awaits,
        Waits::Transitions => &server.transition_awaits,
    };
    let give_up = |key: Key| match which {
        Waits::Results => server.shard.give_up_result(key),
        Waits::Transitions => server.shard.give_up_transition(key.0),
    };
    loop {
        if server.is_closing() {
            awaits.sleeping_until.set(0);
            for key in awaits.take_due(u64::MAX) {
                give_up(key);
            }
            return;
        }
        match awaits.first_tick() {
            None => {
                awaits.sleeping_until.set(u64::MAX);
                futures_lite::future::or(awaits.earlier.notified(), server.closing()).await;
            }
            Some(tick) => {
                awaits.sleeping_until.set(tick);
                let at = awaits.origin + Duration::from_millis(tick.saturating_mul(AWAIT_TICK_MS));
                let now = Instant::now();
                if at > now {
                    let sleep = glommio::timer::sleep(at - now);
                    futures_lite::future::or(
                        futures_lite::future::or(sleep, awaits.earlier.notified()),
                        server.closing(),
                    )
                    .await;
                }
            }
        }
        for key in awaits.take_due(awaits.tick_now()) {
            give_up(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deadline's tick never begins before the deadline, to the nanosecond.
    #[test]
    fn a_deadline_is_never_rounded_down() {
        for nanos in [
            0_u64,
            1,
            999_999,
            1_000_000,
            1_200_900_000,
            1_209_999_999,
            1_210_000_000,
            1_210_000_001,
        ] {
            let deadline = Duration::from_nanos(nanos);
            let tick = tick_at_or_after(deadline);
            let begins = Duration::from_millis(tick * AWAIT_TICK_MS);
            assert!(
                begins >= deadline,
                "{nanos} ns: tick {tick} begins at {begins:?}"
            );
            assert!(
                begins < deadline + Duration::from_millis(AWAIT_TICK_MS),
                "{nanos} ns: tick {tick} is a tick late"
            );
        }
        assert_eq!(tick_at_or_after(Duration::MAX), u64::MAX);
    }

    #[test]
    fn deadlines_come_due_by_tick_and_finished_waits_are_dropped() {
        let awaits = AwaitDeadlines::new();
        let open = std::cell::RefCell::new(std::collections::BTreeSet::new());
        for counter in 1..=10 {
            let key = Key::new(0, counter);
            open.borrow_mut().insert(key);
            let len = open.borrow().len();
            awaits.add(key, Duration::from_millis(counter * 100), len, |key| {
                open.borrow().contains(&key)
            });
        }
        assert_eq!(awaits.held(), 10);
        // Nothing is due before its time; each is due by its tick, rounded up.
        let first = awaits.first_tick().expect("ten deadlines");
        assert!(first * AWAIT_TICK_MS >= 100, "due at tick {first}");
        assert!(awaits.take_due(awaits.tick_now()).is_empty());
        assert!(awaits.take_due(first - 1).is_empty());
        assert_eq!(awaits.take_due(first), vec![Key::new(0, 1)]);
        assert_eq!(awaits.take_due(first + 15), vec![Key::new(0, 2)]);
        assert_eq!(awaits.held(), 8);
        // Waits that finished are dropped once the buckets hold too many.
        open.borrow_mut().clear();
        for counter in 100..(100 + AWAIT_COMPACT_MIN as u64 + 10) {
            let key = Key::new(0, counter);
            awaits.add(key, Duration::from_secs(30), 0, |key| {
                open.borrow().contains(&key)
            });
        }
        assert!(
            awaits.held() <= AWAIT_COMPACT_MIN,
            "held {} entries for no open wait",
            awaits.held()
        );
        let held = awaits.held();
        assert_eq!(awaits.take_due(u64::MAX).len(), held);
        assert_eq!(awaits.held(), 0);
    }
}
