//! Connections that tiny_http accepted but gave no thread, and freeing threads for them.
//!
//! tiny_http 0.12 queues a new connection for its idle pool threads instead of starting a
//! thread for it whenever one of them counts as idle at that instant (`util/task_pool.rs`).
//! A pool thread is idle for five seconds after its last connection closed, so a burst of
//! connections that arrives then is queued behind one or a few such threads; each of those
//! keeps its connection for as long as the client keeps it alive, and the rest of the burst
//! waits with no thread at all — in a benchmark, for the whole run. (`conn_pool.rs` parks the
//! pool's four permanent threads, which covers a fresh server, not this.)
//!
//! Such a connection is visible from outside tiny_http: its request sits unread in the
//! socket's receive queue (`/proc/net/tcp`), while a served connection's request is read at
//! once (bodies are read before a request waits for a worker). A watcher looks every
//! `PERIOD`; for each connection with unread bytes for longer than `STARVED_AFTER`, it asks
//! for one kept-alive connection to be closed after its next response. The thread that served
//! it then takes the oldest queued connection, and the client of the closed one reconnects.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Each look walks the kernel's whole TCP table: a few per cent of a busy server's CPU at 50 ms.
const PERIOD: Duration = Duration::from_millis(100);
const STARVED_AFTER: Duration = Duration::from_millis(200);

/// How many kept-alive connections should be closed to free threads for starved ones.
#[derive(Default)]
pub struct Starved {
    closes_wanted: AtomicUsize,
}

impl Starved {
    /// True when the connection of the response being sent should close to free its thread;
    /// each call that says so uses up one wanted close.
    pub fn take_close(&self) -> bool {
        self.closes_wanted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Starts the watcher for connections to `port`. Outside Linux it does nothing.
    pub fn watch(self: &Arc<Starved>, port: u16) -> std::io::Result<()> {
        if !cfg!(target_os = "linux") {
            return Ok(());
        }
        let starved = self.clone();
        thread::Builder::new()
            .name("starved-watch".into())
            .spawn(move || {
                let mut waiting_since: HashMap<String, Instant> = HashMap::new();
                loop {
                    thread::sleep(PERIOD);
                    let now = Instant::now();
                    let unread = connections_with_unread_bytes(port);
                    waiting_since.retain(|peer, _| unread.contains(peer));
                    let mut newly_starved = 0;
                    for peer in unread {
                        let since = waiting_since.entry(peer).or_insert(now);
                        if now.duration_since(*since) >= STARVED_AFTER {
                            newly_starved += 1;
                            // Counted again only if still unread after another wait.
                            *since = now;
                        }
                    }
                    if newly_starved > 0 {
                        log::debug!(
                            "{newly_starved} connection(s) have no thread; freeing one each"
                        );
                        starved
                            .closes_wanted
                            .fetch_add(newly_starved, Ordering::SeqCst);
                    }
                }
            })?;
        Ok(())
    }
}

/// The remote addresses of established connections to `port` with bytes waiting unread.
fn connections_with_unread_bytes(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            found.extend(text.lines().skip(1).filter_map(|line| unread(line, port)));
        }
    }
    found
}

/// One line of `/proc/net/tcp`: `sl local rem st tx_queue:rx_queue ...`, addresses as
/// `HEXIP:HEXPORT`. The remote address when the line is an established connection to
/// `port` with a non-empty receive queue.
fn unread(line: &str, port: u16) -> Option<String> {
    let mut fields = line.split_whitespace().skip(1);
    let local = fields.next()?;
    let remote = fields.next()?;
    let state = fields.next()?;
    let queues = fields.next()?;
    let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
    let rx_queue = u64::from_str_radix(queues.split(':').nth(1)?, 16).ok()?;
    const ESTABLISHED: &str = "01";
    (local_port == port && state == ESTABLISHED && rx_queue > 0).then(|| remote.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_connections_to_our_port_with_unread_bytes() {
        let line = |local: &str, state: &str, queues: &str| {
            format!("  3: {local} 0100007F:D2F0 {state} {queues} 00:00000000 00000000 0 0 1")
        };
        let port = 0x1F40; // 8000
        let ours = line("0100007F:1F40", "01", "00000000:000004D2");
        assert_eq!(unread(&ours, port).as_deref(), Some("0100007F:D2F0"));
        assert_eq!(
            unread(&line("0100007F:1F40", "01", "00000000:00000000"), port),
            None
        );
        assert_eq!(
            unread(&line("0100007F:1F41", "01", "00000000:00000010"), port),
            None
        );
        assert_eq!(
            unread(&line("0100007F:1F40", "0A", "00000000:00000010"), port),
            None
        );
        assert_eq!(unread("garbage", port), None);
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
