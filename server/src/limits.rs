//! What one client may cost the server, and the small machines that hold it to that.
//!
//! Every limit has a default that a normal phone never reaches (a new device downloading a team
//! of 10,000 accounts included), a `fieldnotes serve` flag with an environment twin, and a
//! label in the `fieldnotes_limit_hits_total` metric that counts each time it was hit.
//!
//! - Per user: open sockets ([`SocketCounts`]), concurrent password hashes (in `AppState`).
//! - Per connection: frames and bytes per second ([`RateLimiter`]: a reader over its rate
//!   stops reading, so TCP slows the client down; nothing is dropped), bytes queued for a client
//!   that does not read (closed with a reason), idle time without an answer to a ping.
//! - Per connection, enforced by the hub: open documents, ephemeral size and rate, and what one
//!   automerge sync message may ask (`fieldnotes_sync::guard`).
//! - Per HTTP connection: the time to send a request's headers, which also ends idle
//!   keep-alive connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits `fieldnotes serve` enforces. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub sockets_per_user: usize,
    pub frames_per_second: u32,
    pub bytes_per_second: u64,
    pub outgoing_queue_bytes: usize,
    pub open_documents_per_connection: usize,
    pub ephemeral_bytes: usize,
    pub ephemeral_per_second: u32,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub concurrent_password_hashes: usize,
    /// How long a sign-in waits for a free password hash before it is told to try again.
    pub password_hash_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sockets_per_user: 32,
            frames_per_second: 2_000,
            bytes_per_second: 16 * 1024 * 1024,
            outgoing_queue_bytes: 64 * 1024 * 1024,
            open_documents_per_connection:
                fieldnotes_sync::hub::DEFAULT_MAX_OPEN_DOCUMENTS_PER_CONNECTION,
            ephemeral_bytes: fieldnotes_sync::hub::DEFAULT_MAX_EPHEMERAL_BYTES,
            ephemeral_per_second: fieldnotes_sync::hub::DEFAULT_EPHEMERAL_PER_SECOND,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            concurrent_password_hashes: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            password_hash_wait: Duration::from_secs(10),
        }
    }
}

/// Which limit was hit, for the metric's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    SocketsPerUser,
    FramesPerSecond,
    BytesPerSecond,
    OutgoingQueue,
    IdleTimeout,
    PasswordHashes,
}

impl Limit {
    pub const ALL: [Limit; 6] = [
        Limit::SocketsPerUser,
        Limit::FramesPerSecond,
        Limit::BytesPerSecond,
        Limit::OutgoingQueue,
        Limit::IdleTimeout,
        Limit::PasswordHashes,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::SocketsPerUser => "sockets_per_user",
            Limit::FramesPerSecond => "frames_per_second",
            Limit::BytesPerSecond => "bytes_per_second",
            Limit::OutgoingQueue => "outgoing_queue_bytes",
            Limit::IdleTimeout => "idle_timeout",
            Limit::PasswordHashes => "concurrent_password_hashes",
        }
    }
}

/// How often each limit was hit.
#[derive(Debug, Default)]
pub struct LimitHits {
    counts: [AtomicU64; Limit::ALL.len()],
}

impl LimitHits {
    pub fn hit(&self, limit: Limit) {
        self.counts[limit as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, limit: Limit) -> u64 {
        self.counts[limit as usize].load(Ordering::Relaxed)
    }
}

/// A token bucket: `rate` per second, holding up to `burst`.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes `amount` (which may run the bucket into debt) and says how long to wait until
    /// the debt is paid.
    fn take(&mut self, amount: f64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        self.tokens -= amount;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Frames and bytes per second for one connection's reader. A burst of twice the rate (and at
/// least one largest frame) passes at once; beyond that the reader waits before reading on.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    frames: Bucket,
    bytes: Bucket,
}

/// What the reader must do before handing a frame on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub wait: Duration,
    /// The limit that asked for the longest wait, if any.
    pub limit: Option<Limit>,
}

impl RateLimiter {
    pub fn new(limits: &Limits, max_frame_bytes: usize, now: Instant) -> Self {
        let frames = f64::from(limits.frames_per_second.max(1));
        let bytes = limits.bytes_per_second.max(1) as f64;
        Self {
            frames: Bucket::new(frames, frames * 2.0, now),
            bytes: Bucket::new(bytes, (bytes * 2.0).max(max_frame_bytes as f64 * 2.0), now),
        }
    }

    pub fn frame(&mut self, length: usize, now: Instant) -> Throttle {
        let frame_wait = self.frames.take(1.0, now);
        let byte_wait = self.bytes.take(length as f64, now);
        if frame_wait.is_zero() && byte_wait.is_zero() {
            Throttle {
                wait: Duration::ZERO,
                limit: None,
            }
        } else if frame_wait >= byte_wait {
            Throttle {
                wait: frame_wait,
                limit: Some(Limit::FramesPerSecond),
            }
        } else {
            Throttle {
                wait: byte_wait,
                limit: Some(Limit::BytesPerSecond),
            }
        }
    }
}

/// Open sockets per user.
#[derive(Debug, Default)]
pub struct SocketCounts {
    open: Mutex<HashMap<String, usize>>,
}

/// One open socket; dropping it gives the place back.
#[derive(Debug)]
pub struct SocketSlot {
    counts: Arc<SocketCounts>,
    user: String,
}

impl SocketCounts {
    /// A slot for one more socket of `user`, unless they have `limit` open already.
    pub fn open(self: &Arc<Self>, user: &str, limit: usize) -> Option<SocketSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(user.to_owned()).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(SocketSlot {
            counts: self.clone(),
            user: user.to_owned(),
        })
    }

    pub fn open_for(&self, user: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(user).copied().unwrap_or(0)
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_reader_waits_for_the_rate() {
        let limits = Limits {
            frames_per_second: 100,
            bytes_per_second: 1_000_000,
            ..Limits::default()
        };
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(&limits, 1000, t0);
        for _ in 0..200 {
            assert_eq!(limiter.frame(10, t0).wait, Duration::ZERO);
        }
        let throttle = limiter.frame(10, t0);
        assert_eq!(throttle.limit, Some(Limit::FramesPerSecond));
        assert!((throttle.wait.as_secs_f64() - 0.01).abs() < 1e-6);
        // A second later a second's worth passes again.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..99 {
            assert_eq!(limiter.frame(10, t1).wait, Duration::ZERO);
        }
        assert!(!limiter.frame(10, t1).wait.is_zero());
    }

    #[test]
    fn bytes_are_limited_too_and_one_largest_frame_always_fits_the_burst() {
        let limits = Limits {
            frames_per_second: 1_000,
            bytes_per_second: 1_000,
            ..Limits::default()
        };
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(&limits, 8_000, t0);
        assert_eq!(limiter.frame(8_000, t0).wait, Duration::ZERO);
        assert_eq!(limiter.frame(8_000, t0).wait, Duration::ZERO);
        let throttle = limiter.frame(8_000, t0);
        assert_eq!(throttle.limit, Some(Limit::BytesPerSecond));
        assert!((throttle.wait.as_secs_f64() - 8.0).abs() < 1e-6);
    }

    #[test]
    fn sockets_per_user_are_counted_and_given_back() {
        let counts = Arc::new(SocketCounts::default());
        let first = counts.open("dana", 2).unwrap();
        let second = counts.open("dana", 2).unwrap();
        assert!(counts.open("dana", 2).is_none());
        assert!(counts.open("mia", 2).is_some());
        drop(first);
        assert_eq!(counts.open_for("dana"), 1);
        let third = counts.open("dana", 2);
        assert!(third.is_some());
        drop((second, third));
        assert_eq!(counts.open_for("dana"), 0);
    }
}
