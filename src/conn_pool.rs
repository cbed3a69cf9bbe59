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
//! - **Parking.** Connections from ourselves, which never send a request, occupy the four
//!   permanent threads (and any other thread idle at start-up). With no idle thread, every
//!   real connection gets a new thread the moment it is accepted. They are made while the
//!   listening socket has no receive timeout yet, so they never time out: renewing them
//!   would free a thread, and each renewal hands its replacement to the longest-idle
//!   thread, keeping threads idle forever.
//! - **Accept keep-alive.** The listening socket carries the receive timeout that accepted
//!   sockets inherit (`--keep-alive-timeout`), and Linux applies it to `accept()` too:
//!   tiny_http's accept loop ends at its first error. A signal to the accept thread while it
//!   waits makes `accept()` return `EINTR`, which std retries with a fresh timeout; sent
//!   every third of the timeout, `accept()` never times out and no connection is needed.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

/// tiny_http's `MIN_THREADS`: the pool threads that never exit.
const PERMANENT_THREADS: usize = 4;

/// Parks beyond the permanent threads are for threads that clients made the pool start
/// during start-up; this bounds them.
const MAX_PARKED: usize = 2 * PERMANENT_THREADS;

/// How long start-up waits for tiny_http's pool at each step before going on regardless.
const POOL_DEADLINE: Duration = Duration::from_secs(1);

/// Without `/proc`: time for the pool's threads to start waiting, then to take connections.
const POOL_STARTUP: Duration = Duration::from_millis(20);

/// Our ends of the parked connections.
#[derive(Default)]
pub struct Parked {
    streams: Vec<TcpStream>,
}

impl Parked {
    /// Our ends of connections parked elsewhere, for tests of what releases them.
    #[cfg(test)]
    pub fn holding(streams: Vec<TcpStream>) -> Parked {
        Parked { streams }
    }

    /// Closes one parked connection, so that its pool thread finishes and takes whatever
    /// tiny_http queued for an idle thread; false when none is left. For a connection that
    /// was queued for a thread that then took a parked one instead, when no served
    /// connection closes to free a thread for it (`starved.rs`).
    pub fn release_one(&mut self) -> bool {
        match self.streams.pop() {
            Some(stream) => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                true
            }
            None => false,
        }
    }
}

/// Parks a connection on each idle thread of tiny_http's pool. Call it before the listening
/// socket gets its receive timeout.
pub fn park_idle_threads(listening: SocketAddr) -> io::Result<Parked> {
    let target = reachable(listening);
    let mut parked = Parked::default();
    // A connection that arrives before the pool's threads wait for work gets a thread of
    // its own and leaves them idle.
    #[cfg(target_os = "linux")]
    match wait_for_idle_pool() {
        Some(condvar) => {
            park_one_by_one(target, condvar, &mut parked)?;
            return Ok(parked);
        }
        None => log::debug!("tiny_http's idle pool threads were not seen in /proc/self/task"),
    }
    thread::sleep(POOL_STARTUP);
    for i in 0..PERMANENT_THREADS {
        park(target, i, &mut parked)?;
    }
    thread::sleep(POOL_STARTUP);
    Ok(parked)
}

/// Parks connections one at a time, each once a thread reads the one before: tiny_http
/// counts a woken thread as idle until it runs, so a client connecting meanwhile could be
/// queued for it with no thread left to take it. And until no thread waits on the pool's
/// `condvar`: a thread that served a client during start-up gets a connection too.
#[cfg(target_os = "linux")]
fn park_one_by_one(target: SocketAddr, condvar: u64, parked: &mut Parked) -> io::Result<()> {
    for i in 0..MAX_PARKED {
        if waiting_on(condvar) == 0 {
            break;
        }
        let client = park(target, i, parked)?;
        if poll_until(|| accepted_from(client).into_iter().find(|&fd| is_read(fd))).is_none() {
            log::debug!("no thread of tiny_http's pool took parked connection {i}");
            break;
        }
    }
    Ok(())
}

/// Opens a connection that never sends a request, for a pool thread to wait on, and
/// returns its local address.
fn park(target: SocketAddr, i: usize, parked: &mut Parked) -> io::Result<SocketAddr> {
    let mut stream = TcpStream::connect(target)?;
    let local = stream.local_addr()?;
    parked.streams.push(stream.try_clone()?);
    thread::Builder::new()
        .name(format!("park-{i}"))
        .spawn(move || {
            // Blocks for the life of the server; tiny_http never times this one out.
            let _ = stream.read(&mut [0u8; 64]);
            log::debug!("parked connection {i} closed");
        })?;
    Ok(local)
}

/// Waits until tiny_http's permanent pool threads all wait for work, and returns the
/// address they wait on: the pool's condition variable, the futex that many threads of
/// ours block on at once.
#[cfg(target_os = "linux")]
fn wait_for_idle_pool() -> Option<u64> {
    poll_until(|| {
        let mut waiters = std::collections::HashMap::<u64, usize>::new();
        for (syscall, address) in tasks().filter_map(blocked_in) {
            if syscall == libc::SYS_futex {
                *waiters.entry(address).or_default() += 1;
            }
        }
        waiters
            .into_iter()
            .find(|&(_, n)| n >= PERMANENT_THREADS)
            .map(|(address, _)| address)
    })
}

/// How many threads are blocked on the futex at `address`.
#[cfg(target_os = "linux")]
fn waiting_on(address: u64) -> usize {
    tasks()
        .filter_map(blocked_in)
        .filter(|&blocked| blocked == (libc::SYS_futex, address))
        .count()
}

/// Checks `found` every 200 µs until it gives an answer or `POOL_DEADLINE` passes: the
/// threads usually get there within a millisecond, and start-up waits on them.
#[cfg(target_os = "linux")]
fn poll_until<T>(mut found: impl FnMut() -> Option<T>) -> Option<T> {
    use std::time::Instant;
    let deadline = Instant::now() + POOL_DEADLINE;
    loop {
        if let Some(answer) = found() {
            return Some(answer);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_micros(200));
    }
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
    poll_until(|| tasks().find(|&tid| waits_in_accept(tid, listener_fd)))
        .ok_or_else(|| "tiny_http's accept thread was not found in /proc/self/task".into())
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

/// The ids of this process's threads.
#[cfg(target_os = "linux")]
fn tasks() -> impl Iterator<Item = i32> {
    numbered_entries("/proc/self/task")
}

/// This process's open file descriptors (none where there is no `/proc`).
pub fn own_descriptors() -> impl Iterator<Item = i32> {
    numbered_entries("/proc/self/fd")
}

/// The entries of a `/proc` directory that are numbers: thread ids, descriptors.
fn numbered_entries(dir: &str) -> impl Iterator<Item = i32> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
}

/// True when the thread is blocked in `accept`/`accept4` on that socket.
#[cfg(target_os = "linux")]
fn waits_in_accept(tid: i32, listener_fd: i32) -> bool {
    matches!(blocked_in(tid), Some((n, fd))
        if (n == libc::SYS_accept4 || n == libc::SYS_accept) && fd == listener_fd as u64)
}

/// The system call a thread is blocked in and its first argument, as
/// `/proc/self/task/TID/syscall` shows them (`288 0x3 ...`); None for a running thread.
#[cfg(target_os = "linux")]
fn blocked_in(tid: i32) -> Option<(i64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    let mut fields = text.split_whitespace();
    let syscall = fields.next()?.parse::<i64>().ok()?;
    let first = u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
    Some((syscall, first))
}

/// Our descriptors of the accepted connection whose client is at `peer` (tiny_http holds
/// two: one to read, one to write).
#[cfg(target_os = "linux")]
fn accepted_from(peer: SocketAddr) -> Vec<i32> {
    own_descriptors()
        .filter(|&fd| peer_of(fd) == Some(peer))
        .collect()
}

/// The address of the other end of socket `fd`. The descriptor may have been closed, or
/// reused, since it was listed: the call only queries it and fails harmlessly.
#[cfg(target_os = "linux")]
pub fn peer_of(fd: i32) -> Option<SocketAddr> {
    // SAFETY: getpeername writes at most `len` bytes into the zeroed storage try_init
    // gives it, and sets `len` to what it wrote.
    let (_, peer) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            match libc::getpeername(fd, storage.cast(), len) {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        })
    }
    .ok()?;
    peer.as_socket()
}

/// The kernel's TCP_INFO for socket `fd`, and how many bytes of it the kernel filled (an
/// older kernel fills less). Only queries the descriptor: None on a closed one.
#[cfg(target_os = "linux")]
pub fn tcp_info(fd: i32) -> Option<(libc::tcp_info, usize)> {
    // SAFETY: getsockopt writes at most `len` bytes into the zeroed struct, and sets `len`.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
        let asked = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        );
        (asked == 0).then_some((info, len as usize))
    }
}

/// Bytes received on socket `fd` and not read yet. Only queries the descriptor.
#[cfg(target_os = "linux")]
pub fn unread_bytes(fd: i32) -> Option<usize> {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `unread`.
    let asked = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) };
    (asked == 0).then(|| usize::try_from(unread).unwrap_or(0))
}

/// True when a thread of this process is blocked reading from `fd`.
#[cfg(target_os = "linux")]
fn is_read(fd: i32) -> bool {
    tasks().filter_map(blocked_in).any(|(syscall, first)| {
        (syscall == libc::SYS_recvfrom || syscall == libc::SYS_read) && first == fd as u64
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    #[test]
    fn sees_which_thread_reads_which_accepted_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        let fd = accepted.as_raw_fd();
        // Found by the client's address; the client's own socket and the listener are not.
        assert_eq!(accepted_from(client.local_addr().unwrap()), [fd]);
        assert!(!is_read(fd));

        let reader = thread::spawn(move || accepted.read(&mut [0u8; 8]).unwrap());
        assert!(poll_until(|| is_read(fd).then_some(())).is_some());
        drop(client);
        assert_eq!(reader.join().unwrap(), 0);
    }

    #[test]
    fn counts_the_threads_waiting_on_one_condvar() {
        use std::sync::{Arc, Condvar, Mutex};
        let shared = Arc::new((Mutex::new(false), Condvar::new()));
        // std's Condvar on Linux is one futex word, the address threads wait on.
        let condvar = &shared.1 as *const Condvar as u64;
        let waiters: Vec<_> = (0..PERMANENT_THREADS)
            .map(|_| {
                let shared = shared.clone();
                thread::spawn(move || {
                    let (done, woken) = &*shared;
                    drop(woken.wait_while(done.lock().unwrap(), |done| !*done));
                })
            })
            .collect();
        let all_wait = || (waiting_on(condvar) == PERMANENT_THREADS).then_some(());
        assert!(poll_until(all_wait).is_some());
        assert!(wait_for_idle_pool().is_some());

        *shared.0.lock().unwrap() = true;
        shared.1.notify_all();
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert_eq!(waiting_on(condvar), 0);
    }
}
