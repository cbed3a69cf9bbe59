//! Keeping tiny_http's connection threads available to every client.
//!
//! tiny_http 0.12 reads each connection on a thread from its own pool (`util/task_pool.rs`).
//! The pool starts with four idle threads and spawns a new thread for a connection only when
//! no thread counts as idle at that instant; otherwise the connection is queued for an idle
//! one. A burst of connections that arrives before the woken threads have stopped counting
//! as idle is queued behind them, and a thread keeps its connection for as long as the client
//! keeps it alive: on a fresh server 12 of 16 keep-alive clients got no answer for 10 s. Our
//! layer cannot change the pool, so it changes what the pool sees:
//!
//! - **Parking.** Four connections from ourselves, which never send a request, occupy the
//!   four permanent threads. With no idle thread, every real connection gets a new thread the
//!   moment it is accepted. They are made while the listening socket has no receive timeout
//!   yet, so they never time out: renewing them would free a thread, and each renewal hands
//!   its replacement to the longest-idle thread, keeping threads idle forever.
//! - **Accept keep-alive.** The listening socket carries the receive timeout that accepted
//!   sockets inherit (`--keep-alive-timeout`), and Linux applies it to `accept()` too:
//!   tiny_http's accept loop ends at its first error. A signal to the accept thread while it
//!   waits makes `accept()` return `EINTR`, which std retries with a fresh timeout; sent
//!   every third of the timeout, `accept()` never times out and no connection is needed.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// tiny_http's `MIN_THREADS`: the pool threads that never exit.
const PERMANENT_THREADS: usize = 4;

/// Time for tiny_http's pool threads to start waiting for work: a connection that arrives
/// before they wait gets a thread of its own and leaves them idle.
const POOL_STARTUP: Duration = Duration::from_millis(20);

/// Parks a connection on each of tiny_http's permanent threads. Call it before the
/// listening socket gets its receive timeout.
pub fn park_permanent_threads(listening: SocketAddr) -> io::Result<()> {
    let target = reachable(listening);
    thread::sleep(POOL_STARTUP);
    for i in 0..PERMANENT_THREADS {
        let mut stream = TcpStream::connect(target)?;
        thread::Builder::new()
            .name(format!("park-{i}"))
            .spawn(move || {
                // Blocks for the life of the server; tiny_http never times this one out.
                let _ = stream.read(&mut [0u8; 64]);
                log::debug!("parked connection {i} closed");
            })?;
    }
    // Let tiny_http accept them before the listener's timeout is set.
    thread::sleep(POOL_STARTUP);
    Ok(())
}

/// The address to reach a listener on from this host: loopback for a wildcard bind.
fn reachable(listening: SocketAddr) -> SocketAddr {
    match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listening.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listening.port())
        }
        _ => listening,
    }
}

/// The id of tiny_http's accept thread: the thread of this process blocked in `accept()`
/// on `listener_fd`. Waits up to a second for it to get there. Fails outside Linux, or
/// without `/proc`.
#[cfg(target_os = "linux")]
pub fn find_accept_thread(listener_fd: i32) -> Result<i32, String> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if let Some(tid) = accept_thread(listener_fd) {
            return Ok(tid);
        }
        if Instant::now() > deadline {
            return Err("tiny_http's accept thread was not found in /proc/self/task".into());
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(not(target_os = "linux"))]
pub fn find_accept_thread(_listener_fd: i32) -> Result<i32, String> {
    Err("finding the accept thread needs Linux".into())
}

/// Keeps tiny_http's `accept()` on `listener_fd`, in thread `tid`, from timing out, by
/// interrupting it every `period`.
#[cfg(target_os = "linux")]
pub fn keep_accept_alive(tid: i32, listener_fd: i32, period: Duration) -> Result<(), String> {
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
pub fn keep_accept_alive(_tid: i32, _listener_fd: i32, _period: Duration) -> Result<(), String> {
    Err("idle timeouts need Linux".into())
}

#[cfg(target_os = "linux")]
fn accept_thread(listener_fd: i32) -> Option<i32> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|&tid| waits_in_accept(tid, listener_fd))
}

/// True when the thread is blocked in `accept`/`accept4` on that socket, as
/// `/proc/self/task/TID/syscall` shows it: `288 0x3 ...` (syscall number, then arguments).
#[cfg(target_os = "linux")]
fn waits_in_accept(tid: i32, listener_fd: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) else {
        return false;
    };
    let mut fields = text.split_whitespace();
    let syscall = fields.next().and_then(|n| n.parse::<i64>().ok());
    let fd = fields
        .next()
        .and_then(|a| i64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
    matches!(syscall, Some(n) if n == libc::SYS_accept4 || n == libc::SYS_accept)
        && fd == Some(listener_fd as i64)
}
