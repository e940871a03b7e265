//! The hub thread's inbox: one queue per user, drained in turn, so no user can keep the hub
//! from the others.
//!
//! The hub is one thread. With one first-come queue, a member who sent frames faster than the
//! hub handles them (a flood, or only a new phone downloading ten thousand accounts) put every
//! other member's frames behind theirs: another member's edit waited seconds for its
//! acknowledgement. Here each user's socket events wait in that user's own queue, at most
//! [`PER_USER`] of them (a socket that would add more waits, so TCP slows the client down), and
//! each batch takes one event from each user in turn. Another member then waits at most about
//! one round, whatever the others send; a user alone still has the whole hub.
//!
//! Control work (sign-in queries, health checks, revalidation, shutdown) has a queue of its own,
//! taken first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Socket events one user may have waiting for the hub at once.
pub const PER_USER: usize = 64;

/// Events per user in one batch while other users wait too.
const ROUNDS: usize = 8;

/// One queued item and, for a user's event, its place in that user's allowance.
pub struct Queued<T> {
    pub item: T,
    _place: Option<OwnedSemaphorePermit>,
}

struct State<T> {
    control: VecDeque<T>,
    users: HashMap<Arc<str>, VecDeque<Queued<T>>>,
    /// Users with something queued, in the order they are served.
    ready: VecDeque<Arc<str>>,
    closed: bool,
}

pub struct FairQueue<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
    places: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
}

/// A user's way into the queue, held by each of their sockets.
#[derive(Clone)]
pub struct UserLane {
    user: Arc<str>,
    places: Arc<Semaphore>,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                control: VecDeque::new(),
                users: HashMap::new(),
                ready: VecDeque::new(),
                closed: false,
            }),
            wake: Condvar::new(),
            places: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> FairQueue<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lane of `user`; all their sockets share its allowance.
    pub fn lane(&self, user: &str) -> UserLane {
        let mut places = self.places.lock().unwrap_or_else(|p| p.into_inner());
        // Lanes of users with no socket left are forgotten now and then.
        if places.len() > 10_000 {
            places.retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
        }
        let (user, semaphore) = match places.get_key_value(user) {
            Some((user, semaphore)) => (user.clone(), semaphore.clone()),
            None => {
                let user: Arc<str> = Arc::from(user);
                let semaphore = Arc::new(Semaphore::new(PER_USER));
                places.insert(user.clone(), semaphore.clone());
                (user, semaphore)
            }
        };
        UserLane {
            user,
            places: semaphore,
        }
    }

    /// Queues control work; false once the queue is closed.
    pub fn push_control(&self, item: T) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.control.push_back(item);
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Queues a user's event once they have room; false once the queue is closed.
    pub async fn push_user(&self, lane: &UserLane, item: T) -> bool {
        let Ok(place) = lane.places.clone().acquire_owned().await else {
            return false;
        };
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        let queue = state.users.entry(lane.user.clone()).or_default();
        let was_empty = queue.is_empty();
        queue.push_back(Queued {
            item,
            _place: Some(place),
        });
        if was_empty {
            state.ready.push_back(lane.user.clone());
        }
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Waits for work, then takes up to `max` items: all control work first, then one event
    /// per user in turn. Empty once the queue is closed and drained.
    pub fn next_batch(&self, max: usize) -> Vec<Queued<T>> {
        let mut state = self.lock();
        while state.control.is_empty() && state.ready.is_empty() && !state.closed {
            state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        let mut batch = Vec::new();
        while batch.len() < max
            && let Some(item) = state.control.pop_front()
        {
            batch.push(Queued { item, _place: None });
        }
        // Rounds of one event per user. While several users wait, a batch stops after a few
        // rounds: it commits sooner, and each user's reply comes sooner. A user alone gets
        // batches as large as `max`, which costs fewer commits.
        let contended = state.ready.len() > 1;
        let mut rounds = 0;
        while batch.len() < max && !state.ready.is_empty() && !(contended && rounds >= ROUNDS) {
            rounds += 1;
            for _ in 0..state.ready.len() {
                if batch.len() >= max {
                    break;
                }
                let Some(user) = state.ready.pop_front() else {
                    break;
                };
                let Some(queue) = state.users.get_mut(&user) else {
                    continue;
                };
                if let Some(queued) = queue.pop_front() {
                    batch.push(queued);
                }
                if queue.is_empty() {
                    state.users.remove(&user);
                } else {
                    state.ready.push_back(user);
                }
            }
        }
        batch
    }

    /// Whether [`FairQueue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// No more pushes; what is queued can still be taken.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_user_is_served_in_turn_and_control_work_first() {
        let queue = FairQueue::<&'static str>::default();
        let flooder = queue.lane("flooder");
        let member = queue.lane("member");
        for _ in 0..10 {
            assert!(queue.push_user(&flooder, "flood").await);
        }
        assert!(queue.push_user(&member, "edit").await);
        assert!(queue.push_control("sign-in"));
        let batch: Vec<&str> = queue.next_batch(4).into_iter().map(|q| q.item).collect();
        assert_eq!(batch, ["sign-in", "flood", "edit", "flood"]);
        // Alone, the flooder gets a batch as large as asked.
        let rest = queue.next_batch(100);
        assert_eq!(rest.len(), 8);
    }

    #[tokio::test]
    async fn while_others_wait_a_batch_stops_after_a_few_rounds() {
        let queue = FairQueue::<&'static str>::default();
        let flooder = queue.lane("flooder");
        let member = queue.lane("member");
        for _ in 0..50 {
            assert!(queue.push_user(&flooder, "flood").await);
        }
        assert!(queue.push_user(&member, "edit").await);
        assert!(queue.push_user(&member, "edit").await);
        let batch: Vec<&str> = queue.next_batch(512).into_iter().map(|q| q.item).collect();
        assert_eq!(batch.iter().filter(|i| **i == "edit").count(), 2);
        assert_eq!(batch.len(), 2 + ROUNDS);
    }

    #[tokio::test]
    async fn a_user_with_a_full_lane_waits_and_frees_places_as_the_hub_takes_them() {
        let queue = Arc::new(FairQueue::<u32>::default());
        let lane = queue.lane("busy");
        for n in 0..PER_USER as u32 {
            assert!(queue.push_user(&lane, n).await);
        }
        let blocked = {
            let (queue, lane) = (queue.clone(), lane.clone());
            tokio::spawn(async move { queue.push_user(&lane, 999).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!blocked.is_finished(), "a full lane makes the socket wait");
        // The hub takes (and, when done, drops) one: the place is given back.
        drop(queue.next_batch(1));
        assert!(blocked.await.unwrap());
    }

    #[test]
    fn a_closed_queue_refuses_pushes_and_wakes_the_hub() {
        let queue = FairQueue::<u32>::default();
        queue.close();
        assert!(!queue.push_control(1));
        assert!(queue.next_batch(10).is_empty());
    }
}
