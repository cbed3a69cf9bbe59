//! The one door to tiny_http 0.12.0: everything that knows its types or its internals is
//! in this folder, behind `Connections` (tiny_http serving our listener, with the
//! work-arounds below running), `Exchange` (one request and its answer), `bind`,
//! `client_left` and `raise_open_files_limit`. Changing the HTTP layer should touch only
//! this folder and `http/`. Cargo.toml pins tiny_http exactly: the work-arounds read its
//! internals (its pool's size, its threads' system calls).
//!
//! tiny_http 0.12's defects, and what we do about them (docs/robustness.md has the tests):
//!
//! | defect | consequence | here |
//! |---|---|---|
//! | never sets `TCP_NODELAY`, writes the head through its own 1 KiB buffer | a response over 1 KiB waits ~40 ms for the client's delayed ACK | `bind` sets `TCP_NODELAY` on our listener (accepted sockets inherit it); `Exchange::send` writes head and body at once |
//! | drops a `Connection: close` header, writes its own `Server` banner | we cannot close a connection when we mean to | `Exchange::send` writes our own head |
//! | no read timeouts | an idle or stalled connection holds a thread forever | the listener's `SO_RCVTIMEO`, inherited by accepted sockets (`--keep-alive-timeout`) |
//! | that timeout also applies to its `accept()`, and the accept loop ends at its first error | the server stops accepting after one idle timeout | `accept.rs` interrupts the accept thread before it times out |
//! | an accept error (`EMFILE`) or a failed thread spawn ends the accept thread for good | the port takes connections into its backlog and never answers | `limits.rs` raises the open-file limit; the watchdog in `accept.rs` reports the dead thread, and the process exits for its supervisor |
//! | its pool starts with 4 idle threads and queues a new connection for any thread that counts as idle; each keeps its thread while kept alive | a burst of keep-alive clients gets no answer for as long as the first ones stay | `pool.rs` parks the 4 permanent threads at start-up; `starved.rs` finds connections left unread and frees threads for them |
//! | handlers never see the socket | a request cannot tell whether its client is still there | `client_gone.rs` finds the connection among our descriptors by the client's address and reads its TCP state |
//! | an unread body with a huge declared `Content-Length` is drained into a buffer of that size | beyond the machine's memory the allocation fails and the process aborts | the body limit answers 413 before reading; the abort itself is out of reach: the reverse proxy refuses such bodies (docs/deploy.md) |
//! | an `HTTP/2.0` request line deadlocks its connection thread; heads have no size limit; connection threads have no cap | leaked threads and descriptors | out of reach: the reverse proxy (docs/deploy.md) |

mod accept;
mod client_gone;
mod exchange;
mod limits;
mod pool;
mod procfs;
mod starved;

pub use client_gone::client_left;
pub use exchange::Exchange;
pub use limits::{OpenFiles, raise_open_files_limit};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use starved::Starved;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Creates the listening socket. Options set on it are inherited by every accepted socket:
/// `TCP_NODELAY` and the send timeout; the receive timeout is set once the server has
/// started (`Connections::protect`).
pub fn bind(addr: SocketAddr, write_timeout: Duration) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `--host ::` then serves IPv4 clients too, where the system allows it.
        let _ = socket.set_only_v6(false);
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_write_timeout(Some(write_timeout))?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// tiny_http accepting and reading connections on our listener.
pub struct Connections {
    server: tiny_http::Server,
    /// Our own handle on the listening socket, to set its timeout and to stop it.
    listener: TcpListener,
    listener_fd: RawFd,
    local_addr: SocketAddr,
    starved: Arc<Starved>,
    stopping: Arc<AtomicBool>,
}

impl Connections {
    /// Starts tiny_http on `listener` (made by `bind`). Requests can be received at once;
    /// call `protect` once a thread is receiving them.
    pub fn open(listener: TcpListener) -> io::Result<Connections> {
        let local_addr = listener.local_addr()?;
        let ours = listener.try_clone()?;
        let listener_fd = listener.as_raw_fd();
        let server = tiny_http::Server::from_listener(listener, None).map_err(io::Error::other)?;
        Ok(Connections {
            server,
            listener: ours,
            listener_fd,
            local_addr,
            starved: Arc::new(Starved::default()),
            stopping: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Starts the work-arounds: parks tiny_http's idle pool threads, closes connections idle
    /// for `keep_alive_timeout` (None: never) while keeping `accept()` alive, watches for
    /// starved connections, and calls `on_dead` if the accept thread dies before
    /// `stop_accepting`. Requests must be received meanwhile: a client that connects while
    /// the pool is parked holds a pool thread until it has its answer, and the parked
    /// connection queued behind it would wait for a thread until parking gave up (1 s).
    /// What cannot be set up is logged, and the server runs without it.
    pub fn protect(
        &self,
        keep_alive_timeout: Option<Duration>,
        on_dead: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        let parked = pool::park_idle_threads(self.local_addr)?;
        let accept_thread = accept::find_accept_thread(self.listener_fd);
        if let Some(timeout) = keep_alive_timeout {
            let kept = accept_thread
                .clone()
                .and_then(|tid| accept::keep_accept_alive(tid, self.listener_fd, timeout / 3));
            match kept {
                // From now on every accepted socket inherits the timeout.
                Ok(()) => SockRef::from(&self.listener).set_read_timeout(Some(timeout))?,
                Err(e) => {
                    log::warn!("idle connections will not be closed (--keep-alive-timeout): {e}")
                }
            }
        }
        self.starved.watch(self.local_addr.port(), parked)?;
        let stopping = self.stopping.clone();
        let watched = accept_thread.and_then(|tid| {
            accept::watch_thread(tid, move || {
                if !stopping.load(Ordering::SeqCst) {
                    on_dead();
                }
            })
            .map_err(|e| e.to_string())
        });
        if let Err(e) = watched {
            log::warn!("a dead listener will not be noticed: {e}");
        }
        Ok(())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next request, waiting up to `timeout`. An error means the listener has stopped
    /// accepting (`is_stopping` tells whether on purpose).
    pub fn recv_timeout(&self, timeout: Duration) -> io::Result<Option<Exchange>> {
        Ok(self.server.recv_timeout(timeout)?.map(Exchange::new))
    }

    /// True when the connection of the answer being sent should close, to free its thread
    /// for a starved connection; each true uses up one such wish.
    pub fn take_close(&self) -> bool {
        self.starved.take_close()
    }

    /// Refuses new connections and ends tiny_http's accept loop; connections already open
    /// are still served.
    pub fn stop_accepting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Err(e) = SockRef::from(&self.listener).shutdown(Shutdown::Read) {
            log::warn!("could not stop listening: {e}");
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}
