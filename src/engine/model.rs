//! The model as the rest of the server sees it: load it, admit a request to run it, run it,
//! and what its runs have cost so far.
//!
//! Three settings change how runs happen (`Model::with_execution`): the worker slots and
//! the line in front of them (`--workers`, `--queue`), a pool of threads one run may use
//! when it is the only one (`--intra-op-threads`), and dynamic batching (`batcher.rs`).
//! Once runs are seen to take milliseconds, they move to a thread per worker
//! (`run_threads.rs`), which reuses its memory.

use super::batcher::{BatchConfig, Batcher};
use super::error::{LoadError, RunError};
use super::plan_cache::{PlanCache, PlanStats};
use super::queue::{self, Caller, Refused};
use super::run_threads::{RunThreads, RunTimes};
use super::slots::{Slot, Slots};
use super::tract::{self, Carried, InputShape, IntraOpPool, Loaded, Plan, Read, Source};
use crate::ops::metrics::{Histogram, ROWS};
use crate::tensor::{ClassLabels, Signature, Tensor, describe_all};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct Model {
    runner: Arc<Runner>,
    signature: Signature,
    /// Its metadata and classifier labels, which the server names classes with.
    carried: Carried,
    load_time: Duration,
    /// The worker slots and their line; with batching, the batcher admits instead.
    slots: Slots,
    batcher: Option<Batcher>,
    /// Where long runs go when there is no batcher (whose runners are such threads).
    run_threads: Option<RunThreads>,
    /// How long predictions waited for a worker slot.
    queue_wait: Histogram,
    /// The machine's cores, read once (it reads cgroup files).
    cores: usize,
}

/// The plan(s), the threads they may use, and the statistics of its runs; shared with the
/// batch runners.
struct Runner {
    plans: Plans,
    /// `--intra-op-threads`: used by a run that starts while no other is running (a busy
    /// server is better off with one thread per run).
    intra_op: Option<IntraOpPool>,
    running: AtomicUsize,
    /// How long each run took: the model's metrics.
    run_seconds: Histogram,
    /// How long runs typically take: long ones go to the run threads.
    run_times: RunTimes,
    /// Rows per run, for a model with a batch dimension.
    batch_sizes: Option<Histogram>,
    panics: AtomicU64,
}

/// One plan for every request, or, for a model whose free input sizes tract cannot analyse,
/// a plan per input shape made on first use.
enum Plans {
    One(Plan),
    PerShape {
        source: Box<Source>,
        cache: PlanCache<Plan>,
    },
}

/// Plans kept for a model optimised per input shape, unless `--plan-cache` says otherwise.
const DEFAULT_PLAN_CACHE: usize = 16;

/// How runs are executed.
#[derive(Clone, Copy, Debug)]
pub struct Execution {
    /// Requests computing at once.
    pub workers: usize,
    /// Requests that may wait for a worker slot (or a batch).
    pub queue: usize,
    pub intra_op_threads: usize,
    pub batching: Option<BatchConfig>,
    /// Threads for long runs (one per worker slot); 0 runs every run on the caller's thread.
    pub run_threads: usize,
    /// Plans kept for a model optimised per input shape.
    pub plan_cache: usize,
}

impl Default for Execution {
    /// A slot per core, a line of 128, no batching, every run on the caller's thread.
    fn default() -> Execution {
        Execution {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue: 128,
            intra_op_threads: 1,
            batching: None,
            run_threads: 0,
            plan_cache: DEFAULT_PLAN_CACHE,
        }
    }
}

/// A request admitted to run: it holds a worker slot until dropped (with batching, the
/// batcher admits it into a batch instead, and this holds nothing).
pub struct Admitted<'a> {
    _slot: Option<Slot<'a>>,
}

impl Model {
    /// Loads, checks and optimises the ONNX file.
    pub fn load(path: &Path) -> Result<Model, LoadError> {
        Model::load_with(path, &[])
    }

    /// Like `load`, with some inputs given concrete shapes first (`--input-shape`).
    pub fn load_with(path: &Path, fixed: &[InputShape]) -> Result<Model, LoadError> {
        let started = Instant::now();
        Ok(Model::new(tract::load(path, fixed)?, started))
    }

    /// Like `load_with`, from the bytes of an ONNX file (the model built into the binary);
    /// `origin` names it in messages.
    pub fn load_bytes(
        bytes: &[u8],
        origin: &str,
        fixed: &[InputShape],
    ) -> Result<Model, LoadError> {
        let started = Instant::now();
        Ok(Model::new(
            tract::load_bytes(bytes, origin, fixed)?,
            started,
        ))
    }

    fn new(read: Read, started: Instant) -> Model {
        let Read {
            loaded,
            signature,
            carried,
        } = read;
        let execution = Execution::default();
        let plans = match loaded {
            Loaded::Optimised(plan) => Plans::One(plan),
            Loaded::PerShape { source, why } => {
                log::warn!(
                    "tract cannot analyse the model with free input sizes ({why}): a plan is \
                     built for each new input shape on its first request; --input-shape fixes \
                     them at start-up"
                );
                Plans::PerShape {
                    source: Box::new(source),
                    cache: PlanCache::new(DEFAULT_PLAN_CACHE),
                }
            }
        };
        Model {
            runner: Arc::new(Runner {
                plans,
                intra_op: None,
                running: AtomicUsize::new(0),
                run_seconds: Histogram::seconds(),
                run_times: RunTimes::default(),
                batch_sizes: signature.batch_dim().map(|_| Histogram::new(&ROWS)),
                panics: AtomicU64::new(0),
            }),
            signature,
            carried,
            load_time: started.elapsed(),
            slots: Slots::new(execution.workers, execution.queue),
            batcher: None,
            run_threads: None,
            queue_wait: Histogram::seconds(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Sets how runs are executed; called once, after loading. Batching needs every input
    /// and output to start with the same variable dimension (`batch_dim`).
    pub fn with_execution(mut self, execution: Execution) -> Result<Model, String> {
        let runner = Arc::get_mut(&mut self.runner)
            .ok_or("the execution of a model is set once, before it is shared")?;
        if execution.intra_op_threads > 1 {
            runner.intra_op = Some(IntraOpPool::new(execution.intra_op_threads));
        }
        if let Plans::PerShape { cache, .. } = &mut runner.plans {
            *cache = PlanCache::new(execution.plan_cache);
        }
        self.slots = Slots::new(execution.workers, execution.queue);
        if let Some(config) = execution.batching {
            if self.signature.batch_dim().is_none() {
                return Err(format!(
                    "--max-batch-size needs a model whose inputs and outputs all start with \
                     the same variable (batch) dimension; this one has inputs {} and outputs {}",
                    describe_all(&self.signature.inputs),
                    describe_all(&self.signature.outputs),
                ));
            }
            let runner = self.runner.clone();
            let batcher = Batcher::start(config, Box::new(move |inputs| runner.run(inputs)))
                .map_err(|e| format!("cannot start the batch runners: {e}"))?;
            self.batcher = Some(batcher);
        } else if execution.run_threads > 0 {
            let threads = RunThreads::start(execution.run_threads)
                .map_err(|e| format!("cannot start the run threads: {e}"))?;
            self.run_threads = Some(threads);
        }
        Ok(self)
    }

    /// Admits a request for `caller` to decode its body and run: it waits in line for a
    /// worker slot, and is refused when the line is full or its caller left meanwhile.
    /// With batching a request waiting for its batch must not hold a slot (or batches could
    /// never be larger than the number of slots): the batcher admits it on `run`.
    pub fn admit(&self, caller: Option<Caller>) -> Result<Admitted<'_>, Refused> {
        if self.batcher.is_some() {
            return Ok(Admitted { _slot: None });
        }
        let (slot, waited) = self.slots.acquire(caller)?;
        self.queue_wait.observe(waited);
        if queue::left_while_waiting(caller, waited) {
            return Err(Refused::CallerLeft);
        }
        Ok(Admitted { _slot: Some(slot) })
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The model's `metadata_props`, (key, value) in the file's order.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.carried.metadata
    }

    /// The class labels of the model's ONNX-ML classifier (LinearClassifier, SVMClassifier,
    /// TreeEnsembleClassifier), when it has exactly one.
    pub fn classifier_labels(&self) -> Option<&ClassLabels> {
        self.carried.classifier_labels.as_ref()
    }

    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The durations of the runs so far (tract's, and converting the tensors to and from it).
    pub fn run_seconds(&self) -> &Histogram {
        &self.runner.run_seconds
    }

    /// The rows in each run so far, for a model with a batch dimension.
    pub fn batch_sizes(&self) -> Option<&Histogram> {
        self.runner.batch_sizes.as_ref()
    }

    /// How long predictions waited for a worker slot.
    pub fn queue_wait(&self) -> &Histogram {
        &self.queue_wait
    }

    /// Requests holding a worker slot now, and requests waiting for one.
    pub fn occupancy(&self) -> (usize, usize) {
        self.slots.load()
    }

    /// For a model optimised per input shape, the plans built so far.
    pub fn plan_stats(&self) -> Option<PlanStats> {
        match &self.runner.plans {
            Plans::One(_) => None,
            Plans::PerShape { cache, .. } => Some(cache.stats()),
        }
    }

    /// Panics caught in tract so far.
    pub fn panics_caught(&self) -> u64 {
        self.runner.panics.load(Ordering::Relaxed)
    }

    /// How many threads a request may use to decode its body now: every core while no run
    /// is in flight, else one (a busy server is better off with one thread per request, as
    /// with `--intra-op-threads`).
    pub fn spare_threads(&self) -> usize {
        match self.runner.running.load(Ordering::Relaxed) {
            0 => self.cores,
            _ => 1,
        }
    }

    /// Runs the model once on zeros in the signature's shapes (free sizes as 1), before the
    /// first request: see `warm_up.rs`. On the caller's thread, with the intra-op threads if
    /// any, and not counted in the run metrics (it is no prediction). Returns how long it
    /// took.
    pub fn warm_up(&self) -> Result<Duration, RunError> {
        let inputs = super::warm_up::zero_inputs(&self.signature);
        let started = Instant::now();
        self.runner.run_as(inputs, Counted::No)?;
        Ok(started.elapsed())
    }

    /// Runs the model on tensors given in the model's input order, already checked against
    /// the signature, for `caller` (None outside HTTP). Returns the outputs in the model's
    /// output order. With batching on, the run is part of a batch and these are this
    /// request's rows; a request whose caller leaves while it waits for its batch is left
    /// out of it (`RunError::CallerLeft`).
    pub fn run(
        &self,
        inputs: Vec<Tensor>,
        caller: Option<Caller>,
    ) -> Result<Vec<Tensor>, RunError> {
        match &self.batcher {
            Some(batcher) => batcher.run(inputs, caller),
            None => match &self.run_threads {
                Some(threads) if self.runner.run_times.are_long() => {
                    let runner = self.runner.clone();
                    threads.run(move || runner.run(inputs)).unwrap_or_else(|| {
                        Err(RunError::Panicked("outside tract, on a run thread".into()))
                    })
                }
                _ => self.runner.run(inputs),
            },
        }
    }
}

/// Whether a run counts in the run metrics (and in the run times that send long runs to the
/// run threads): a warm-up run does not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counted {
    Yes,
    No,
}

impl Runner {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
        self.run_as(inputs, Counted::Yes)
    }

    fn run_as(&self, inputs: Vec<Tensor>, counted: Counted) -> Result<Vec<Tensor>, RunError> {
        let counted = counted == Counted::Yes;
        if let (true, Some(histogram), Some(rows)) =
            (counted, &self.batch_sizes, batch_rows(&inputs))
        {
            histogram.observe_value(rows as u64);
        }
        let shaped;
        let plan = match &self.plans {
            Plans::One(plan) => plan,
            Plans::PerShape { source, cache } => {
                let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape.clone()).collect();
                // A build may panic inside tract as a run may.
                let built = catch_unwind(AssertUnwindSafe(|| {
                    cache.get_or_build(&shapes, || source.plan_for(&shapes))
                }))
                .map_err(|panic| {
                    self.panics.fetch_add(1, Ordering::Relaxed);
                    RunError::Panicked(crate::panic_message(&*panic))
                })?;
                shaped = built.map_err(|e| {
                    RunError::Failed(format!(
                        "tract cannot run the model on inputs of shapes {shapes:?}: {e}"
                    ))
                })?;
                &*shaped
            }
        };
        let alone = self.running.fetch_add(1, Ordering::SeqCst) == 0;
        let pool = self.intra_op.as_ref().filter(|_| alone);
        let started = Instant::now();
        let run = catch_unwind(AssertUnwindSafe(|| plan.run(inputs, pool)));
        let took = started.elapsed();
        if counted {
            self.run_seconds.observe(took);
            self.run_times.record(took);
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        run.map_err(|panic| {
            self.panics.fetch_add(1, Ordering::Relaxed);
            RunError::Panicked(crate::panic_message(&*panic))
        })?
        .map_err(RunError::Failed)
    }
}

/// The rows of a run: the first dimension of its first input (the batch dimension, for a
/// model that has one).
fn batch_rows(inputs: &[Tensor]) -> Option<usize> {
    inputs.first()?.shape.first().copied()
}
