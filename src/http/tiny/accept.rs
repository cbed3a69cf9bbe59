//! tiny_http's accept thread: keeping its `accept()` from timing out, and noticing when it
//! has died.
//!
//! The listening socket carries the receive timeout that accepted sockets inherit
//! (`--keep-alive-timeout`), and Linux applies it to `accept()` too: tiny_http's accept
//! loop ends at its first error. A signal to the accept thread while it waits makes
//! `accept()` return `EINTR`, which std retries with a fresh timeout; sent every third of
//! the timeout, `accept()` never times out and no connection is needed.
//!
//! A dead accept thread (an accept error, or a failed thread spawn that panics it) leaves a
//! port that takes connections into its backlog and never answers; a server in that state
//! looks alive to a TCP probe. The watchdog turns it into an exit for a supervisor to
//! restart the process.

use super::procfs::{poll_until, tasks, waits_in_accept};
use std::thread;
use std::time::Duration;

/// How often the watchdog looks at the accept thread.
const WATCH_PERIOD: Duration = Duration::from_millis(200);

/// The id of tiny_http's accept thread: the thread of this process blocked in `accept()`
/// on `listener_fd`. Waits up to a second for it to get there. Fails outside Linux, or
/// without `/proc`.
#[cfg(target_os = "linux")]
pub(super) fn find_accept_thread(listener_fd: i32) -> Result<i32, String> {
    poll_until(|| tasks().find(|&tid| waits_in_accept(tid, listener_fd)))
        .ok_or_else(|| "tiny_http's accept thread was not found in /proc/self/task".into())
}

#[cfg(not(target_os = "linux"))]
pub(super) fn find_accept_thread(_listener_fd: i32) -> Result<i32, String> {
    Err("finding the accept thread needs Linux".into())
}

/// Keeps tiny_http's `accept()` on `listener_fd`, in thread `tid`, from timing out, by
/// interrupting it every `period`.
#[cfg(target_os = "linux")]
pub(super) fn keep_accept_alive(
    tid: i32,
    listener_fd: i32,
    period: Duration,
) -> Result<(), String> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    // The handler only has to exist: without one the signal would end the process.
    signal_hook::flag::register(libc::SIGUSR2, Arc::new(AtomicBool::new(false)))
        .map_err(|e| format!("cannot install a SIGUSR2 handler: {e}"))?;
    thread::Builder::new()
        .name("accept-keeper".into())
        .spawn(move || {
            loop {
                thread::sleep(period);
                // Only a thread seen waiting in accept() on our socket is signalled, so a
                // reused thread id can never be interrupted by mistake.
                if waits_in_accept(tid, listener_fd) {
                    // SAFETY: tgkill only queues a signal for that thread of this process;
                    // SIGUSR2 has a handler that does nothing.
                    unsafe {
                        libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR2);
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(super) fn keep_accept_alive(
    _tid: i32,
    _listener_fd: i32,
    _period: Duration,
) -> Result<(), String> {
    Err("idle timeouts need Linux".into())
}

/// Calls `dead` once, when the thread `tid` of this process has ended. Watching a thread
/// id from `/proc` rather than probing the port: a probe connection would itself take a
/// connection thread, and would be accepted into the backlog even by a dead server.
#[cfg(target_os = "linux")]
pub(super) fn watch_thread(tid: i32, dead: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let path = format!("/proc/self/task/{tid}");
    std::thread::Builder::new()
        .name("accept-watchdog".into())
        .spawn(move || {
            // Thread ids are reused only after the thread is gone, and no thread of ours
            // is made often enough to take this id back within one period.
            while std::path::Path::new(&path).exists() {
                std::thread::sleep(WATCH_PERIOD);
            }
            dead();
        })?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(super) fn watch_thread(
    _tid: i32,
    _dead: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    Err(std::io::Error::other("the accept watchdog needs Linux"))
}
