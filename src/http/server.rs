//! The request loop: the connections (`tiny`), a thread per request, and graceful
//! shutdown. What happens to each request is in `wrap.rs`.
//!
//! The HTTP layer parses request heads on its own connection threads and queues the
//! requests; our request threads take them from that queue. The pool of request threads
//! grows so that one is always waiting for the next request: a request never waits for a
//! thread, only — in the engine's admission line — for a slot to compute in.

use super::auth::Auth;
use super::cors::Cors;
use super::request::BodyLimits;
use super::request_id::RequestIds;
use super::rotation::Rotation;
use super::router::Router;
use super::tiny::{self, Connections};
use crate::ops::metrics::RequestMetrics;
use log::{debug, info, warn};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

/// How the server treats connections and requests.
#[derive(Clone, Debug)]
pub struct Settings {
    pub limits: BodyLimits,
    /// An idle connection, or a request that stops sending, is closed after this long.
    pub keep_alive_timeout: Option<Duration>,
    /// A response that cannot be written for this long is abandoned.
    pub write_timeout: Duration,
    /// Keep-alive connections older than about this are closed after their next response.
    pub max_connection_age: Option<Duration>,
    /// Upper bound on request threads; past it, requests wait in the HTTP layer's queue.
    pub max_threads: usize,
    /// Idle request threads kept waiting for requests; more exit after a while.
    pub idle_threads: usize,
}

/// Creates the listening socket (with the options every accepted socket inherits).
pub fn bind(addr: SocketAddr, settings: &Settings) -> io::Result<TcpListener> {
    tiny::bind(addr, settings.write_timeout)
}

/// What the server serves: the routes and the state their handlers share, who may call,
/// and where requests are counted.
pub struct Service<S: 'static> {
    pub state: Arc<S>,
    pub router: Router<S>,
    pub auth: Auth,
    pub cors: Cors,
    pub metrics: Arc<RequestMetrics>,
}

/// Something the process must react to.
#[derive(Debug)]
pub enum Event {
    /// SIGTERM or SIGINT: drain and exit.
    Shutdown(&'static str),
    /// The server cannot go on (the listener stopped accepting).
    Fatal(String),
}

/// Set once the server starts draining: readiness turns 503, every answer closes its
/// connection. Shared with whoever answers readiness.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub struct Server<S: Send + Sync + 'static> {
    shared: Arc<Shared<S>>,
    events: Receiver<Event>,
    events_tx: Sender<Event>,
}

/// What the request threads share.
pub(super) struct Shared<S: 'static> {
    pub(super) service: Service<S>,
    pub(super) connections: Connections,
    pub(super) settings: Settings,
    pub(super) rotation: Rotation,
    pub(super) request_ids: RequestIds,
    pub(super) draining: Draining,
    events: Sender<Event>,
    threads: AtomicUsize,
    idle_threads: AtomicUsize,
    in_flight: AtomicUsize,
    started: Instant,
    /// Milliseconds since `started` when the last request began or ended.
    last_activity_ms: AtomicU64,
    warned_thread_cap: AtomicBool,
}

impl<S: Send + Sync + 'static> Server<S> {
    /// Starts serving `service` on `listener` (made by `bind`). Requests are answered at
    /// once, whatever state the service is in; `draining` turns on at shutdown.
    pub fn start(
        service: Service<S>,
        listener: TcpListener,
        settings: Settings,
        draining: Draining,
    ) -> io::Result<Server<S>> {
        let connections = Connections::open(listener)?;
        let (events_tx, events) = channel();
        let shared = Arc::new(Shared {
            rotation: Rotation::new(settings.max_connection_age),
            request_ids: RequestIds::new(),
            events: events_tx.clone(),
            threads: AtomicUsize::new(0),
            idle_threads: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            started: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            warned_thread_cap: AtomicBool::new(false),
            service,
            connections,
            settings,
            draining,
        });
        // A thread takes requests before the connection work-arounds start (`protect`).
        spawn_request_thread(&shared);
        let dead = events_tx.clone();
        shared
            .connections
            .protect(shared.settings.keep_alive_timeout, move || {
                let _ = dead.send(Event::Fatal(
                    "the listener's accept thread died: it no longer accepts connections".into(),
                ));
            })?;
        spawn_idle_trimmer(&shared)?;
        Ok(Server {
            shared,
            events,
            events_tx,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.connections.local_addr()
    }

    /// A sender for events from outside: signal handlers, tests.
    pub fn events(&self) -> Sender<Event> {
        self.events_tx.clone()
    }

    /// Serves until a shutdown event, then drains: readiness turns 503, the listener stops
    /// accepting, and requests already received are answered (with `Connection: close`).
    /// Returns true when all of them finished within `drain_timeout`.
    pub fn serve_until_shutdown(self, drain_timeout: Duration) -> Result<bool, String> {
        let reason = match self.events.recv() {
            Ok(Event::Shutdown(reason)) => reason,
            Ok(Event::Fatal(message)) => return Err(message),
            Err(_) => "the event channel closed",
        };
        // Readiness turns 503 before the line says so, for whoever watches the log.
        self.shared.draining.start();
        info!("{reason}: draining (up to {drain_timeout:?})");
        Ok(self.drain(drain_timeout))
    }

    fn drain(&self, timeout: Duration) -> bool {
        let shared = &self.shared;
        shared.connections.stop_accepting();
        // A request can sit in the HTTP layer's queue for a moment before a thread takes
        // it: wait for a short quiet spell with nothing in flight, not just for zero.
        const QUIET: Duration = Duration::from_millis(100);
        let deadline = Instant::now() + timeout;
        loop {
            let in_flight = shared.in_flight.load(Ordering::SeqCst);
            if in_flight == 0 && shared.since_last_activity() >= QUIET {
                info!("drained; exiting");
                return true;
            }
            if Instant::now() >= deadline {
                warn!("{in_flight} request(s) still in flight after {timeout:?}; exiting anyway");
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// After a burst of requests, once the server has been idle for `IDLE_BEFORE_TRIM`, hands
/// the memory freed by their runs back to the system (`ops::memory`).
fn spawn_idle_trimmer<S: Send + Sync + 'static>(shared: &Arc<Shared<S>>) -> io::Result<()> {
    const IDLE_BEFORE_TRIM: Duration = Duration::from_secs(1);
    let shared = Arc::downgrade(shared);
    thread::Builder::new()
        .name("memory-trim".into())
        .spawn(move || {
            let mut trimmed_at_ms = 0;
            loop {
                thread::sleep(IDLE_BEFORE_TRIM / 2);
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let last_activity_ms = shared.last_activity_ms.load(Ordering::SeqCst);
                if last_activity_ms > trimmed_at_ms
                    && shared.in_flight.load(Ordering::SeqCst) == 0
                    && shared.since_last_activity() >= IDLE_BEFORE_TRIM
                {
                    crate::ops::memory::release_free_memory();
                    trimmed_at_ms = last_activity_ms;
                }
            }
        })?;
    Ok(())
}

fn spawn_request_thread<S: Send + Sync + 'static>(shared: &Arc<Shared<S>>) {
    let total = shared.threads.fetch_add(1, Ordering::SeqCst) + 1;
    if total > shared.settings.max_threads {
        shared.threads.fetch_sub(1, Ordering::SeqCst);
        if !shared.warned_thread_cap.swap(true, Ordering::Relaxed) {
            warn!(
                "{} request threads are busy; further requests wait for one",
                shared.settings.max_threads
            );
        }
        return;
    }
    let worker = shared.clone();
    let spawned = thread::Builder::new()
        .name("request".into())
        .spawn(move || request_loop(worker));
    if let Err(e) = spawned {
        shared.threads.fetch_sub(1, Ordering::SeqCst);
        warn!("could not start a request thread: {e}");
    }
}

fn request_loop<S: Send + Sync + 'static>(shared: Arc<Shared<S>>) {
    loop {
        shared.idle_threads.fetch_add(1, Ordering::SeqCst);
        let received = shared.connections.recv_timeout(IDLE_THREAD_LIFETIME);
        let idle = shared.idle_threads.fetch_sub(1, Ordering::SeqCst) - 1;
        match received {
            Ok(Some(exchange)) => {
                if idle == 0 {
                    // Keep one thread waiting for the next request.
                    spawn_request_thread(&shared);
                }
                shared.in_flight.fetch_add(1, Ordering::SeqCst);
                shared.touch();
                shared.handle(exchange);
                shared.touch();
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            // Idle for a while: leave if enough others are waiting.
            Ok(None) if idle >= shared.settings.idle_threads => break,
            Ok(None) => {}
            Err(e) => {
                shared.accept_failed(e);
                break;
            }
        }
    }
    shared.threads.fetch_sub(1, Ordering::SeqCst);
}

/// A request thread with nothing to do for this long exits, unless few are left.
const IDLE_THREAD_LIFETIME: Duration = Duration::from_secs(10);

impl<S> Shared<S> {
    fn accept_failed(&self, e: io::Error) {
        if self.connections.is_stopping() {
            debug!("listener closed: {e}");
        } else {
            let _ = self.events.send(Event::Fatal(format!(
                "the listener stopped accepting connections: {e}"
            )));
        }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_activity_ms.store(now, Ordering::SeqCst);
    }

    fn since_last_activity(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_activity_ms.load(Ordering::SeqCst)))
    }
}
