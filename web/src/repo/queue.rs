//! The documents' write queue, as a pure state machine: it decides what goes into the next
//! IndexedDB transaction and what happens when one ends; the repo performs it.
//!
//! Group commit, not a debounce: at most one transaction is in flight, and everything queued
//! while it runs goes into the next one. A burst of typing costs one flush per disk round trip,
//! and no timer can lose the last keystrokes when the tab is closed. A failed transaction puts
//! its writes back in front of anything newer, in order, with the callbacks waiting on them,
//! and halts the queue until the next change or [`WriteQueue::retry`]: nothing is dropped, and
//! nothing is written out of order.
//!
//! `after_commit` callbacks run once the transaction holding every write queued before them
//! has committed (a saved form's draft is deleted in the same transaction as its note; the
//! drafts then learn it is gone).

/// What the queue holds: writes of type `W`, callbacks of type `C`.
#[derive(Debug)]
pub struct WriteQueue<W, C> {
    queued: Vec<W>,
    callbacks: Vec<C>,
    /// Changes (as the rep counts them) in `queued`.
    queued_changes: usize,
    in_flight: Option<InFlight<W, C>>,
    halted: bool,
}

#[derive(Debug)]
struct InFlight<W, C> {
    writes: Vec<W>,
    callbacks: Vec<C>,
    changes: usize,
}

/// One transaction to perform.
pub type Transaction<W> = Vec<W>;

impl<W, C> Default for WriteQueue<W, C> {
    fn default() -> Self {
        Self {
            queued: Vec::new(),
            callbacks: Vec::new(),
            queued_changes: 0,
            in_flight: None,
            halted: false,
        }
    }
}

impl<W, C> WriteQueue<W, C> {
    /// Queues writes worth `changes` changes; a halted queue may start again.
    pub fn push(&mut self, writes: impl IntoIterator<Item = W>, changes: usize) {
        self.queued.extend(writes);
        self.queued_changes += changes;
        self.halted = false;
    }

    /// Runs `callback` once everything queued so far has committed.
    pub fn after_commit(&mut self, callback: C) {
        self.callbacks.push(callback);
        self.halted = false;
    }

    /// The next transaction, when none is in flight, the queue is not halted and something
    /// waits.
    pub fn start(&mut self) -> Option<Transaction<W>>
    where
        W: Clone,
    {
        if self.in_flight.is_some() || self.halted || self.queued.is_empty() {
            return None;
        }
        let writes = std::mem::take(&mut self.queued);
        self.in_flight = Some(InFlight {
            writes: writes.clone(),
            callbacks: std::mem::take(&mut self.callbacks),
            changes: std::mem::take(&mut self.queued_changes),
        });
        Some(writes)
    }

    /// The transaction in flight committed: returns its callbacks, to run now. Callbacks queued
    /// with no write behind them run too.
    pub fn committed(&mut self) -> Vec<C> {
        let mut callbacks = self
            .in_flight
            .take()
            .map(|done| done.callbacks)
            .unwrap_or_default();
        if self.queued.is_empty() {
            callbacks.append(&mut self.callbacks);
        }
        callbacks
    }

    /// The transaction in flight failed: its writes and callbacks go back in front, and the
    /// queue halts until the next change or a retry.
    pub fn failed(&mut self) {
        if let Some(mut failed) = self.in_flight.take() {
            failed.writes.append(&mut self.queued);
            self.queued = failed.writes;
            failed.callbacks.append(&mut self.callbacks);
            self.callbacks = failed.callbacks;
            self.queued_changes += failed.changes;
        }
        self.halted = true;
    }

    /// Try again after a failure (the rep tapped Retry, or the page is being left).
    pub fn retry(&mut self) {
        self.halted = false;
    }

    /// Changes not yet on disk: queued, or in a transaction that has not committed.
    pub fn unsaved_changes(&self) -> usize {
        self.queued_changes + self.in_flight.as_ref().map_or(0, |f| f.changes)
    }

    /// Whether nothing waits and nothing is being written.
    pub fn idle(&self) -> bool {
        self.in_flight.is_none() && self.queued.is_empty() && self.callbacks.is_empty()
    }

    pub fn writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Callbacks with nothing to wait for (no write queued or in flight): run them now.
    pub fn ready_callbacks(&mut self) -> Vec<C> {
        if self.in_flight.is_none() && self.queued.is_empty() {
            std::mem::take(&mut self.callbacks)
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// A disk that fails at random; the queue must still write every write exactly once, in
    /// the order it was queued, and run each callback only after what came before it is on
    /// disk.
    #[test]
    fn seeded_scenarios_write_everything_once_in_order_and_call_back_after_it() {
        let seed_from_env = std::env::var("WRITE_QUEUE_SEED")
            .ok()
            .and_then(|s| s.parse().ok());
        let seeds: Vec<u64> = match seed_from_env {
            Some(seed) => vec![seed],
            None => (0..300).collect(),
        };
        for seed in seeds {
            let mut rng = Rng(seed);
            let mut queue: WriteQueue<u32, u32> = WriteQueue::default();
            let mut disk: Vec<u32> = Vec::new();
            let mut next_write = 0u32;
            // Each callback remembers how many writes had been queued before it.
            let mut callback_needs: Vec<u32> = Vec::new();
            let mut called: Vec<u32> = Vec::new();
            let mut in_flight: Option<Vec<u32>> = None;
            for _ in 0..200 {
                match rng.next() % 5 {
                    0 | 1 => {
                        let n = (rng.next() % 3) as u32 + 1;
                        queue.push(next_write..next_write + n, n as usize);
                        next_write += n;
                    }
                    2 => {
                        callback_needs.push(next_write);
                        queue.after_commit(callback_needs.len() as u32 - 1);
                    }
                    3 => {
                        if in_flight.is_none() {
                            in_flight = queue.start();
                        }
                    }
                    _ => {
                        if let Some(writes) = in_flight.take() {
                            if rng.chance(30) {
                                queue.failed();
                                if rng.chance(50) {
                                    queue.retry();
                                }
                            } else {
                                disk.extend(writes);
                                called.extend(queue.committed());
                            }
                        } else {
                            called.extend(queue.ready_callbacks());
                        }
                    }
                }
                for &callback in &called {
                    assert!(
                        disk.len() as u32 >= callback_needs[callback as usize],
                        "seed {seed}: a callback ran before what came before it was on disk"
                    );
                }
            }
            // Heal: the disk stops failing.
            queue.retry();
            loop {
                if let Some(writes) = in_flight.take() {
                    disk.extend(writes);
                    called.extend(queue.committed());
                }
                match queue.start() {
                    Some(writes) => in_flight = Some(writes),
                    None => break,
                }
            }
            called.extend(queue.ready_callbacks());
            assert_eq!(
                disk,
                (0..next_write).collect::<Vec<_>>(),
                "seed {seed}: every write once, in order"
            );
            let mut sorted = called.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..callback_needs.len() as u32).collect::<Vec<_>>(),
                "seed {seed}: every callback once"
            );
            assert!(queue.idle(), "seed {seed}");
            assert_eq!(queue.unsaved_changes(), 0, "seed {seed}");
        }
    }

    #[test]
    fn a_failure_halts_until_the_next_change_or_a_retry() {
        let mut queue: WriteQueue<&str, ()> = WriteQueue::default();
        queue.push(["a"], 1);
        assert_eq!(queue.start(), Some(vec!["a"]));
        assert_eq!(queue.start(), None, "one transaction at a time");
        queue.push(["b"], 1);
        queue.failed();
        assert_eq!(queue.unsaved_changes(), 2);
        assert_eq!(queue.start(), None, "halted");
        queue.retry();
        assert_eq!(
            queue.start(),
            Some(vec!["a", "b"]),
            "the failed writes first"
        );
        queue.failed();
        queue.push(["c"], 1);
        assert_eq!(
            queue.start(),
            Some(vec!["a", "b", "c"]),
            "a change restarts it"
        );
        assert!(queue.committed().is_empty());
        assert!(queue.idle());
    }
}
