//! A few threads that only run the model, one per worker slot, used once runs take long.
//!
//! glibc's malloc (like most) keeps memory freed by a thread for that thread's arena. A
//! request thread that runs a large model leaves a whole run's activations behind in its
//! arena, and runs move from thread to thread: on resnet50 with 64 clients the server held
//! 1.1-1.2 GB at peak, where the runs themselves need about 200 MB. Handing each run to one
//! of a fixed set of threads lets every run reuse the memory the previous run on that thread
//! freed: 0.34 GB at peak. It is faster too, the memory being warm in that core's caches:
//! squeezenet served 10-20% more requests/s at 16 clients (docs/benchmarks.md).
//!
//! The hand-off costs two thread wake-ups, about 20 µs of CPU: nothing next to a run of
//! milliseconds, a third of the requests/s of a model that runs in microseconds (the
//! bundled digits model). So a model runs on the request's own thread until its runs are
//! seen to take `LONG_RUN` or more (`RunTimes`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Runs at least this long (typically) go to the run threads.
pub const LONG_RUN: Duration = Duration::from_millis(2);

type Job = Box<dyn FnOnce() + Send>;

pub struct RunThreads {
    jobs: Sender<Job>,
}

impl RunThreads {
    /// Starts `count` threads. They end when the `RunThreads` is dropped.
    pub fn start(count: usize) -> std::io::Result<RunThreads> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..count.max(1) {
            let queue = queue.clone();
            thread::Builder::new()
                .name("run".into())
                .spawn(move || run_loop(&queue))?;
        }
        Ok(RunThreads { jobs })
    }

    /// Runs `job` on one of the threads and waits for its result; `None` if it panicked.
    pub fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (result_tx, result) = channel();
        let job: Job = Box::new(move || {
            let _ = result_tx.send(job());
        });
        self.jobs.send(job).ok()?;
        // A job that panicked drops its sender unsent.
        result.recv().ok()
    }
}

fn run_loop(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for a job, not while running it.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            // The thread outlives a panicking job; its caller learns of it (`run`).
            Ok(job) => drop(catch_unwind(AssertUnwindSafe(job))),
            Err(_) => return,
        }
    }
}

/// A running average of how long runs take, to tell long runs from short ones.
#[derive(Default)]
pub struct RunTimes {
    average_nanos: AtomicU64,
}

impl RunTimes {
    pub fn record(&self, took: Duration) {
        let took = took.as_nanos().min(u64::MAX as u128) as u64;
        // Racing updates may lose one sample: an average is all that is needed.
        let old = self.average_nanos.load(Ordering::Relaxed);
        let new = if old == 0 {
            took
        } else {
            old - old / 8 + took / 8
        };
        self.average_nanos.store(new, Ordering::Relaxed);
    }

    pub fn are_long(&self) -> bool {
        self.average_nanos.load(Ordering::Relaxed) >= LONG_RUN.as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_a_job_on_a_run_thread_and_survives_a_panic() {
        let threads = RunThreads::start(2).unwrap();
        let name = threads.run(|| thread::current().name().map(str::to_owned));
        assert_eq!(name, Some(Some("run".to_owned())));
        assert_eq!(threads.run(|| -> u32 { panic!("boom") }), None);
        assert_eq!(
            threads.run(|| 6 * 7),
            Some(42),
            "the threads still run jobs"
        );
    }

    #[test]
    fn runs_count_as_long_once_they_typically_take_long() {
        let times = RunTimes::default();
        assert!(!times.are_long(), "nothing seen yet");
        times.record(LONG_RUN * 3);
        assert!(times.are_long());
        for _ in 0..32 {
            times.record(Duration::from_micros(5));
        }
        assert!(!times.are_long(), "short runs pull the average down");
    }
}
