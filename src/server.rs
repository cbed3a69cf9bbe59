//! The HTTP server: the listening socket, tiny_http, a thread per request, caught panics,
//! request ids, metrics and the access log around each request, and graceful shutdown.
//!
//! tiny_http parses request heads on its own connection threads and queues the requests;
//! our request threads take them from that queue. The pool of request threads grows so that
//! one is always waiting for the next request: a request never waits for a thread, only —
//! in `workers` — for a slot to compute in.

use crate::access_log;
use crate::app::App;
use crate::conn_pool;
use crate::error::ApiError;
use crate::http::{BodyLimits, Request, Response};
use crate::limits;
use crate::rotation::Rotation;
use crate::routes;
use crate::starved::Starved;
use log::{debug, error, info, warn};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

/// How the server treats connections and requests.
#[derive(Clone, Debug)]
pub struct Settings {
    pub limits: BodyLimits,
    /// An idle connection, or a request that stops sending for this long, is closed.
    pub keep_alive_timeout: Option<Duration>,
    /// A response that cannot be written for this long is abandoned.
    pub write_timeout: Duration,
    /// Keep-alive connections older than about this are closed after their next response.
    pub max_connection_age: Option<Duration>,
    /// Upper bound on request threads; past it, requests wait in tiny_http's queue.
    pub max_threads: usize,
}

/// Creates the listening socket. Options set on it are inherited by every accepted socket:
/// `TCP_NODELAY` (so a response over 1 KiB does not wait ~40 ms for a delayed ACK) and the
/// send timeout; the receive timeout is set once the server has started (`Server::start`).
/// tiny_http 0.12 has no setting for either.
pub fn bind(addr: SocketAddr, settings: &Settings) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `--host ::` then serves IPv4 clients too, where the system allows it.
        let _ = socket.set_only_v6(false);
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_write_timeout(Some(settings.write_timeout))?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Something the process must react to.
#[derive(Debug)]
pub enum Event {
    /// SIGTERM or SIGINT: drain and exit.
    Shutdown(&'static str),
    /// The server cannot go on (tiny_http's accept thread died).
    Fatal(String),
}

pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    local_addr: SocketAddr,
    events: Receiver<Event>,
    events_tx: Sender<Event>,
}

struct Shared {
    app: Arc<App>,
    http: tiny_http::Server,
    settings: Settings,
    rotation: Rotation,
    starved: Arc<Starved>,
    request_ids: RequestIds,
    events: Sender<Event>,
    stopping: Arc<AtomicBool>,
    threads: AtomicUsize,
    idle_threads: AtomicUsize,
    keep_idle: usize,
    in_flight: AtomicUsize,
    started: Instant,
    /// Milliseconds since `started` when the last request began or ended.
    last_activity_ms: AtomicU64,
    warned_thread_cap: AtomicBool,
}

impl Server {
    /// Starts serving on `listener`. Requests are answered at once; predictions wait for
    /// `app`'s model (503 until it is loaded).
    pub fn start(app: Arc<App>, listener: TcpListener, settings: Settings) -> io::Result<Server> {
        let local_addr = listener.local_addr()?;
        let our_handle = listener.try_clone()?;
        let listener_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let http = tiny_http::Server::from_listener(listener, None).map_err(io::Error::other)?;
        let (events_tx, events) = channel();
        let keep_idle = (2 * app.workers.slots()).max(16);
        let shared = Arc::new(Shared {
            rotation: Rotation::new(settings.max_connection_age),
            starved: Arc::new(Starved::default()),
            request_ids: RequestIds::new(),
            events: events_tx.clone(),
            stopping: Arc::new(AtomicBool::new(false)),
            threads: AtomicUsize::new(0),
            idle_threads: AtomicUsize::new(0),
            keep_idle,
            in_flight: AtomicUsize::new(0),
            started: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            warned_thread_cap: AtomicBool::new(false),
            app,
            http,
            settings,
        });
        // Requests are answered while the pool is parked: a client that connects meanwhile
        // holds a pool thread until it has its answer, and the parked connection queued
        // behind it would wait for a thread until parking gave up (1 s).
        spawn_request_thread(&shared);
        let parked = conn_pool::park_idle_threads(local_addr)?;
        let accept_thread = conn_pool::find_accept_thread(listener_fd);
        if let Some(timeout) = shared.settings.keep_alive_timeout {
            let kept = accept_thread
                .clone()
                .and_then(|tid| conn_pool::keep_accept_alive(tid, listener_fd, timeout / 3));
            match kept {
                // From now on every accepted socket inherits the timeout.
                Ok(()) => SockRef::from(&our_handle).set_read_timeout(Some(timeout))?,
                Err(e) => warn!("idle connections will not be closed (--keep-alive-timeout): {e}"),
            }
        }
        shared.starved.watch(local_addr.port(), parked)?;
        watch_accept_thread(accept_thread, shared.stopping.clone(), events_tx.clone());
        spawn_idle_trimmer(&shared)?;
        Ok(Server {
            shared,
            listener: our_handle,
            local_addr,
            events,
            events_tx,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
        self.shared.app.start_draining();
        info!("{reason}: draining (up to {drain_timeout:?})");
        Ok(self.drain(drain_timeout))
    }

    fn drain(&self, timeout: Duration) -> bool {
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        // Closing our handle on the listening socket refuses new connections and ends
        // tiny_http's accept loop; connections already open are still served.
        if let Err(e) = SockRef::from(&self.listener).shutdown(Shutdown::Read) {
            warn!("could not stop listening: {e}");
        }
        // A request can sit in tiny_http's queue for a moment before a thread takes it:
        // wait for a short quiet spell with nothing in flight, not just for zero.
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

/// A dead accept thread leaves a port that takes connections into its backlog and never
/// answers: turn that into a fatal event, so the process exits and is restarted.
fn watch_accept_thread(
    accept_thread: Result<i32, String>,
    stopping: Arc<AtomicBool>,
    events: Sender<Event>,
) {
    let watched = accept_thread.and_then(|tid| {
        limits::watch_thread(tid, move || {
            if !stopping.load(Ordering::SeqCst) {
                let _ = events.send(Event::Fatal(
                    "tiny_http's accept thread died: the listener no longer accepts connections"
                        .into(),
                ));
            }
        })
        .map_err(|e| e.to_string())
    });
    if let Err(e) = watched {
        warn!("a dead listener will not be noticed: {e}");
    }
}

/// After a burst of requests, once the server has been idle for `IDLE_BEFORE_TRIM`, hands
/// the memory freed by their runs back to the system (`memory.rs`).
fn spawn_idle_trimmer(shared: &Arc<Shared>) -> io::Result<()> {
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
                    crate::memory::release_free_memory();
                    trimmed_at_ms = last_activity_ms;
                }
            }
        })?;
    Ok(())
}

fn spawn_request_thread(shared: &Arc<Shared>) {
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

fn request_loop(shared: Arc<Shared>) {
    loop {
        shared.idle_threads.fetch_add(1, Ordering::SeqCst);
        let received = shared.http.recv_timeout(IDLE_THREAD_LIFETIME);
        let idle = shared.idle_threads.fetch_sub(1, Ordering::SeqCst) - 1;
        match received {
            Ok(Some(request)) => {
                if idle == 0 {
                    // Keep one thread waiting for the next request.
                    spawn_request_thread(&shared);
                }
                shared.handle(request);
            }
            // Idle for a while: leave if enough others are waiting.
            Ok(None) if idle >= shared.keep_idle => break,
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

impl Shared {
    fn handle(&self, raw: tiny_http::Request) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        let received = Instant::now();
        let id = self.request_ids.for_request(raw.headers());
        let peer = raw.remote_addr().copied();
        let mut req = Request::new(raw, self.settings.limits, id, received);
        let metrics = &self.app.metrics;
        let in_flight = metrics.start_request();

        let mut response = match catch_unwind(AssertUnwindSafe(|| dispatch(&self.app, &mut req))) {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => Response::error(e, &req.id),
            Err(panic) => {
                let message = crate::panic_message(&*panic);
                error!("request {} panicked: {message}", req.id);
                metrics.panic_caught();
                let e = ApiError::internal(format!("internal error (request {})", req.id));
                Response::error(e, &req.id)
            }
        };
        self.app.cors.decorate(&req, &mut response);
        // Counted (and no longer in flight) before sending, so that a client holding its
        // answer sees it counted and not still in flight.
        metrics.record_request(req.route, response.status, received.elapsed());
        drop(in_flight);

        // A 499's client has sent its FIN or reset: the connection has no next request.
        let client_left = response.status == 499;
        let close = if self.app.is_draining() || req.wants_close() || client_left {
            self.rotation.forget(peer);
            true
        } else {
            // A wanted close is used up only by an answer that says it.
            self.rotation.should_close(peer, received)
                || (req.can_say_close() && self.starved.take_close())
        };
        // The access line goes out before the answer: once the answer is out, the client's
        // next request wakes tiny_http's threads, and work this thread still had to do then
        // cost a context switch: 11% of requests/s on the digits model, 3% written before
        // (README, Benchmarks). So its duration ends when the answer is ready to send; a
        // failed write is logged on its own (`Request::respond`).
        access_log::log(
            &req,
            response.status,
            response.body.len(),
            received.elapsed(),
        );
        req.respond(response, close);
        self.touch();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn accept_failed(&self, e: io::Error) {
        if self.stopping.load(Ordering::SeqCst) {
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

/// Matches the route, answers a CORS preflight, checks the API key (before the method, so
/// that a caller without the key learns nothing of the routes), then runs the handler.
fn dispatch(app: &App, req: &mut Request) -> Result<Response, ApiError> {
    let route = routes::find(req.path());
    req.route = route.as_ref().ok().map(|r| r.id);
    if let Some(preflight) = app.cors.preflight(req, req.route) {
        return preflight;
    }
    app.auth.check(req)?;
    let route = route?;
    let handler = route.handler_for(req.method(), req.method_text(), req.path())?;
    req.params = route.params;
    handler(app, req)
}

/// Request ids: the client's `X-Request-Id` when it is sane, else one of ours.
struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> RequestIds {
        // Unique enough across restarts and replicas to tell requests apart in logs.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = (std::process::id() as u64) << 32 | nanos as u64;
        RequestIds {
            prefix: format!("{:08x}", seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32),
            next: AtomicU64::new(1),
        }
    }

    fn for_request(&self, headers: &[tiny_http::Header]) -> String {
        if let Some(id) = crate::http::header(headers, "X-Request-Id")
            && !id.is_empty()
            && id.len() <= 128
            && id.bytes().all(|b| b.is_ascii_graphic())
        {
            return id.to_owned();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:06x}", self.prefix)
    }
}
