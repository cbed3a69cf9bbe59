//! Dynamic batching (`--max-batch-size`, `--batch-delay-us`): concurrent requests to a model
//! whose inputs and outputs all start with the same variable (batch) dimension are stacked
//! into one run and split back, each caller getting exactly its own rows.
//!
//! A fixed set of runner threads (one per worker) takes the waiting requests. A runner that
//! finds requests waiting takes as many as fit in `max_rows`, all with the same shape past
//! the batch dimension, in arrival order. While every runner is busy, requests pile up and
//! the next batch is larger: under load batches grow by themselves, and a lone request runs
//! at once. `delay` lets a runner wait a little for more requests before it starts a batch
//! that is not full, trading that much latency for larger batches. Requests wait in the
//! admission line (`queue.rs`): a request that waited long and whose caller has left
//! meanwhile is left out of its batch, and a full line makes room for a newcomer by turning
//! such requests away first.

use super::error::RunError;
use super::queue::{self, Caller, Line};
use crate::tensor::Tensor;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How batches are formed.
#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    /// Rows (items along the batch dimension) in one run, at most.
    pub max_rows: usize,
    /// How long a runner may wait for more requests before it runs a batch that is not full.
    pub delay: Duration,
    /// Runner threads: batches running at once.
    pub runners: usize,
    /// Requests that may wait for a runner; past that, `RunError::Busy`.
    pub max_waiting: usize,
}

/// Runs the model on a batch: the same contract as `Model::run`.
pub type RunFn = dyn Fn(Vec<Tensor>) -> Result<Vec<Tensor>, RunError> + Send + Sync;

pub struct Batcher {
    shared: Arc<Shared>,
}

struct Shared {
    config: BatchConfig,
    run: Box<RunFn>,
    line: Mutex<Line<Waiting>>,
    arrived: Condvar,
}

/// A request waiting for a runner.
struct Waiting {
    inputs: Vec<Tensor>,
    rows: usize,
    arrived: Instant,
    caller: Option<Caller>,
    /// The `delay` a batch may wait on purpose, which does not count as waiting.
    delay: Duration,
    reply: SyncSender<Result<Vec<Tensor>, RunError>>,
}

impl queue::Waiter for Waiting {
    fn caller(&self) -> Option<Caller> {
        self.caller
    }

    fn since(&self) -> Instant {
        self.arrived
    }

    fn waited(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.arrived)
            .saturating_sub(self.delay)
    }

    fn turn_away(self) {
        let _ = self.reply.send(Err(RunError::CallerLeft));
    }
}

impl Batcher {
    /// Starts the runner threads.
    pub fn start(config: BatchConfig, run: Box<RunFn>) -> std::io::Result<Batcher> {
        let shared = Arc::new(Shared {
            config,
            run,
            line: Mutex::new(Line::new(config.max_waiting)),
            arrived: Condvar::new(),
        });
        for n in 0..config.runners.max(1) {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("batch-{n}"))
                .spawn(move || shared.runner_loop())?;
        }
        Ok(Batcher { shared })
    }

    /// Runs `inputs` (already checked against the signature, batch dimension first) as part
    /// of a batch, and returns this request's own rows of the outputs.
    pub fn run(
        &self,
        inputs: Vec<Tensor>,
        caller: Option<Caller>,
    ) -> Result<Vec<Tensor>, RunError> {
        let shared = &self.shared;
        let rows = inputs.first().and_then(|t| t.shape.first()).copied();
        let rows = match rows {
            // Nothing to stack with: run it alone, here.
            None | Some(0) => return (shared.run)(inputs),
            Some(rows) => rows,
        };
        let (reply, answer) = sync_channel(1);
        {
            let mut line = shared.lock();
            if line.is_full() {
                line = queue::make_room(&shared.line, line, |line| line);
                if line.is_full() {
                    return Err(RunError::Busy(line.busy()));
                }
            }
            line.waiting.push_back(Waiting {
                inputs,
                rows,
                arrived: Instant::now(),
                caller,
                delay: shared.config.delay,
                reply,
            });
        }
        shared.arrived.notify_one();
        answer.recv().unwrap_or_else(|_| {
            Err(RunError::Failed(
                "the batch this request was part of was lost".into(),
            ))
        })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Line<Waiting>> {
        queue::relock(&self.line)
    }

    fn runner_loop(&self) {
        loop {
            let batch = self.next_batch();
            // Our own code between the model and the callers must not take the runner down
            // with it; the callers of a batch lost this way get an error (their senders drop).
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.execute(batch))) {
                log::error!("a batch runner panicked: {}", crate::panic_message(&*panic));
            }
        }
    }

    /// Waits for requests, lets more arrive for up to `delay`, and takes a batch.
    fn next_batch(&self) -> Vec<Waiting> {
        let config = self.config;
        let mut line = self.lock();
        loop {
            while line.waiting.is_empty() {
                line = self.arrived.wait(line).unwrap_or_else(|p| p.into_inner());
            }
            let deadline = line.waiting[0].arrived + config.delay;
            while !line.waiting.is_empty() && rows(&line.waiting) < config.max_rows {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                line = self
                    .arrived
                    .wait_timeout(line, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            // Another runner may have taken them while this one waited.
            if !line.waiting.is_empty() {
                let batch = take_batch(&mut line.waiting, config.max_rows);
                if !line.waiting.is_empty() {
                    // More are waiting: let another runner start on them.
                    self.arrived.notify_one();
                }
                return batch;
            }
        }
    }

    fn execute(&self, batch: Vec<Waiting>) {
        let batch = without_callers_gone(batch);
        if batch.is_empty() {
            return;
        }
        if let [_] = batch.as_slice() {
            let one = batch.into_iter().next().expect("one request");
            let _ = one.reply.send((self.run)(one.inputs));
            return;
        }
        let counts: Vec<usize> = batch.iter().map(|w| w.rows).collect();
        log::debug!(
            "running a batch of {} rows from {} requests",
            counts.iter().sum::<usize>(),
            counts.len()
        );
        let mut replies = Vec::with_capacity(batch.len());
        let mut stacked: Option<Vec<Tensor>> = None;
        for waiting in batch {
            replies.push(waiting.reply);
            match &mut stacked {
                None => stacked = Some(waiting.inputs),
                Some(stacked) => {
                    for (into, tensor) in stacked.iter_mut().zip(waiting.inputs) {
                        into.append_rows(tensor);
                    }
                }
            }
        }
        let outputs = (self.run)(stacked.unwrap_or_default());
        match outputs.and_then(|outputs| split(outputs, &counts)) {
            Ok(per_request) => {
                for (reply, outputs) in replies.into_iter().zip(per_request) {
                    let _ = reply.send(Ok(outputs));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The batch less the requests whose caller left while they waited, which are answered
/// at once. Asked outside the lock: a look may cost a pass over descriptors.
fn without_callers_gone(batch: Vec<Waiting>) -> Vec<Waiting> {
    use queue::Waiter;
    batch
        .into_iter()
        .filter_map(|waiting| {
            let waited = waiting.waited(Instant::now());
            if queue::left_while_waiting(waiting.caller, waited) {
                waiting.turn_away();
                None
            } else {
                Some(waiting)
            }
        })
        .collect()
}

fn rows(waiting: &VecDeque<Waiting>) -> usize {
    waiting.iter().map(|w| w.rows).sum()
}

/// The shape of each input past the batch dimension: only requests that agree on it can be
/// stacked.
fn inner_shapes(inputs: &[Tensor]) -> impl Iterator<Item = &[usize]> {
    inputs.iter().map(|t| t.shape.get(1..).unwrap_or_default())
}

/// Takes the first waiting request and, in arrival order, every later one that has the same
/// inner shapes and still fits in `max_rows`. The others keep their places.
fn take_batch(waiting: &mut VecDeque<Waiting>, max_rows: usize) -> Vec<Waiting> {
    let first = waiting.pop_front().expect("a request is waiting");
    let mut rows = first.rows;
    let mut batch = vec![first];
    let mut ix = 0;
    while ix < waiting.len() && rows < max_rows {
        let candidate = &waiting[ix];
        let fits = rows + candidate.rows <= max_rows
            && inner_shapes(&candidate.inputs).eq(inner_shapes(&batch[0].inputs));
        if fits {
            rows += candidate.rows;
            batch.extend(waiting.remove(ix));
        } else {
            ix += 1;
        }
    }
    batch
}

/// Splits each output along its first dimension into `counts` rows per request.
fn split(outputs: Vec<Tensor>, counts: &[usize]) -> Result<Vec<Vec<Tensor>>, RunError> {
    let total: usize = counts.iter().sum();
    let mut per_request: Vec<Vec<Tensor>> = counts.iter().map(|_| Vec::new()).collect();
    for output in outputs {
        if output.shape.first() != Some(&total) {
            return Err(RunError::Failed(format!(
                "a batch of {total} rows gave an output of shape {:?}, which cannot be split \
                 back into requests",
                output.shape
            )));
        }
        for (mine, part) in per_request.iter_mut().zip(output.split_rows(counts)) {
            mine.push(part);
        }
    }
    Ok(per_request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn rows_of(values: &[i64], width: usize) -> Tensor {
        Tensor::new(
            vec![values.len() / width, width],
            TensorData::Int64(values.to_vec()),
        )
        .unwrap()
    }

    /// A "model" that doubles its input and records the batch sizes it saw.
    fn doubler(config: BatchConfig, seen: Arc<Mutex<Vec<usize>>>) -> Batcher {
        Batcher::start(
            config,
            Box::new(move |inputs: Vec<Tensor>| {
                let input = &inputs[0];
                seen.lock().unwrap().push(input.shape[0]);
                // Long enough for concurrent callers to pile up behind a busy runner.
                thread::sleep(Duration::from_millis(20));
                let TensorData::Int64(values) = &input.data else {
                    unreachable!()
                };
                let doubled = values.iter().map(|v| v * 2).collect();
                Ok(vec![
                    Tensor::new(input.shape.clone(), TensorData::Int64(doubled)).unwrap(),
                ])
            }),
        )
        .unwrap()
    }

    #[test]
    fn concurrent_callers_are_batched_and_get_exactly_their_rows() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let config = BatchConfig {
            max_rows: 64,
            delay: Duration::from_millis(5),
            runners: 1,
            max_waiting: 1000,
        };
        let batcher = Arc::new(doubler(config, seen.clone()));
        let done = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..24)
            .map(|caller| {
                let batcher = batcher.clone();
                let done = done.clone();
                thread::spawn(move || {
                    // Callers send 1, 2 or 3 rows of width 2, with values that name them.
                    let n = 1 + caller % 3;
                    let values: Vec<i64> = (0..n * 2).map(|i| (caller * 100 + i) as i64).collect();
                    let out = batcher.run(vec![rows_of(&values, 2)], None).unwrap();
                    let doubled: Vec<i64> = values.iter().map(|v| v * 2).collect();
                    assert_eq!(out[0].shape, vec![n, 2]);
                    assert_eq!(out[0].data, TensorData::Int64(doubled));
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 24);
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.iter().sum::<usize>(),
            (0..24).map(|c: usize| 1 + c % 3).sum::<usize>()
        );
        assert!(
            seen.iter().any(|&rows| rows > 3),
            "some runs stacked several callers: {seen:?}"
        );
        assert!(seen.iter().all(|&rows| rows <= 64), "{seen:?}");
    }

    #[test]
    fn batches_hold_at_most_max_rows_and_only_equal_inner_shapes() {
        let (tx, _rx) = sync_channel(1);
        let waiting = |rows: usize, width: usize| Waiting {
            inputs: vec![rows_of(&vec![0; rows * width], width)],
            rows,
            arrived: Instant::now(),
            caller: None,
            delay: Duration::ZERO,
            reply: tx.clone(),
        };
        let mut queue: VecDeque<Waiting> = [
            waiting(2, 3),
            waiting(1, 4),
            waiting(3, 3),
            waiting(4, 3),
            waiting(1, 3),
        ]
        .into();
        let batch = take_batch(&mut queue, 6);
        let taken: Vec<usize> = batch.iter().map(|w| w.rows).collect();
        assert_eq!(taken, vec![2, 3, 1]);
        let left: Vec<usize> = queue.iter().map(|w| w.rows).collect();
        assert_eq!(left, vec![1, 4]);
    }

    /// A caller that has left.
    fn gone() -> Caller {
        Caller::new(std::net::SocketAddr::from(([127, 0, 0, 1], 1)), |_, _| true)
    }

    #[test]
    fn a_request_whose_caller_left_while_it_waited_is_left_out_of_its_batch() {
        let gone = gone();

        let seen = Arc::new(Mutex::new(Vec::new()));
        let config = BatchConfig {
            max_rows: 64,
            delay: Duration::ZERO,
            runners: 1,
            max_waiting: 100,
        };
        let runs = seen.clone();
        let batcher = Arc::new(
            Batcher::start(
                config,
                Box::new(move |inputs: Vec<Tensor>| {
                    runs.lock().unwrap().push(inputs[0].shape[0]);
                    // Longer than `queue::ASK_AFTER`, for the request behind it.
                    thread::sleep(3 * queue::ASK_AFTER);
                    Ok(inputs)
                }),
            )
            .unwrap(),
        );
        // One request keeps the only runner busy...
        let first = {
            let batcher = batcher.clone();
            thread::spawn(move || batcher.run(vec![rows_of(&[1, 2], 2)], None))
        };
        while seen.lock().unwrap().is_empty() {
            thread::sleep(Duration::from_millis(1));
        }
        // ...while this one waits for the next batch, its client gone.
        let left = batcher.run(vec![rows_of(&[3, 4, 5, 6], 2)], Some(gone));
        assert!(matches!(left, Err(RunError::CallerLeft)), "{left:?}");
        assert_eq!(first.join().unwrap().unwrap()[0].shape, vec![1, 2]);
        assert_eq!(*seen.lock().unwrap(), vec![1], "only the first request ran");
    }

    #[test]
    fn a_full_queue_makes_room_by_dropping_a_request_whose_caller_left() {
        use std::sync::mpsc::channel;
        let gone = gone();

        let seen = Arc::new(Mutex::new(Vec::new()));
        let (finish_first, first_may_finish) = channel::<()>();
        let first_may_finish = Mutex::new(first_may_finish);
        let config = BatchConfig {
            max_rows: 64,
            delay: Duration::ZERO,
            runners: 1,
            max_waiting: 1,
        };
        let runs = seen.clone();
        let batcher = Arc::new(
            Batcher::start(
                config,
                Box::new(move |inputs: Vec<Tensor>| {
                    let first = {
                        let mut runs = runs.lock().unwrap();
                        runs.push(inputs[0].shape[0]);
                        runs.len() == 1
                    };
                    if first {
                        let _ = first_may_finish.lock().unwrap().recv();
                    }
                    Ok(inputs)
                }),
            )
            .unwrap(),
        );
        let run_in_thread = |values: &[i64], client| {
            let (batcher, inputs) = (batcher.clone(), vec![rows_of(values, 2)]);
            thread::spawn(move || batcher.run(inputs, client))
        };
        // The first request holds the only runner; one whose client is gone fills the queue.
        let first = run_in_thread(&[1, 2], None);
        while seen.lock().unwrap().is_empty() {
            thread::sleep(Duration::from_millis(1));
        }
        let left = run_in_thread(&[3, 4], Some(gone));
        while batcher.shared.lock().waiting.is_empty() {
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(queue::ASK_AFTER + Duration::from_millis(5));
        // A newcomer takes its place rather than being refused.
        let newcomer = run_in_thread(&[5, 6, 7, 8], None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !left.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        // Answered while the first request still runs (or, failing, once it has run).
        finish_first.send(()).unwrap();
        let left = left.join().unwrap();
        assert!(matches!(left, Err(RunError::CallerLeft)), "{left:?}");
        assert_eq!(first.join().unwrap().unwrap()[0].shape, vec![1, 2]);
        assert_eq!(newcomer.join().unwrap().unwrap()[0].shape, vec![2, 2]);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![1, 2],
            "the request whose client left never ran"
        );
    }

    #[test]
    fn a_full_queue_is_refused_and_a_failed_run_fails_every_caller() {
        let config = BatchConfig {
            max_rows: 8,
            delay: Duration::ZERO,
            runners: 1,
            max_waiting: 0,
        };
        let batcher = Batcher::start(config, Box::new(|_| Ok(vec![]))).unwrap();
        let err = batcher.run(vec![rows_of(&[1, 2], 2)], None).unwrap_err();
        assert!(matches!(err, RunError::Busy(_)), "{err:?}");

        let err = split(vec![rows_of(&[1, 2, 3, 4], 2)], &[1, 2]).unwrap_err();
        assert!(matches!(err, RunError::Failed(m) if m.contains("cannot be split")));
    }
}
