//! Connections that tiny_http accepted but gave no thread, and freeing threads for them.
//!
//! tiny_http 0.12 queues a new connection for its idle pool threads instead of starting a
//! thread for it whenever one of them counts as idle at that instant (`util/task_pool.rs`).
//! A pool thread is idle for five seconds after its last connection closed, so a burst of
//! connections that arrives then is queued behind one or a few such threads; each of those
//! keeps its connection for as long as the client keeps it alive, and the rest of the burst
//! waits with no thread at all — in a benchmark, for the whole run. (`pool.rs` parks the
//! pool's four permanent threads, which covers a fresh server, not this.)
//!
//! Such a connection is visible from outside tiny_http: its request sits unread in the
//! socket's receive queue (found through the process's own descriptors), while a served
//! connection's request is read at once (bodies are read before a request waits for a
//! worker). A busy served connection often has its next request unread for a moment, so a
//! connection counts as starved only when it has had unread bytes and received nothing new
//! (the kernel's count of bytes received, `TCP_INFO`) for `STARVED_AFTER`. A watcher looks
//! every `PERIOD`; for each starved connection it asks for one kept-alive connection to be
//! closed after its next response. The thread that served it then takes the oldest queued
//! connection, and the client of the closed one reconnects. When no kept-alive response has
//! gone out to carry a close by the next look, a parked connection is released instead
//! (`pool::Parked`): at start-up, a client that connects while the last pool thread
//! is being parked can be queued for that thread, and no served connection may follow. In
//! the first 100 ms the watcher looks every 5 ms and releases a parked connection at once
//! (and asks for no closes).

use super::pool::Parked;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Each look is a few system calls per open connection.
const PERIOD: Duration = Duration::from_millis(50);
/// Longer than a runnable thread waits for a core on a busy machine, so that a served
/// connection whose thread has not run yet is not taken for a starved one.
const STARVED_AFTER: Duration = Duration::from_millis(100);
/// Right after start-up the watcher looks more often and frees a parked connection at once:
/// a client that connected just as the last pool thread was being parked can be queued for
/// that thread (`pool.rs`), and its first answer should not wait for two long looks.
/// A served request can sit unread that long on a loaded machine, so this early only a
/// parked connection is freed, never a served client's connection closed.
const STARTUP: Duration = Duration::from_millis(100);
const STARTUP_PERIOD: Duration = Duration::from_millis(5);
const STARTUP_STARVED_AFTER: Duration = Duration::from_millis(20);

/// How many kept-alive connections should be closed to free threads for starved ones.
#[derive(Default)]
pub(super) struct Starved {
    closes_wanted: AtomicUsize,
}

impl Starved {
    /// True when the connection of the response being sent should close to free its thread;
    /// each call that says so uses up one wanted close.
    pub(super) fn take_close(&self) -> bool {
        self.closes_wanted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Starts the watcher for connections to `port`. Outside Linux it does nothing.
    pub(super) fn watch(self: &Arc<Starved>, port: u16, mut parked: Parked) -> std::io::Result<()> {
        if !cfg!(target_os = "linux") {
            return Ok(());
        }
        let starved = self.clone();
        thread::Builder::new()
            .name("starved-watch".into())
            .spawn(move || {
                // Per socket with unread bytes: its bytes received, and since when.
                let mut unchanged_since: HashMap<u64, (u64, Instant)> = HashMap::new();
                let started = Instant::now();
                loop {
                    let starting = started.elapsed() < STARTUP;
                    let (period, starved_after) = match starting {
                        true => (STARTUP_PERIOD, STARTUP_STARVED_AFTER),
                        false => (PERIOD, STARVED_AFTER),
                    };
                    thread::sleep(period);
                    let now = Instant::now();
                    let waiting = connections_with_unread_bytes(port);
                    unchanged_since.retain(|socket, _| waiting.contains_key(socket));
                    let mut newly_starved = 0;
                    for (socket, received) in waiting {
                        let seen = unchanged_since.entry(socket).or_insert((received, now));
                        if seen.0 != received {
                            // Served since the last look: its thread read and it sent more.
                            *seen = (received, now);
                        } else if now.duration_since(seen.1) >= starved_after {
                            newly_starved += 1;
                            // Counted again only if still unread after another wait.
                            seen.1 = now;
                        }
                    }
                    if newly_starved > 0 && starting {
                        // Only a parked connection is freed this early: on a loaded machine
                        // a served request can sit unread for 20 ms, and a close asked for
                        // on its account would end some client's kept-alive connection.
                        if parked.release_one() {
                            log::debug!("released a parked connection for one queued at start-up");
                        }
                        continue;
                    }
                    if newly_starved > 0 {
                        log::debug!(
                            "{newly_starved} connection(s) have no thread; freeing one each"
                        );
                        let unanswered = starved
                            .closes_wanted
                            .fetch_add(newly_starved, Ordering::SeqCst);
                        // Closes asked for a look ago and still not made: no kept-alive
                        // response went out to carry them. A parked connection's thread
                        // is the one left to free.
                        if unanswered > 0 && parked.release_one() {
                            log::debug!("released a parked connection for a starved one");
                        }
                    }
                }
            })?;
        Ok(())
    }
}

/// Connections to `port` with bytes waiting unread: socket inode (tiny_http holds two
/// descriptors for each connection) to the bytes the connection has received so far. Only
/// this process's own descriptors are looked at: walking the kernel's TCP table
/// (`/proc/net/tcp`) costs the same for every socket of the machine and took 5% of a busy
/// server's CPU.
fn connections_with_unread_bytes(port: u16) -> HashMap<u64, u64> {
    super::procfs::own_descriptors()
        .filter_map(|fd| unread_connection(fd, port))
        .collect()
}

/// The socket inode and the bytes received so far when `fd` is a connected socket on
/// local `port` with unread bytes. The descriptor may have been closed, or even reused,
/// since the directory was read: the calls below only query it and fail harmlessly on a
/// closed one.
#[cfg(target_os = "linux")]
fn unread_connection(fd: libc::c_int, port: u16) -> Option<(u64, u64)> {
    use super::procfs::{peer_of, tcp_info, unread_bytes};
    // SAFETY: each call only writes into the local it is given, sized for it.
    let inode = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut stat) != 0 || stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return None;
        }
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of_val(&addr) as libc::socklen_t;
        if libc::getsockname(fd, (&raw mut addr).cast(), &mut len) != 0 {
            return None;
        }
        let local_port = match i32::from(addr.ss_family) {
            libc::AF_INET => (*(&raw const addr).cast::<libc::sockaddr_in>()).sin_port,
            libc::AF_INET6 => (*(&raw const addr).cast::<libc::sockaddr_in6>()).sin6_port,
            _ => return None,
        };
        if u16::from_be(local_port) != port {
            return None;
        }
        stat.st_ino
    };
    // The listening socket has the same port but no peer.
    peer_of(fd)?;
    unread_bytes(fd).filter(|&unread| unread > 0)?;
    // A kernel too old to count bytes received (before 4.1) gives a shorter struct; then
    // only the unread bytes tell, as a zero count that never changes.
    let counted = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + 8;
    let received = tcp_info(fd)
        .filter(|&(_, len)| len >= counted)
        .map_or(0, |(info, _)| info.tcpi_bytes_received);
    Some((inode, received))
}

#[cfg(not(target_os = "linux"))]
fn unread_connection(_fd: i32, _port: u16) -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_os = "linux")]
    use std::net::{TcpListener, TcpStream};

    /// A connection to `listener`: the client's end and the accepted end.
    #[cfg(target_os = "linux")]
    fn connect(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        (client, accepted)
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn finds_our_connections_with_unread_bytes_only() {
        use std::io::Write;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _quiet = connect(&listener);
        let (mut client, _server_side) = connect(&listener);
        assert!(connections_with_unread_bytes(port).is_empty());

        let request = b"GET / HTTP/1.1\r\n\r\n";
        client.write_all(request).unwrap();
        // One connection (not its client end, whose local port differs, nor the listener),
        // with what it received so far.
        let sent = request.len() as u64;
        let found = wait_for_unread(port, |found| !found.is_empty());
        assert_eq!(found.values().copied().collect::<Vec<_>>(), [sent]);

        // More bytes: the count of bytes received moves on.
        client.write_all(request).unwrap();
        let found = wait_for_unread(port, |found| found.values().all(|&n| n > sent));
        assert_eq!(found.values().copied().collect::<Vec<_>>(), [2 * sent]);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn at_start_up_a_connection_left_unread_frees_a_parked_thread_at_once() {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // A parked connection: the accepted end stands for the pool thread reading it.
        let (parked, mut pool_thread_end) = connect(&listener);
        // A client queued for that thread: its request is never read.
        let (mut queued, _never_read) = connect(&listener);
        queued.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();

        let starved = Arc::new(Starved::default());
        let started = Instant::now();
        starved.watch(port, Parked::holding(vec![parked])).unwrap();
        pool_thread_end
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(pool_thread_end.read(&mut [0u8; 8]).unwrap(), 0, "released");
        // After start-up it takes two looks and a wanted close first: 250 ms or more.
        let took = started.elapsed();
        assert!(took < STARVED_AFTER * 2, "released after {took:?}");
        assert!(!starved.take_close(), "no served connection needs closing");
    }

    /// Written on loopback, bytes are in the receive queue at once; give the kernel a moment.
    #[cfg(target_os = "linux")]
    fn wait_for_unread(port: u16, done: impl Fn(&HashMap<u64, u64>) -> bool) -> HashMap<u64, u64> {
        let mut found = HashMap::new();
        for _ in 0..100 {
            found = connections_with_unread_bytes(port);
            if done(&found) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        found
    }

    #[test]
    fn each_wanted_close_is_taken_once() {
        let starved = Starved::default();
        assert!(!starved.take_close());
        starved.closes_wanted.store(2, Ordering::SeqCst);
        assert!(starved.take_close());
        assert!(starved.take_close());
        assert!(!starved.take_close());
    }
}
