//! Limits on failed sign-ins: per email, so one account cannot be guessed at,
//! and per client address, so one client cannot spray many accounts.
//!
//! An attempt counts as failed from the moment it starts ([`Throttle::begin`], which checks
//! and counts in one step), and is taken back only when the password turned out right
//! ([`Throttle::succeeded`]). So parallel attempts cannot all pass the check before any of
//! them is counted.
//!
//! Kept in memory: each server instance counts its own attempts, and a
//! restart forgets them (documented in `docs/auth.md`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const MAX_FAILURES_PER_EMAIL: u32 = 5;
pub const MAX_FAILURES_PER_ADDRESS: u32 = 30;
/// Entries kept before old windows are swept out.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Default)]
struct Counts {
    by_email: HashMap<String, Window>,
    by_address: HashMap<IpAddr, Window>,
}

/// Why a sign-in may not be tried now, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub retry_after: Duration,
    pub message: String,
}

#[derive(Default)]
pub struct Throttle {
    counts: Mutex<Counts>,
}

fn remaining(window: &Window, limit: u32, now: Instant) -> Option<Duration> {
    let elapsed = now.saturating_duration_since(window.started);
    (window.failures >= limit && elapsed < WINDOW).then(|| WINDOW - elapsed)
}

fn minutes(duration: Duration) -> u64 {
    duration.as_secs().div_ceil(60).max(1)
}

impl Throttle {
    /// Starts an attempt: refuses when this email or address has failed too often lately,
    /// otherwise counts it as failed until [`Throttle::succeeded`] says otherwise.
    pub fn begin(&self, email: &str, address: Option<IpAddr>, now: Instant) -> Result<(), Locked> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        check(&counts, email, address, now)?;
        record_failure(&mut counts, email, address, now);
        Ok(())
    }

    /// The attempt begun for `email` had the right password: forget the email's failures and
    /// take this attempt back from the address's count.
    pub fn succeeded(&self, email: &str, address: Option<IpAddr>) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.by_email.remove(email);
        if let Some(window) = address.and_then(|a| counts.by_address.get_mut(&a)) {
            window.failures = window.failures.saturating_sub(1);
        }
    }
}

/// Refuses when this email or address has failed too often lately.
fn check(
    counts: &Counts,
    email: &str,
    address: Option<IpAddr>,
    now: Instant,
) -> Result<(), Locked> {
    if let Some(wait) = counts
        .by_email
        .get(email)
        .and_then(|w| remaining(w, MAX_FAILURES_PER_EMAIL, now))
    {
        return Err(Locked {
            retry_after: wait,
            message: format!(
                "Too many wrong passwords for this account. Wait {} minutes, then try again, or ask your manager to reset your password.",
                minutes(wait)
            ),
        });
    }
    if let Some(wait) = address
        .and_then(|a| counts.by_address.get(&a))
        .and_then(|w| remaining(w, MAX_FAILURES_PER_ADDRESS, now))
    {
        return Err(Locked {
            retry_after: wait,
            message: format!(
                "Too many failed sign-ins from this device. Wait {} minutes, then try again.",
                minutes(wait)
            ),
        });
    }
    Ok(())
}

fn record_failure(counts: &mut Counts, email: &str, address: Option<IpAddr>, now: Instant) {
    if counts.by_email.len() + counts.by_address.len() > SWEEP_AT {
        counts
            .by_email
            .retain(|_, w| now.saturating_duration_since(w.started) < WINDOW);
        counts
            .by_address
            .retain(|_, w| now.saturating_duration_since(w.started) < WINDOW);
    }
    bump(
        counts.by_email.entry(email.to_string()).or_insert(Window {
            started: now,
            failures: 0,
        }),
        now,
    );
    if let Some(address) = address {
        bump(
            counts.by_address.entry(address).or_insert(Window {
                started: now,
                failures: 0,
            }),
            now,
        );
    }
}

fn bump(window: &mut Window, now: Instant) {
    if now.saturating_duration_since(window.started) >= WINDOW {
        *window = Window {
            started: now,
            failures: 0,
        };
    }
    window.failures += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_email_for_the_rest_of_the_window() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        let address = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..MAX_FAILURES_PER_EMAIL {
            throttle.begin("a@x", address, t0).unwrap();
        }
        let locked = throttle.begin("a@x", address, t0).unwrap_err();
        assert!(locked.retry_after <= WINDOW && locked.retry_after > WINDOW / 2);
        assert!(
            locked.message.contains("Wait 15 minutes"),
            "{}",
            locked.message
        );
        // Another account from the same address is still allowed.
        throttle.begin("b@x", address, t0).unwrap();
        // After the window it opens again.
        throttle.begin("a@x", address, t0 + WINDOW).unwrap();
    }

    #[test]
    fn parallel_attempts_are_counted_before_any_is_verified() {
        let throttle = std::sync::Arc::new(Throttle::default());
        let t0 = Instant::now();
        let address = Some(IpAddr::from([127, 0, 0, 1]));
        // Fifty attempts start at once and none has finished verifying: five may go on.
        let started: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..50)
                .map(|_| {
                    let throttle = throttle.clone();
                    scope.spawn(move || throttle.begin("a@x", address, t0).is_ok())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(started.iter().filter(|ok| **ok).count(), 5);
    }

    #[test]
    fn a_right_password_takes_its_attempt_back() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        let address = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..MAX_FAILURES_PER_ADDRESS * 2 {
            throttle.begin("a@x", address, t0).unwrap();
            throttle.succeeded("a@x", address);
        }
        throttle.begin("b@x", address, t0).unwrap();
    }

    #[test]
    fn thirty_failures_lock_the_address() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        let address = Some(IpAddr::from([10, 0, 0, 9]));
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            throttle.begin(&format!("user{i}@x"), address, t0).unwrap();
        }
        assert!(throttle.begin("new@x", address, t0).is_err());
        throttle
            .begin("new@x", Some(IpAddr::from([10, 0, 0, 10])), t0)
            .unwrap();
    }
}
