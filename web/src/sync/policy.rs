//! When to connect, as a pure state machine: the shell reports what happened (a socket opened
//! or closed, the network came back, the server's answer about the session), and the policy
//! says what to do next. Time and randomness come in as arguments, so the backoff and the
//! halts are tested natively.
//!
//! - After a failure the next attempt waits 1 s, doubling to 30 s, with ±20% jitter so phones
//!   that lost the same server do not all come back at once.
//! - A socket that closes before it opened, or with the "signed out" code, may mean the session
//!   is over: the shell asks the server (`GET /api/session`) before trying again. Signed out or
//!   no longer in the team halts reconnecting until the rep signs in again (or "Sync now",
//!   focus or the network coming back asks the server once more).
//! - Offline, nothing is tried until the browser says the network is back.

use fieldnotes_sync::protocol::SIGNED_OUT_CLOSE_CODE;

pub const FIRST_RETRY_SECONDS: u32 = 1;
pub const MAX_RETRY_SECONDS: u32 = 30;

/// Why the shell does not try to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// The server says this browser's session is over: wait for a new sign-in.
    SignedOut,
    /// Signed in, but no longer a member of this team.
    NotInTeam,
    /// The app stopped syncing (sign-out, team switch).
    Stopped,
}

/// What the server said about this browser's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionAnswer {
    /// 401: signed out.
    SignedOut,
    /// Signed in, but the team is not among the user's.
    NotInTeam,
    /// Signed in and in the team.
    Fine,
    /// No answer at all.
    Unreachable,
    /// Another refusal, in the server's words.
    Refused(String),
}

/// What the shell should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Open a socket.
    Connect,
    /// Close the socket (if any) and try again after this long.
    RetryIn { millis: u32 },
    /// Ask the server about the session; the answer goes back with this number, so an answer
    /// the policy no longer waits for (the rep signed in again meanwhile) changes nothing.
    CheckSession { check: u32 },
    /// Nothing: wait for the next event.
    Wait,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    halt: Option<Halt>,
    retry_seconds: u32,
    last_failure: Option<String>,
    retry_scheduled: bool,
    checking_session: bool,
    /// The number of the last session check asked for.
    check: u32,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            halt: None,
            retry_seconds: FIRST_RETRY_SECONDS,
            last_failure: None,
            retry_scheduled: false,
            checking_session: false,
            check: 0,
        }
    }
}

/// `jitter` is a random byte: 0 waits 20% less, 255 20% more.
fn delay_millis(seconds: u32, jitter: u8) -> u32 {
    let factor = 0.8 + (f64::from(jitter) / 255.0) * 0.4;
    (f64::from(seconds) * factor * 1000.0) as u32
}

impl Reconnect {
    pub fn halt(&self) -> Option<Halt> {
        self.halt
    }

    /// Why the last attempt failed, in words for the status bar.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    /// Whether a retry is scheduled, and after how many seconds the current backoff retries.
    pub fn retrying(&self) -> Option<u32> {
        self.retry_scheduled.then_some(self.retry_seconds.max(1))
    }

    /// Whether to try at all now: not halted, online, no socket and no retry pending.
    fn may_connect(&self, online: bool, connected: bool) -> bool {
        self.halt.is_none() && online && !connected && !self.checking_session
    }

    /// The app started, the network came back, the tab got focus or became visible, or the
    /// rep tapped "Sync now".
    pub fn nudged(&mut self, online: bool, connected: bool) -> Step {
        match self.halt {
            Some(Halt::Stopped) => Step::Wait,
            Some(_) if online && !self.checking_session => self.check_session(),
            Some(_) => Step::Wait,
            None if self.may_connect(online, connected) => {
                self.retry_seconds = FIRST_RETRY_SECONDS;
                self.retry_scheduled = false;
                Step::Connect
            }
            None => Step::Wait,
        }
    }

    /// A scheduled retry is due.
    pub fn retry_due(&mut self, online: bool, connected: bool) -> Step {
        self.retry_scheduled = false;
        if self.may_connect(online, connected) {
            Step::Connect
        } else {
            Step::Wait
        }
    }

    /// The socket joined: the backoff starts over.
    pub fn joined(&mut self) {
        self.retry_seconds = FIRST_RETRY_SECONDS;
        self.last_failure = None;
    }

    /// The socket closed with `code`; `opened` says whether it had opened.
    pub fn closed(&mut self, code: u16, opened: bool, online: bool, jitter: u8) -> Step {
        if self.halt.is_some() || !online {
            return Step::Wait;
        }
        if code == SIGNED_OUT_CLOSE_CODE || !opened {
            return self.check_session();
        }
        self.failed("the server cannot be reached".into(), jitter)
    }

    /// An attempt failed for `reason` (the socket could not be made, the server sent
    /// something unexpected): back off.
    pub fn failed(&mut self, reason: String, jitter: u8) -> Step {
        if self.halt.is_some() {
            return Step::Wait;
        }
        self.last_failure = Some(reason);
        let millis = delay_millis(self.retry_seconds, jitter);
        self.retry_scheduled = true;
        self.retry_seconds = (self.retry_seconds * 2).min(MAX_RETRY_SECONDS);
        Step::RetryIn { millis }
    }

    /// The server said why it will close the socket: shown until the next attempt.
    pub fn note_failure(&mut self, reason: String) {
        self.last_failure = Some(reason);
    }

    fn check_session(&mut self) -> Step {
        self.checking_session = true;
        self.check = self.check.wrapping_add(1);
        Step::CheckSession { check: self.check }
    }

    /// The server's answer to session check `check`.
    pub fn session_answer(&mut self, check: u32, answer: SessionAnswer, jitter: u8) -> Step {
        if !self.checking_session || check != self.check {
            // Asked before the rep signed in again (or before a newer check): out of date.
            return Step::Wait;
        }
        self.checking_session = false;
        if self.halt == Some(Halt::Stopped) {
            return Step::Wait;
        }
        match answer {
            SessionAnswer::SignedOut => {
                self.halt = Some(Halt::SignedOut);
                Step::Wait
            }
            SessionAnswer::NotInTeam => {
                self.halt = Some(Halt::NotInTeam);
                Step::Wait
            }
            SessionAnswer::Fine if self.halt.is_some() => {
                self.halt = None;
                self.retry_seconds = FIRST_RETRY_SECONDS;
                Step::Connect
            }
            SessionAnswer::Fine => self.failed("the server refused the connection".into(), jitter),
            // Still halted: the next "Sync now", focus or sign-in asks again.
            _ if self.halt.is_some() => Step::Wait,
            SessionAnswer::Unreachable => {
                self.failed("the server cannot be reached".into(), jitter)
            }
            SessionAnswer::Refused(message) => {
                self.failed(message.trim_end_matches('.').to_string(), jitter)
            }
        }
    }

    /// The rep signed in again after the server said "signed out".
    pub fn resumed(&mut self) -> Step {
        if self.halt == Some(Halt::Stopped) {
            return Step::Wait;
        }
        self.halt = None;
        self.retry_seconds = FIRST_RETRY_SECONDS;
        // A check still under way was asked about the old session: its answer is out of date.
        self.checking_session = false;
        Step::Connect
    }

    /// Syncing stops for good (sign-out, team switch).
    pub fn stopped(&mut self) {
        self.halt = Some(Halt::Stopped);
        self.retry_scheduled = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    #[test]
    fn failures_back_off_from_one_second_doubling_to_thirty_with_jitter() {
        let mut policy = Reconnect::default();
        let mut delays = Vec::new();
        for _ in 0..8 {
            match policy.failed("down".into(), 128) {
                Step::RetryIn { millis } => delays.push(millis),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delays, [1000, 2001, 4003, 8006, 16012, 30023, 30023, 30023]);
        assert_eq!(delay_millis(10, 0), 8000);
        assert_eq!(delay_millis(10, 255), 12000);
        policy.joined();
        assert_eq!(
            policy.failed("down".into(), 128),
            Step::RetryIn { millis: 1000 },
            "a join starts the backoff over"
        );
        assert_eq!(policy.last_failure(), Some("down"));
    }

    #[test]
    fn a_socket_that_closes_unopened_or_signed_out_asks_about_the_session() {
        let mut policy = Reconnect::default();
        assert_eq!(policy.nudged(true, false), Step::Connect);
        assert!(matches!(
            policy.closed(1006, false, true, 0),
            Step::CheckSession { .. }
        ));
        assert_eq!(
            policy.nudged(true, false),
            Step::Wait,
            "one question at a time"
        );
        assert_eq!(
            policy.session_answer(policy.check, SessionAnswer::SignedOut, 0),
            Step::Wait
        );
        assert_eq!(policy.halt(), Some(Halt::SignedOut));
        // Halted: a nudge asks the server again rather than connecting.
        assert!(matches!(
            policy.nudged(true, false),
            Step::CheckSession { .. }
        ));
        assert_eq!(
            policy.session_answer(policy.check, SessionAnswer::Fine, 0),
            Step::Connect
        );
        assert_eq!(policy.halt(), None);
        assert!(matches!(
            policy.closed(SIGNED_OUT_CLOSE_CODE, true, true, 0),
            Step::CheckSession { .. }
        ));
        assert_eq!(
            policy.session_answer(policy.check, SessionAnswer::NotInTeam, 0),
            Step::Wait
        );
        assert_eq!(policy.resumed(), Step::Connect, "signing in again resumes");
    }

    /// Found by the seeded scenarios: a session check asked while signed out, answered after
    /// the rep signed in again, closed the fresh socket ("the server refused the connection").
    #[test]
    fn a_session_answer_from_before_signing_in_again_changes_nothing() {
        let mut policy = Reconnect::default();
        let Step::CheckSession { check: first } =
            policy.closed(SIGNED_OUT_CLOSE_CODE, true, true, 0)
        else {
            panic!("a signed-out close asks about the session")
        };
        assert_eq!(
            policy.session_answer(first, SessionAnswer::SignedOut, 0),
            Step::Wait
        );
        let Step::CheckSession { check: stale } = policy.nudged(true, false) else {
            panic!("halted, a nudge asks again")
        };
        assert_eq!(policy.resumed(), Step::Connect);
        policy.joined();
        assert_eq!(
            policy.session_answer(stale, SessionAnswer::Fine, 0),
            Step::Wait
        );
        assert_eq!(policy.last_failure(), None);
        // The same after a newer check: only the newest answer counts.
        let Step::CheckSession { check: older } = policy.closed(1006, false, true, 0) else {
            panic!("an unopened close asks about the session")
        };
        assert_eq!(
            policy.session_answer(older + 1, SessionAnswer::SignedOut, 0),
            Step::Wait
        );
        assert_eq!(policy.halt(), None);
        assert!(matches!(
            policy.session_answer(older, SessionAnswer::Unreachable, 0),
            Step::RetryIn { .. }
        ));
    }

    #[test]
    fn offline_waits_and_a_stop_is_for_good() {
        let mut policy = Reconnect::default();
        assert_eq!(policy.nudged(false, false), Step::Wait);
        assert_eq!(policy.closed(1006, true, false, 0), Step::Wait);
        assert_eq!(policy.nudged(true, false), Step::Connect);
        assert_eq!(policy.nudged(true, true), Step::Wait, "already connected");
        policy.stopped();
        assert_eq!(policy.nudged(true, false), Step::Wait);
        assert_eq!(policy.resumed(), Step::Wait);
        assert_eq!(
            policy.session_answer(policy.check, SessionAnswer::Fine, 0),
            Step::Wait
        );
        assert_eq!(policy.retry_due(true, false), Step::Wait);
    }

    #[test]
    fn an_unreachable_server_while_checking_backs_off_in_plain_words() {
        let mut policy = Reconnect::default();
        assert!(matches!(
            policy.closed(1006, false, true, 0),
            Step::CheckSession { .. }
        ));
        assert!(matches!(
            policy.session_answer(policy.check, SessionAnswer::Unreachable, 0),
            Step::RetryIn { .. }
        ));
        assert_eq!(policy.last_failure(), Some("the server cannot be reached"));
        assert_eq!(policy.retry_due(true, false), Step::Connect);
        assert!(matches!(
            policy.closed(1006, false, true, 0),
            Step::CheckSession { .. }
        ));
        assert!(matches!(
            policy.session_answer(
                policy.check,
                SessionAnswer::Refused("Too many connections.".into()),
                0
            ),
            Step::RetryIn { .. }
        ));
        assert_eq!(policy.last_failure(), Some("Too many connections"));
    }

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Server {
        Up,
        Down,
        /// Up, but this browser's session is over.
        SignedOut,
    }

    /// The browser shell as `sync/mod.rs` runs it: it performs each step and reports back.
    struct Shell {
        policy: Reconnect,
        now: u64,
        online: bool,
        server: Server,
        /// A socket exists (connecting or open) and whether it opened.
        socket: Option<bool>,
        retry_at: Option<u64>,
        /// Session checks under way, answered in any order.
        checks: Vec<u32>,
        stopped: bool,
        log: Vec<String>,
    }

    impl Shell {
        fn perform(&mut self, step: Step) {
            self.log.push(format!("{} ms: {step:?}", self.now));
            if self.stopped {
                assert_eq!(
                    step,
                    Step::Wait,
                    "a stopped sync does nothing: {:?}",
                    self.log
                );
            }
            match step {
                Step::Connect => {
                    assert!(self.online, "connects only online: {:?}", self.log);
                    assert!(
                        self.socket.is_none(),
                        "one socket at a time: {:?}",
                        self.log
                    );
                    assert!(
                        self.policy.halt().is_none(),
                        "not while halted: {:?}",
                        self.log
                    );
                    self.socket = Some(false);
                    self.retry_at = None;
                }
                Step::RetryIn { millis } => {
                    assert_ne!(
                        self.socket,
                        Some(true),
                        "never drops an open socket: {:?}",
                        self.log
                    );
                    assert!(
                        (800..=36_000).contains(&millis),
                        "backoff within 0.8 s and 30 s + 20%: {millis} ms, {:?}",
                        self.log
                    );
                    self.socket = None;
                    self.retry_at = Some(self.now + u64::from(millis));
                }
                Step::CheckSession { check } => {
                    assert!(
                        !self.checks.contains(&check),
                        "a new number: {:?}",
                        self.log
                    );
                    self.checks.push(check);
                }
                Step::Wait => {}
            }
        }

        /// One thing happens: the socket's fate, the session's answer, a due retry, the rep
        /// or the network, or the server changing.
        fn event(&mut self, rng: &mut Rng, chaos: bool) {
            let jitter = rng.below(256) as u8;
            let kind = rng.below(if chaos { 10 } else { 4 });
            self.log.push(format!(
                "event {kind} (online {}, server {:?}, socket {:?})",
                self.online, self.server, self.socket
            ));
            match kind {
                0 if self.socket == Some(false) => {
                    if self.server == Server::Up && self.online {
                        self.socket = Some(true);
                        self.policy.joined();
                    } else {
                        self.socket = None;
                        let code = if self.server == Server::SignedOut {
                            4401
                        } else {
                            1006
                        };
                        let step = self.policy.closed(code, false, self.online, jitter);
                        self.perform(step);
                    }
                }
                1 if !self.checks.is_empty() => {
                    let check = self
                        .checks
                        .remove(rng.below(self.checks.len() as u64) as usize);
                    let answer = match (self.online, self.server) {
                        (false, _) | (_, Server::Down) => SessionAnswer::Unreachable,
                        (true, Server::SignedOut) => SessionAnswer::SignedOut,
                        (true, Server::Up) => SessionAnswer::Fine,
                    };
                    let step = self.policy.session_answer(check, answer, jitter);
                    self.perform(step);
                }
                2 if self.retry_at.is_some() => {
                    self.now = self.now.max(self.retry_at.take().unwrap());
                    let step = self.policy.retry_due(self.online, self.socket.is_some());
                    self.perform(step);
                }
                3 => {
                    let step = self.policy.nudged(self.online, self.socket.is_some());
                    self.perform(step);
                }
                4 if self.socket == Some(true) => {
                    self.socket = None;
                    let step = self.policy.closed(1006, true, self.online, jitter);
                    self.perform(step);
                }
                5 => {
                    self.online = !self.online;
                    if !self.online && self.socket.is_some() {
                        self.socket = None;
                        let step = self.policy.closed(1006, true, false, jitter);
                        self.perform(step);
                    }
                }
                6 => {
                    self.server =
                        [Server::Up, Server::Down, Server::SignedOut][rng.below(3) as usize];
                    if self.server != Server::Up && self.socket.is_some() {
                        let opened = self.socket == Some(true);
                        self.socket = None;
                        let code = if self.server == Server::SignedOut {
                            4401
                        } else {
                            1006
                        };
                        let step = self.policy.closed(code, opened, self.online, jitter);
                        self.perform(step);
                    }
                }
                // Signing in again needs the network.
                7 if self.online
                    && self.policy.halt() == Some(Halt::SignedOut)
                    && self.server != Server::SignedOut =>
                {
                    let step = self.policy.resumed();
                    self.perform(step);
                }
                8 if rng.below(40) == 0 => {
                    self.policy.stopped();
                    self.stopped = true;
                    self.retry_at = None;
                }
                _ => self.now += rng.below(2_000),
            }
        }
    }

    /// Random connectivity, server outages and sign-outs against the policy: it never opens a
    /// second socket, never connects offline or halted, backs off within bounds, does nothing
    /// once stopped, and once the network and the server are fine (and the rep signed in
    /// again) it is connected within one backoff period. A failure prints
    /// `RECONNECT_SEED=<n>` to replay it.
    #[test]
    fn seeded_scenarios_connect_once_healed_and_never_misbehave_meanwhile() {
        let seeds: Vec<u64> = match std::env::var("RECONNECT_SEED") {
            Ok(seed) => vec![seed.parse().expect("RECONNECT_SEED is a number")],
            Err(_) => (0..2_000).collect(),
        };
        for seed in seeds {
            let outcome = std::panic::catch_unwind(|| {
                let mut rng = Rng(seed);
                let mut shell = Shell {
                    policy: Reconnect::default(),
                    now: 0,
                    online: true,
                    server: Server::Up,
                    socket: None,
                    retry_at: None,
                    checks: Vec::new(),
                    stopped: false,
                    log: Vec::new(),
                };
                let step = shell.policy.nudged(true, false);
                shell.perform(step);
                for _ in 0..rng.below(300) {
                    shell.event(&mut rng, true);
                }
                // Heal: online, server up; the rep signs in again if it was signed out, and
                // the browser fires `online` once.
                shell.server = Server::Up;
                let was_offline = !shell.online;
                shell.online = true;
                if shell.policy.halt() == Some(Halt::SignedOut) {
                    let step = shell.policy.resumed();
                    shell.perform(step);
                } else if was_offline {
                    let step = shell.policy.nudged(true, shell.socket.is_some());
                    shell.perform(step);
                }
                let healed_at = shell.now;
                for _ in 0..10_000 {
                    if shell.socket == Some(true) || shell.stopped {
                        break;
                    }
                    // No nudges now: only the socket, the session check and due retries.
                    shell.event(&mut rng, false);
                }
                if !shell.stopped {
                    assert_eq!(
                        shell.socket,
                        Some(true),
                        "connected once healed: {:?}",
                        shell.log
                    );
                    assert!(
                        shell.now - healed_at <= 2 * 36_000 + 4_000,
                        "connected within a backoff period of healing ({} ms): {:?}",
                        shell.now - healed_at,
                        shell.log
                    );
                }
            });
            if let Err(panic) = outcome {
                eprintln!("RECONNECT_SEED={seed}");
                std::panic::resume_unwind(panic);
            }
        }
    }
}
