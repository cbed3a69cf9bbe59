//! Plans per input shape, for a model whose free input sizes tract cannot analyse: the
//! first request of a shape builds its plan (it pays the optimisation, which is logged),
//! the next ones find it here. At most `capacity` plans are kept, the least recently used
//! going first, and one plan is built at a time: a client cycling through sizes cannot make
//! the server build plans side by side, nor keep more than `capacity` of them. A shape
//! whose plan cannot be built is remembered too, so that it is not retried on every request.
//!
//! Building happens on the request's thread while it holds its worker slot (or in its batch
//! runner), so the admission line's limits apply to it as to a run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The shapes of a request's inputs, in the model's input order.
pub(super) type Shapes = Vec<Vec<usize>>;

pub(super) struct PlanCache<P> {
    capacity: usize,
    entries: Mutex<Entries<P>>,
    /// Held while a plan is built: one at a time.
    building: Mutex<()>,
    built: AtomicU64,
    build_nanos: AtomicU64,
}

struct Entries<P> {
    list: Vec<Entry<P>>,
    /// Counts lookups: an entry's `used` is the count at its last use.
    clock: u64,
}

struct Entry<P> {
    shapes: Shapes,
    plan: Result<Arc<P>, String>,
    used: u64,
}

/// What the cache has done so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanStats {
    /// Plans built (or found impossible) since start-up.
    pub built: u64,
    /// Time spent building them.
    pub building: Duration,
    /// Plans kept now.
    pub cached: usize,
}

impl<P> PlanCache<P> {
    pub(super) fn new(capacity: usize) -> PlanCache<P> {
        PlanCache {
            capacity: capacity.max(1),
            entries: Mutex::new(Entries {
                list: Vec::new(),
                clock: 0,
            }),
            building: Mutex::new(()),
            built: AtomicU64::new(0),
            build_nanos: AtomicU64::new(0),
        }
    }

    /// The plan for `shapes`, built with `build` on first use.
    pub(super) fn get_or_build(
        &self,
        shapes: &[Vec<usize>],
        build: impl FnOnce() -> Result<P, String>,
    ) -> Result<Arc<P>, String> {
        if let Some(plan) = self.find(shapes) {
            return plan;
        }
        let _building = lock(&self.building);
        // Another request may have built it while this one waited.
        if let Some(plan) = self.find(shapes) {
            return plan;
        }
        let started = Instant::now();
        let plan = build().map(Arc::new);
        let took = started.elapsed();
        self.built.fetch_add(1, Ordering::Relaxed);
        self.build_nanos.fetch_add(
            took.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
        match &plan {
            Ok(_) => log::info!("built a plan for input shapes {shapes:?} in {took:?}"),
            Err(e) => log::warn!("no plan for input shapes {shapes:?} ({took:?}): {e}"),
        }
        self.insert(shapes.to_vec(), plan.clone());
        plan
    }

    fn find(&self, shapes: &[Vec<usize>]) -> Option<Result<Arc<P>, String>> {
        let mut entries = lock(&self.entries);
        entries.clock += 1;
        let now = entries.clock;
        let entry = entries.list.iter_mut().find(|e| e.shapes == shapes)?;
        entry.used = now;
        Some(entry.plan.clone())
    }

    fn insert(&self, shapes: Shapes, plan: Result<Arc<P>, String>) {
        let mut entries = lock(&self.entries);
        if entries.list.len() >= self.capacity
            && let Some(oldest) = (0..entries.list.len()).min_by_key(|&ix| entries.list[ix].used)
        {
            entries.list.swap_remove(oldest);
        }
        entries.clock += 1;
        let used = entries.clock;
        entries.list.push(Entry { shapes, plan, used });
    }

    pub(super) fn stats(&self) -> PlanStats {
        PlanStats {
            built: self.built.load(Ordering::Relaxed),
            building: Duration::from_nanos(self.build_nanos.load(Ordering::Relaxed)),
            cached: lock(&self.entries).list.len(),
        }
    }
}

/// The cache's state is consistent between statements: a panic while it was held (in a
/// build, which runs without the entries' lock) leaves nothing half-done.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::thread;

    #[test]
    fn a_shape_is_built_once_and_the_least_recently_used_goes_first() {
        let cache = PlanCache::new(2);
        let builds = AtomicUsize::new(0);
        let get = |n: usize| {
            cache.get_or_build(&[vec![1, n]], || {
                builds.fetch_add(1, Ordering::SeqCst);
                Ok(n)
            })
        };
        assert_eq!(*get(1).unwrap(), 1);
        assert_eq!(*get(2).unwrap(), 2);
        assert_eq!(*get(1).unwrap(), 1, "cached");
        assert_eq!(builds.load(Ordering::SeqCst), 2);
        // A third shape evicts 2, the least recently used; 1 stays.
        assert_eq!(*get(3).unwrap(), 3);
        assert_eq!(*get(1).unwrap(), 1);
        assert_eq!(builds.load(Ordering::SeqCst), 3);
        assert_eq!(*get(2).unwrap(), 2);
        assert_eq!(builds.load(Ordering::SeqCst), 4);
        let stats = cache.stats();
        assert_eq!((stats.built, stats.cached), (4, 2));
    }

    #[test]
    fn a_shape_that_cannot_be_built_is_not_retried() {
        let cache = PlanCache::<usize>::new(4);
        let builds = AtomicUsize::new(0);
        for _ in 0..3 {
            let plan = cache.get_or_build(&[vec![7]], || {
                builds.fetch_add(1, Ordering::SeqCst);
                Err("no".into())
            });
            assert_eq!(plan, Err("no".into()));
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn plans_are_built_one_at_a_time_and_each_shape_once() {
        let cache = Arc::new(PlanCache::new(64));
        let building = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let builds = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (cache, building, most, builds) = (
                    cache.clone(),
                    building.clone(),
                    most.clone(),
                    builds.clone(),
                );
                thread::spawn(move || {
                    for shape in 0..8 {
                        let plan = cache.get_or_build(&[vec![shape]], || {
                            let now = building.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            builds.fetch_add(1, Ordering::SeqCst);
                            thread::sleep(Duration::from_millis(1));
                            building.fetch_sub(1, Ordering::SeqCst);
                            Ok(shape)
                        });
                        assert_eq!(*plan.unwrap(), shape, "thread {t}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert_eq!(builds.load(Ordering::SeqCst), 8);
    }
}
