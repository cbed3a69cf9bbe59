//! How many requests compute at once (`--workers`), and the bounded queue in front of them
//! (`--queue`).
//!
//! Every request has its own thread, which reads the request body; only the CPU work —
//! decoding, inference, encoding — needs a worker slot. A request that finds all slots taken
//! waits in a FIFO queue; when the queue is full it is refused at once (503), rather than
//! joining an ever longer wait.
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
//!
//! A full queue may hold requests whose clients have since left (timed out, or a proxy gave
//! up on them): before refusing a newcomer, the waiters that have waited `ASK_AFTER` are
//! asked whether their client is still there (`client_gone`, at most once per `ASK_AFTER`),
//! and those whose client left give up their place and are answered 499. Otherwise, under
//! a retry storm, live clients were refused for the sake of clients that were gone.

use crate::client_gone::{self, ASK_AFTER, LastAsked};
use std::collections::VecDeque;
use std::net::SocketAddr;
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

pub struct Workers {
    slots: usize,
    max_waiting: usize,
    fair_after: Duration,
    /// Waiters in a full queue that have waited this long are asked (at most once per as
    /// long) whether their client is still there, with `client_gone` (replaced in tests).
    ask_after: Duration,
    client_gone: fn(SocketAddr, Instant) -> bool,
    state: Mutex<State>,
}

struct State {
    busy: usize,
    waiting: VecDeque<Arc<Waiter>>,
    last_asked: LastAsked,
}

struct Waiter {
    thread: Thread,
    since: Instant,
    /// The address of the request's client, when it came over HTTP.
    client: Option<SocketAddr>,
    /// The slot was handed over: it is this waiter's.
    granted: AtomicBool,
    /// A slot was freed and this waiter was woken to try for it. Changed under the lock.
    woken: AtomicBool,
    /// Its client left and it gave up its place in a full queue. Changed under the lock.
    client_left: AtomicBool,
}

/// Why a request got no worker slot.
#[derive(Debug, PartialEq, Eq)]
pub enum NoSlot {
    /// The queue is full (of requests whose clients are, as far as is known, still there).
    QueueFull { waiting: usize },
    /// The request's client left while it waited, and its place went to a newer request.
    ClientLeft,
}

impl Workers {
    pub fn new(slots: usize, max_waiting: usize) -> Workers {
        Workers {
            slots: slots.max(1),
            max_waiting,
            fair_after: FAIR_AFTER,
            ask_after: ASK_AFTER,
            client_gone: client_gone::has_gone,
            state: Mutex::new(State {
                busy: 0,
                waiting: VecDeque::new(),
                last_asked: LastAsked::default(),
            }),
        }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Takes a slot, waiting in line for one if needed. The slot is given back when the
    /// returned guard is dropped. Also returns how long the request waited. `client`, the
    /// address of the request's client, lets a full queue find out that it has left.
    pub fn acquire(&self, client: Option<SocketAddr>) -> Result<(Slot<'_>, Duration), NoSlot> {
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
                return Ok((Slot { workers: self }, start.elapsed()));
            }
            if state.waiting.len() >= self.max_waiting {
                state = self.drop_waiters_whose_client_left(state);
                // The lock was let go meanwhile: a slot may have been freed too.
                if state.busy < self.slots {
                    state.busy += 1;
                    return Ok((Slot { workers: self }, start.elapsed()));
                }
                if state.waiting.len() >= self.max_waiting {
                    return Err(NoSlot::QueueFull {
                        waiting: state.waiting.len(),
                    });
                }
            }
            let waiter = Arc::new(Waiter {
                thread: thread::current(),
                since: start,
                client,
                granted: AtomicBool::new(false),
                woken: AtomicBool::new(false),
                client_left: AtomicBool::new(false),
            });
            state.waiting.push_back(waiter.clone());
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
            if waiter.client_left.load(Ordering::Relaxed) {
                return Err(NoSlot::ClientLeft);
            }
            // `park` may also return for no reason.
            if !waiter.woken.load(Ordering::Relaxed) {
                continue;
            }
            if state.busy < self.slots {
                state.busy += 1;
                state.waiting.retain(|w| !Arc::ptr_eq(w, &waiter));
                break;
            }
            // A newcomer took the slot first: wait for the next one.
            waiter.woken.store(false, Ordering::Relaxed);
        }
        Ok((Slot { workers: self }, start.elapsed()))
    }

    /// Takes out of the queue the waiters whose client has left (see the module's comment),
    /// waking each to be answered. The clients are asked without the lock held: finding a
    /// connection may take a pass over the process's descriptors.
    fn drop_waiters_whose_client_left<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        let now = Instant::now();
        if !state.last_asked.due(now, self.ask_after) {
            return state;
        }
        // A woken waiter is on its way to a slot, and asks for itself once it has one.
        let to_ask: Vec<(Arc<Waiter>, SocketAddr)> = state
            .waiting
            .iter()
            .filter(|w| !w.woken.load(Ordering::Relaxed))
            .filter(|w| now.duration_since(w.since) >= self.ask_after)
            .filter_map(|w| Some((w.clone(), w.client?)))
            .collect();
        if to_ask.is_empty() {
            return state;
        }
        state.last_asked.asked(now);
        drop(state);
        let left: Vec<Arc<Waiter>> = to_ask
            .into_iter()
            .filter(|(waiter, client)| (self.client_gone)(*client, waiter.since))
            .map(|(waiter, _)| waiter)
            .collect();
        let mut state = self.lock();
        for waiter in left {
            if waiter.woken.load(Ordering::Relaxed) {
                continue;
            }
            if let Some(place) = state.waiting.iter().position(|w| Arc::ptr_eq(w, &waiter)) {
                state.waiting.remove(place);
                waiter.client_left.store(true, Ordering::Relaxed);
                waiter.thread.unpark();
            }
        }
        state
    }

    /// Requests computing now, and requests waiting for a slot.
    pub fn load(&self) -> (usize, usize) {
        let state = self.lock();
        (state.busy, state.waiting.len())
    }

    fn release(&self) {
        let mut state = self.lock();
        if let Some(first) = state.waiting.front()
            && !first.woken.load(Ordering::Relaxed)
            && first.since.elapsed() >= self.fair_after
        {
            // Waited long enough: the slot passes straight to it, `busy` stays the same.
            let first = state.waiting.pop_front().expect("a first waiter");
            first.granted.store(true, Ordering::Release);
            first.thread.unpark();
            return;
        }
        state.busy -= 1;
        // Wake one waiter per freed slot; one already woken is on its way to a slot.
        if let Some(next) = state
            .waiting
            .iter()
            .find(|w| !w.woken.load(Ordering::Relaxed))
        {
            next.woken.store(true, Ordering::Relaxed);
            next.thread.unpark();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a counter and a queue, always consistent between statements:
        // a panic elsewhere while it was held cannot leave it half-updated.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A worker slot; dropping it frees the slot for the next request.
pub struct Slot<'a> {
    workers: &'a Workers,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.workers.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn at_most_slots_run_and_the_queue_is_bounded() {
        let workers = Arc::new(Workers::new(2, 1));
        let (a, _) = workers.acquire(None).unwrap();
        let (b, _) = workers.acquire(None).unwrap();
        assert_eq!(workers.load(), (2, 0));

        // A third request waits; a fourth finds the queue full.
        let w = workers.clone();
        let waiting = thread::spawn(move || {
            let (_slot, waited) = w.acquire(None).unwrap();
            waited
        });
        while workers.load().1 == 0 {
            thread::yield_now();
        }
        assert_eq!(
            workers.acquire(None).err(),
            Some(NoSlot::QueueFull { waiting: 1 })
        );

        drop(a);
        assert!(waiting.join().unwrap() > Duration::ZERO);
        drop(b);
        assert_eq!(workers.load(), (0, 0));
    }

    #[test]
    fn a_full_queue_gives_the_place_of_a_request_whose_client_left_to_a_newcomer() {
        // Clients on port 1 have left; the others are still there.
        let mut workers = Workers::new(1, 1);
        workers.ask_after = Duration::ZERO;
        workers.client_gone = |client, _| client.port() == 1;
        let workers = Arc::new(workers);
        let client = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        let (slot, _) = workers.acquire(None).unwrap();

        // A waiter whose client is there keeps its place: the newcomer is refused.
        let w = workers.clone();
        let staying = thread::spawn(move || w.acquire(client(2)).map(|_| ()));
        while workers.load().1 == 0 {
            thread::yield_now();
        }
        assert_eq!(
            workers.acquire(client(3)).err(),
            Some(NoSlot::QueueFull { waiting: 1 })
        );
        drop(slot);
        staying.join().unwrap().unwrap();

        // A waiter whose client left gives its place up, and is told so.
        let (slot, _) = workers.acquire(None).unwrap();
        let (w, (left_tx, left)) = (workers.clone(), std::sync::mpsc::channel());
        thread::spawn(move || left_tx.send(w.acquire(client(1)).map(|_| ())));
        while workers.load().1 == 0 {
            thread::yield_now();
        }
        let w = workers.clone();
        let newcomer = thread::spawn(move || w.acquire(client(3)).map(|_| ()));
        let waited = left.recv_timeout(Duration::from_secs(10));
        assert_eq!(waited, Ok(Err(NoSlot::ClientLeft)));
        while workers.load().1 == 0 {
            thread::yield_now();
        }
        assert_eq!(workers.load(), (1, 1));
        drop(slot);
        newcomer.join().unwrap().unwrap();
        assert_eq!(workers.load(), (0, 0));
    }

    #[test]
    fn a_long_waiter_is_handed_the_freed_slot() {
        let mut workers = Workers::new(1, 10);
        workers.fair_after = Duration::ZERO;
        let workers = Arc::new(workers);
        let (slot, _) = workers.acquire(None).unwrap();
        let w = workers.clone();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let waiting = thread::spawn(move || {
            let (_slot, waited) = w.acquire(None).unwrap();
            // Held until the test has looked, however late this thread runs.
            released.recv().unwrap();
            waited
        });
        while workers.load().1 == 0 {
            thread::yield_now();
        }
        drop(slot);
        // Handed over at once: still busy and nobody waiting, whether or not the waiter has
        // run yet. Without the hand-over, a waiter that has not run yet leaves (0, 1).
        assert_eq!(workers.load(), (1, 0));
        release.send(()).unwrap();
        assert!(waiting.join().unwrap() > Duration::ZERO);
        assert_eq!(workers.load(), (0, 0));
    }

    #[test]
    fn many_threads_never_exceed_the_slots_and_all_get_one() {
        // Freed slots open to newcomers (no hand-over), and always handed over.
        for fair_after in [Duration::from_secs(3600), Duration::ZERO] {
            many_threads(fair_after);
        }
    }

    fn many_threads(fair_after: Duration) {
        let mut workers = Workers::new(3, 1000);
        workers.fair_after = fair_after;
        let workers = Arc::new(workers);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let (workers, running, peak) = (workers.clone(), running.clone(), peak.clone());
                thread::spawn(move || {
                    for _ in 0..50 {
                        let _slot = workers.acquire(None).unwrap();
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
        assert_eq!(workers.load(), (0, 0));
    }
}
