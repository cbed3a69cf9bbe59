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
//! - **Starved connections** (`starved.rs`) covers bursts after start-up.

#[cfg(target_os = "linux")]
use super::procfs::{accepted_from, blocked_in, is_read, poll_until, tasks, waiting_on};
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

/// tiny_http's `MIN_THREADS`: the pool threads that never exit.
const PERMANENT_THREADS: usize = 4;

/// Parks beyond the permanent threads are for threads that clients made the pool start
/// during start-up; this bounds them.
const MAX_PARKED: usize = 2 * PERMANENT_THREADS;

/// Without `/proc`: time for the pool's threads to start waiting, then to take connections.
const POOL_STARTUP: Duration = Duration::from_millis(20);

/// Our ends of the parked connections.
#[derive(Default)]
pub(super) struct Parked {
    streams: Vec<TcpStream>,
}

impl Parked {
    /// Our ends of connections parked elsewhere, for tests of what releases them.
    #[cfg(test)]
    pub(super) fn holding(streams: Vec<TcpStream>) -> Parked {
        Parked { streams }
    }

    /// Closes one parked connection, so that its pool thread finishes and takes whatever
    /// tiny_http queued for an idle thread; false when none is left. For a connection that
    /// was queued for a thread that then took a parked one instead, when no served
    /// connection closes to free a thread for it (`starved.rs`).
    pub(super) fn release_one(&mut self) -> bool {
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
pub(super) fn park_idle_threads(listening: SocketAddr) -> io::Result<Parked> {
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
