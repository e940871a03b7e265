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
    /// Ask the server about the session.
    CheckSession,
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
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            halt: None,
            retry_seconds: FIRST_RETRY_SECONDS,
            last_failure: None,
            retry_scheduled: false,
            checking_session: false,
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
            Some(_) if online && !self.checking_session => {
                self.checking_session = true;
                Step::CheckSession
            }
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
            self.checking_session = true;
            return Step::CheckSession;
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

    /// The server's answer about the session.
    pub fn session_answer(&mut self, answer: SessionAnswer, jitter: u8) -> Step {
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
        assert_eq!(policy.closed(1006, false, true, 0), Step::CheckSession);
        assert_eq!(
            policy.nudged(true, false),
            Step::Wait,
            "one question at a time"
        );
        assert_eq!(
            policy.session_answer(SessionAnswer::SignedOut, 0),
            Step::Wait
        );
        assert_eq!(policy.halt(), Some(Halt::SignedOut));
        // Halted: a nudge asks the server again rather than connecting.
        assert_eq!(policy.nudged(true, false), Step::CheckSession);
        assert_eq!(policy.session_answer(SessionAnswer::Fine, 0), Step::Connect);
        assert_eq!(policy.halt(), None);
        assert_eq!(
            policy.closed(SIGNED_OUT_CLOSE_CODE, true, true, 0),
            Step::CheckSession
        );
        assert_eq!(
            policy.session_answer(SessionAnswer::NotInTeam, 0),
            Step::Wait
        );
        assert_eq!(policy.resumed(), Step::Connect, "signing in again resumes");
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
        assert_eq!(policy.session_answer(SessionAnswer::Fine, 0), Step::Wait);
        assert_eq!(policy.retry_due(true, false), Step::Wait);
    }

    #[test]
    fn an_unreachable_server_while_checking_backs_off_in_plain_words() {
        let mut policy = Reconnect::default();
        assert_eq!(policy.closed(1006, false, true, 0), Step::CheckSession);
        assert!(matches!(
            policy.session_answer(SessionAnswer::Unreachable, 0),
            Step::RetryIn { .. }
        ));
        assert_eq!(policy.last_failure(), Some("the server cannot be reached"));
        assert_eq!(policy.retry_due(true, false), Step::Connect);
        assert_eq!(policy.closed(1006, false, true, 0), Step::CheckSession);
        assert!(matches!(
            policy.session_answer(SessionAnswer::Refused("Too many connections.".into()), 0),
            Step::RetryIn { .. }
        ));
        assert_eq!(policy.last_failure(), Some("Too many connections"));
    }
}
