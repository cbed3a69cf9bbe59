//! How many requests compute at once (`--workers`), and the bounded queue in front of them
//! (`--queue`).
//!
//! Every request has its own thread, which reads the request body; only the CPU work —
//! decoding, inference, encoding — needs a worker slot. A request that finds all slots taken
//! waits in a FIFO queue; when the queue is full it is refused at once (503), rather than
//! joining an ever longer wait. A freed slot is handed directly to the longest waiter, so
//! latecomers cannot overtake it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

pub struct Workers {
    slots: usize,
    max_waiting: usize,
    state: Mutex<State>,
}

struct State {
    busy: usize,
    waiting: VecDeque<Arc<Waiter>>,
}

struct Waiter {
    thread: Thread,
    granted: AtomicBool,
}

/// Why a request could not get a worker.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull {
    pub waiting: usize,
}

impl Workers {
    pub fn new(slots: usize, max_waiting: usize) -> Workers {
        Workers {
            slots: slots.max(1),
            max_waiting,
            state: Mutex::new(State {
                busy: 0,
                waiting: VecDeque::new(),
            }),
        }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Takes a slot, waiting in line for one if needed. The slot is given back when the
    /// returned guard is dropped. Also returns how long the request waited.
    pub fn acquire(&self) -> Result<(Slot<'_>, Duration), QueueFull> {
        let start = Instant::now();
        let waiter = {
            let mut state = self.lock();
            if state.busy < self.slots && state.waiting.is_empty() {
                state.busy += 1;
                return Ok((Slot { workers: self }, Duration::ZERO));
            }
            if state.waiting.len() >= self.max_waiting {
                return Err(QueueFull {
                    waiting: state.waiting.len(),
                });
            }
            let waiter = Arc::new(Waiter {
                thread: thread::current(),
                granted: AtomicBool::new(false),
            });
            state.waiting.push_back(waiter.clone());
            waiter
        };
        // `park` may wake spuriously; the flag says when the slot is really ours.
        while !waiter.granted.load(Ordering::Acquire) {
            thread::park();
        }
        Ok((Slot { workers: self }, start.elapsed()))
    }

    /// Requests computing now, and requests waiting for a slot.
    pub fn load(&self) -> (usize, usize) {
        let state = self.lock();
        (state.busy, state.waiting.len())
    }

    fn release(&self) {
        let mut state = self.lock();
        match state.waiting.pop_front() {
            // The slot passes straight to the first waiter: `busy` stays the same.
            Some(next) => {
                next.granted.store(true, Ordering::Release);
                next.thread.unpark();
            }
            None => state.busy -= 1,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
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
        let (a, _) = workers.acquire().unwrap();
        let (b, _) = workers.acquire().unwrap();
        assert_eq!(workers.load(), (2, 0));

        // A third request waits; a fourth finds the queue full.
        let w = workers.clone();
        let waiting = thread::spawn(move || {
            let (_slot, waited) = w.acquire().unwrap();
            waited
        });
        while workers.load().1 == 0 {
            thread::yield_now();
        }
        assert_eq!(workers.acquire().err(), Some(QueueFull { waiting: 1 }));

        drop(a);
        assert!(waiting.join().unwrap() > Duration::ZERO);
        drop(b);
        assert_eq!(workers.load(), (0, 0));
    }

    #[test]
    fn many_threads_never_exceed_the_slots() {
        let workers = Arc::new(Workers::new(3, 1000));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let (workers, running, peak) = (workers.clone(), running.clone(), peak.clone());
                thread::spawn(move || {
                    for _ in 0..50 {
                        let _slot = workers.acquire().unwrap();
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
