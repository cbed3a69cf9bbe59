//! Admission: the bounded line (`--queue`) that every prediction waits in, for a worker
//! slot (`slots.rs`) or, with dynamic batching, for its batch (`batcher.rs`).
//!
//! A full line refuses a newcomer at once (`Busy`, answered 503) rather than letting it join
//! an ever longer wait. But a full line may hold requests whose callers have since left
//! (timed out, or a proxy gave up on them): before refusing a newcomer, the waiters that
//! have waited `ASK_AFTER` are asked whether their caller is still there (at most once per
//! `ASK_AFTER`), and those whose caller left give up their place. Otherwise, under a retry
//! storm, live callers were refused for the sake of callers that were gone. A request that
//! waited long is also not run when its caller has left meanwhile: nobody would read the
//! answer, and everyone behind it would wait longer.
//!
//! How to tell that a caller has left is not the engine's business: the HTTP layer gives
//! each request a `Caller` that knows.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A request that waited this long (for a worker slot, or for its batch) is not run if its
/// caller has left meanwhile. Short enough to catch clients that time out after a second
/// or more; long enough that asking (a few system calls, now and then a pass over the
/// process's descriptors) is small beside the wait.
pub const ASK_AFTER: Duration = Duration::from_millis(20);

/// Whom a request is for: its client's address, and how to find out whether that client
/// has left since a given moment. Copied into the line, so no allocation per request.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    address: SocketAddr,
    has_left: fn(SocketAddr, Instant) -> bool,
}

impl Caller {
    pub fn new(address: SocketAddr, has_left: fn(SocketAddr, Instant) -> bool) -> Caller {
        Caller { address, has_left }
    }

    fn has_left(&self, waiting_since: Instant) -> bool {
        (self.has_left)(self.address, waiting_since)
    }
}

/// True when a request that has waited `waited` should not run: it waited `ASK_AFTER` or
/// more and its caller has left meanwhile. A request with no known caller always runs.
pub fn left_while_waiting(caller: Option<Caller>, waited: Duration) -> bool {
    if waited < ASK_AFTER {
        return false;
    }
    let since = Instant::now()
        .checked_sub(waited)
        .unwrap_or_else(Instant::now);
    caller.is_some_and(|caller| caller.has_left(since))
}

/// The line is full of requests whose callers are, as far as is known, still there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Busy {
    pub waiting: usize,
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server is busy: {} requests are already waiting (--queue)",
            self.waiting
        )
    }
}

/// Why a request was not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    Busy(Busy),
    /// The request's caller left while it waited; it was not run.
    CallerLeft,
}

/// What the line holds: one waiting request.
pub(super) trait Waiter {
    fn caller(&self) -> Option<Caller>;
    /// When it joined the line.
    fn since(&self) -> Instant;
    /// How long it has waited by `now`; the batcher does not count the delay it waits on
    /// purpose.
    fn waited(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.since())
    }
    /// False for a waiter already on its way out of the line (a woken worker-slot waiter).
    fn may_be_asked(&self) -> bool {
        true
    }
    /// Tells a waiter taken out of the line that its caller has left.
    fn turn_away(self);
}

/// A line of at most `capacity` waiters.
pub(super) struct Line<T> {
    pub(super) waiting: VecDeque<T>,
    capacity: usize,
    /// When the callers were last asked: at most once per `ASK_AFTER` (asking costs a few
    /// system calls per waiter, and a full line is when the machine is busiest).
    last_asked: Option<Instant>,
}

impl<T: Waiter> Line<T> {
    pub(super) fn new(capacity: usize) -> Line<T> {
        Line {
            waiting: VecDeque::new(),
            capacity,
            last_asked: None,
        }
    }

    pub(super) fn is_full(&self) -> bool {
        self.waiting.len() >= self.capacity
    }

    pub(super) fn busy(&self) -> Busy {
        Busy {
            waiting: self.waiting.len(),
        }
    }

    /// The waiters to ask about, when a look is due: those that have waited `ASK_AFTER`.
    fn due(&mut self, now: Instant) -> Vec<(Caller, Instant)> {
        let due = self
            .last_asked
            .is_none_or(|asked| now.saturating_duration_since(asked) >= ASK_AFTER);
        if !due {
            return Vec::new();
        }
        let to_ask: Vec<(Caller, Instant)> = self
            .waiting
            .iter()
            .filter(|w| w.may_be_asked() && w.waited(now) >= ASK_AFTER)
            .filter_map(|w| Some((w.caller()?, w.since())))
            .collect();
        if !to_ask.is_empty() {
            self.last_asked = Some(now);
        }
        to_ask
    }

    /// Takes out and turns away the waiters identified by caller address and arrival (a
    /// connection has one request waiting at a time).
    fn turn_away(&mut self, left: &[(SocketAddr, Instant)]) {
        let mut ix = 0;
        while ix < self.waiting.len() {
            let waiter = &self.waiting[ix];
            let gone = waiter.may_be_asked()
                && waiter
                    .caller()
                    .is_some_and(|c| left.contains(&(c.address, waiter.since())));
            if gone {
                let waiter = self.waiting.remove(ix).expect("an index within the line");
                waiter.turn_away();
            } else {
                ix += 1;
            }
        }
    }
}

/// Makes room in a full line: asks, without the lock held (finding a connection may take a
/// pass over the process's descriptors), whether the callers of the waiters that have
/// waited long are still there, and turns away those that left. Returns the lock held
/// again; the line may still be full.
pub(super) fn make_room<'a, S, T: Waiter>(
    lock: &'a Mutex<S>,
    mut state: MutexGuard<'a, S>,
    line: fn(&mut S) -> &mut Line<T>,
) -> MutexGuard<'a, S> {
    let to_ask = line(&mut state).due(Instant::now());
    if to_ask.is_empty() {
        return state;
    }
    drop(state);
    let left: Vec<(SocketAddr, Instant)> = to_ask
        .into_iter()
        .filter(|(caller, since)| caller.has_left(*since))
        .map(|(caller, since)| (caller.address, since))
        .collect();
    let mut state = relock(lock);
    line(&mut state).turn_away(&left);
    state
}

/// Takes a lock whose state is consistent between statements: a panic elsewhere while it
/// was held cannot have left it half-updated.
pub(super) fn relock<S>(lock: &Mutex<S>) -> MutexGuard<'_, S> {
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{Sender, channel};

    struct Entry {
        caller: Option<Caller>,
        since: Instant,
        told: Sender<u16>,
    }

    impl Waiter for Entry {
        fn caller(&self) -> Option<Caller> {
            self.caller
        }
        fn since(&self) -> Instant {
            self.since
        }
        fn turn_away(self) {
            let _ = self.told.send(self.caller.map_or(0, |c| c.address.port()));
        }
    }

    /// Callers on port 1 have left; the others are still there.
    fn caller(port: u16) -> Caller {
        Caller::new(SocketAddr::from(([127, 0, 0, 1], port)), |address, _| {
            address.port() == 1
        })
    }

    #[test]
    fn a_full_line_turns_away_only_long_waiters_whose_caller_left() {
        let (told, turned_away) = channel();
        let lock = Mutex::new(Line::new(3));
        let long_ago = Instant::now() - ASK_AFTER * 2;
        {
            let mut line = relock(&lock);
            for (port, since) in [(1, long_ago), (2, long_ago), (1, Instant::now())] {
                let told = told.clone();
                let caller = Some(caller(port));
                line.waiting.push_back(Entry {
                    caller,
                    since,
                    told,
                });
            }
            assert!(line.is_full());
        }
        let line = make_room(&lock, relock(&lock), |line| line);
        assert_eq!(line.waiting.len(), 2, "the one that left long ago is out");
        assert_eq!(turned_away.try_recv(), Ok(1));
        assert!(turned_away.try_recv().is_err(), "the recent one stays");
        drop(line);
        // Asked once per ASK_AFTER at most.
        let line = make_room(&lock, relock(&lock), |line| line);
        assert_eq!(line.waiting.len(), 2);
    }

    #[test]
    fn the_busy_message_names_the_line_and_the_flag() {
        let busy = Busy { waiting: 128 };
        assert_eq!(
            busy.to_string(),
            "the server is busy: 128 requests are already waiting (--queue)"
        );
    }

    #[test]
    fn only_a_long_wait_is_asked_about() {
        let gone = Some(caller(1));
        assert!(!left_while_waiting(gone, ASK_AFTER / 2));
        assert!(left_while_waiting(gone, ASK_AFTER));
        assert!(!left_while_waiting(Some(caller(2)), ASK_AFTER * 2));
        assert!(!left_while_waiting(None, ASK_AFTER * 2));
    }
}
