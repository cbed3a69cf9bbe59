//! Worker slots: how many requests compute at once (`--workers`), with the admission line
//! (`queue.rs`) in front of them.
//!
//! Every request has its own thread, which reads the request body; only the CPU work —
//! decoding, inference, encoding — needs a worker slot. A request that finds all slots taken
//! waits in line, in arrival order.
//!
//! For a small model whose run takes microseconds, how a request waits is most of what a
//! slot costs, so waiting is made cheap in two ways, measured on 2 cores with the digits
//! model at 16 clients (requests/s): a freed slot is not reserved for the waiter it wakes
//! (until that thread has been scheduled, a request that arrives may take it, and the
//! waiter goes back to sleep), +30% over a strict hand-over, which left the slot idle for
//! a wake-up each time; and a request yields its core a few times before it goes to sleep
//! at all, +30% more, above `--workers 16` where nobody waits. So that no one is overtaken
//! for long, a waiter that has waited `FAIR_AFTER` is handed the next freed slot
//! directly, as a strict queue would.

use super::queue::{self, Caller, Line, Refused};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// A waiter that has waited this long gets the next freed slot, whoever else arrives.
const FAIR_AFTER: Duration = Duration::from_millis(1);
/// A request that finds every slot taken first gives its core away this many times, to
/// the threads holding slots among others, and looks again: on 2 cores, with the digits
/// model at 16 clients, 3 gave 30% more requests/s than going to sleep at once, 1 gave 20%.
const YIELDS_BEFORE_WAITING: usize = 3;

pub(super) struct Slots {
    slots: usize,
    fair_after: Duration,
    state: Mutex<State>,
}

struct State {
    busy: usize,
    line: Line<Arc<Waiter>>,
}

struct Waiter {
    thread: Thread,
    since: Instant,
    caller: Option<Caller>,
    /// The slot was handed over: it is this waiter's.
    granted: AtomicBool,
    /// A slot was freed and this waiter was woken to try for it. Changed under the lock.
    woken: AtomicBool,
    /// Its caller left and it gave up its place in a full line. Changed under the lock.
    caller_left: AtomicBool,
}

impl queue::Waiter for Arc<Waiter> {
    fn caller(&self) -> Option<Caller> {
        self.caller
    }

    fn since(&self) -> Instant {
        self.since
    }

    /// A woken waiter is on its way to a slot, and asks about its caller once it has one.
    fn may_be_asked(&self) -> bool {
        !self.woken.load(Ordering::Relaxed)
    }

    fn turn_away(self) {
        self.caller_left.store(true, Ordering::Relaxed);
        self.thread.unpark();
    }
}

impl Slots {
    pub(super) fn new(slots: usize, max_waiting: usize) -> Slots {
        Slots {
            slots: slots.max(1),
            fair_after: FAIR_AFTER,
            state: Mutex::new(State {
                busy: 0,
                line: Line::new(max_waiting),
            }),
        }
    }

    /// Takes a slot, waiting in line for one if needed. The slot is given back when the
    /// returned guard is dropped. Also returns how long the request waited.
    pub(super) fn acquire(&self, caller: Option<Caller>) -> Result<(Slot<'_>, Duration), Refused> {
        let start = Instant::now();
        let waiter = {
            let mut state = self.lock();
            for _ in 0..YIELDS_BEFORE_WAITING {
                if state.busy < self.slots {
                    break;
                }
                drop(state);
                thread::yield_now();
                state = self.lock();
            }
            // A free slot is nobody's: a waiter owed one was handed it in `release`.
            if state.busy < self.slots {
                state.busy += 1;
                return Ok((Slot { slots: self }, start.elapsed()));
            }
            if state.line.is_full() {
                state = queue::make_room(&self.state, state, |state| &mut state.line);
                // The lock was let go meanwhile: a slot may have been freed too.
                if state.busy < self.slots {
                    state.busy += 1;
                    return Ok((Slot { slots: self }, start.elapsed()));
                }
                if state.line.is_full() {
                    return Err(Refused::Busy(state.line.busy()));
                }
            }
            let waiter = Arc::new(Waiter {
                thread: thread::current(),
                since: start,
                caller,
                granted: AtomicBool::new(false),
                woken: AtomicBool::new(false),
                caller_left: AtomicBool::new(false),
            });
            state.line.waiting.push_back(waiter.clone());
            waiter
        };
        loop {
            thread::park();
            if waiter.granted.load(Ordering::Acquire) {
                break;
            }
            let mut state = self.lock();
            if waiter.granted.load(Ordering::Acquire) {
                break;
            }
            if waiter.caller_left.load(Ordering::Relaxed) {
                return Err(Refused::CallerLeft);
            }
            // `park` may also return for no reason.
            if !waiter.woken.load(Ordering::Relaxed) {
                continue;
            }
            if state.busy < self.slots {
                state.busy += 1;
                state.line.waiting.retain(|w| !Arc::ptr_eq(w, &waiter));
                break;
            }
            // A newcomer took the slot first: wait for the next one.
            waiter.woken.store(false, Ordering::Relaxed);
        }
        Ok((Slot { slots: self }, start.elapsed()))
    }

    /// Requests computing now, and requests waiting for a slot.
    pub(super) fn load(&self) -> (usize, usize) {
        let state = self.lock();
        (state.busy, state.line.waiting.len())
    }

    fn release(&self) {
        let mut state = self.lock();
        if let Some(first) = state.line.waiting.front()
            && !first.woken.load(Ordering::Relaxed)
            && first.since.elapsed() >= self.fair_after
        {
            // Waited long enough: the slot passes straight to it, `busy` stays the same.
            let first = state.line.waiting.pop_front().expect("a first waiter");
            first.granted.store(true, Ordering::Release);
            first.thread.unpark();
            return;
        }
        state.busy -= 1;
        // Wake one waiter per freed slot; one already woken is on its way to a slot.
        if let Some(next) = state
            .line
            .waiting
            .iter()
            .find(|w| !w.woken.load(Ordering::Relaxed))
        {
            next.woken.store(true, Ordering::Relaxed);
            next.thread.unpark();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A counter and a line, always consistent between statements.
        queue::relock(&self.state)
    }
}

/// A worker slot; dropping it frees the slot for the next request.
pub struct Slot<'a> {
    slots: &'a Slots,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.slots.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn at_most_slots_run_and_the_queue_is_bounded() {
        let slots = Arc::new(Slots::new(2, 1));
        let (a, _) = slots.acquire(None).unwrap();
        let (b, _) = slots.acquire(None).unwrap();
        assert_eq!(slots.load(), (2, 0));

        // A third request waits; a fourth finds the queue full.
        let w = slots.clone();
        let waiting = thread::spawn(move || {
            let (_slot, waited) = w.acquire(None).unwrap();
            waited
        });
        while slots.load().1 == 0 {
            thread::yield_now();
        }
        assert_eq!(
            slots.acquire(None).err(),
            Some(Refused::Busy(queue::Busy { waiting: 1 }))
        );

        drop(a);
        assert!(waiting.join().unwrap() > Duration::ZERO);
        drop(b);
        assert_eq!(slots.load(), (0, 0));
    }

    #[test]
    fn a_full_queue_gives_the_place_of_a_request_whose_client_left_to_a_newcomer() {
        // Clients on port 1 have left; the others are still there.
        let slots = Arc::new(Slots::new(1, 1));
        let client = |port| {
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            Some(Caller::new(address, |address, _| address.port() == 1))
        };
        let (slot, _) = slots.acquire(None).unwrap();

        // A waiter whose client is there keeps its place: the newcomer is refused.
        let w = slots.clone();
        let staying = thread::spawn(move || w.acquire(client(2)).map(|_| ()));
        while slots.load().1 == 0 {
            thread::yield_now();
        }
        assert_eq!(
            slots.acquire(client(3)).err(),
            Some(Refused::Busy(queue::Busy { waiting: 1 }))
        );
        drop(slot);
        staying.join().unwrap().unwrap();

        // A waiter whose client left gives its place up, and is told so.
        let (slot, _) = slots.acquire(None).unwrap();
        let (w, (left_tx, left)) = (slots.clone(), std::sync::mpsc::channel());
        thread::spawn(move || left_tx.send(w.acquire(client(1)).map(|_| ())));
        while slots.load().1 == 0 {
            thread::yield_now();
        }
        // Asked about only once it has waited long enough.
        thread::sleep(queue::ASK_AFTER);
        let w = slots.clone();
        let newcomer = thread::spawn(move || w.acquire(client(3)).map(|_| ()));
        let waited = left.recv_timeout(Duration::from_secs(10));
        assert_eq!(waited, Ok(Err(Refused::CallerLeft)));
        while slots.load().1 == 0 {
            thread::yield_now();
        }
        assert_eq!(slots.load(), (1, 1));
        drop(slot);
        newcomer.join().unwrap().unwrap();
        assert_eq!(slots.load(), (0, 0));
    }

    #[test]
    fn a_long_waiter_is_handed_the_freed_slot() {
        let mut slots = Slots::new(1, 10);
        slots.fair_after = Duration::ZERO;
        let slots = Arc::new(slots);
        let (slot, _) = slots.acquire(None).unwrap();
        let w = slots.clone();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let waiting = thread::spawn(move || {
            let (_slot, waited) = w.acquire(None).unwrap();
            // Held until the test has looked, however late this thread runs.
            released.recv().unwrap();
            waited
        });
        while slots.load().1 == 0 {
            thread::yield_now();
        }
        drop(slot);
        // Handed over at once: still busy and nobody waiting, whether or not the waiter has
        // run yet. Without the hand-over, a waiter that has not run yet leaves (0, 1).
        assert_eq!(slots.load(), (1, 0));
        release.send(()).unwrap();
        assert!(waiting.join().unwrap() > Duration::ZERO);
        assert_eq!(slots.load(), (0, 0));
    }

    #[test]
    fn many_threads_never_exceed_the_slots_and_all_get_one() {
        // Freed slots open to newcomers (no hand-over), and always handed over.
        for fair_after in [Duration::from_secs(3600), Duration::ZERO] {
            many_threads(fair_after);
        }
    }

    fn many_threads(fair_after: Duration) {
        let mut slots = Slots::new(3, 1000);
        slots.fair_after = fair_after;
        let slots = Arc::new(slots);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let (slots, running, peak) = (slots.clone(), running.clone(), peak.clone());
                thread::spawn(move || {
                    for _ in 0..50 {
                        let _slot = slots.acquire(None).unwrap();
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        thread::yield_now();
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(slots.load(), (0, 0));
    }
}
