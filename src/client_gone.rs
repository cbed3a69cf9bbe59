//! Whether the client of a request has gone away, asked of a request that waited long for
//! a worker slot or for its batch: a client that timed out and left (or a proxy that gave
//! up on it) is not owed a run, and running the model for nobody makes everyone queued
//! behind it wait longer. Under overload that is what keeps a queue long after its clients
//! have stopped waiting.
//!
//! tiny_http does not give handlers the socket, so the connection is found among this
//! process's descriptors by the client's address, and the kernel's TCP state says whether
//! the client has sent its FIN or reset the connection. Not what a read would say: tiny_http
//! shuts down our reading side itself once a request says `Connection: close` (or is
//! HTTP/1.0), and a read then ends at once whatever the client did. As in nginx (which
//! answers such requests 499), a client that only half-closes its side while still waiting
//! for the answer counts as gone, which HTTP clients rarely do; unread bytes (a pipelined
//! request) count as still there.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
#[cfg(target_os = "linux")]
use std::{collections::HashMap, sync::Mutex};

/// A request that waited this long (for a worker slot, or for its batch) is not run if its
/// client has left meanwhile. Short enough to catch clients that time out after a second or
/// more; long enough that the look (a few system calls, a pass over the descriptors now and
/// then) is small beside the wait.
pub const ASK_AFTER: Duration = Duration::from_millis(20);

/// When a full queue last asked its waiters about their clients: it asks at most once per
/// `ASK_AFTER` (a look costs a few system calls per waiter, and a full queue is when the
/// machine is busiest), and only when some waiter has waited that long.
#[derive(Default)]
pub struct LastAsked(Option<Instant>);

impl LastAsked {
    /// True when `every` has passed since the last ask (or there was none).
    pub fn due(&self, now: Instant, every: Duration) -> bool {
        self.0
            .is_none_or(|asked| now.saturating_duration_since(asked) >= every)
    }

    pub fn asked(&mut self, now: Instant) {
        self.0 = Some(now);
    }
}

/// True when a request that has waited `waited` should not run: it waited `ASK_AFTER` or
/// more and its client, at `client`, has left meanwhile.
pub fn left_while_waiting(waited: Duration, client: Option<SocketAddr>) -> bool {
    if waited < ASK_AFTER {
        return false;
    }
    let waiting_since = Instant::now()
        .checked_sub(waited)
        .unwrap_or_else(Instant::now);
    client.is_some_and(|peer| has_gone(peer, waiting_since))
}

/// True when the connection from `peer`, open since before `waiting_since`, shows the
/// client's FIN or a reset and nothing unread. False when it is open, or cannot be found.
#[cfg(target_os = "linux")]
pub fn has_gone(peer: SocketAddr, waiting_since: Instant) -> bool {
    use crate::conn_pool::peer_of;
    let Some(fd) = connection_from(peer, waiting_since) else {
        return false;
    };
    let gone = shows_client_gone(fd);
    // The descriptor may have been closed and its number reused while we looked.
    gone && peer_of(fd) == Some(peer)
}

#[cfg(not(target_os = "linux"))]
pub fn has_gone(_peer: SocketAddr, _waiting_since: Instant) -> bool {
    false
}

/// Accepted connections by client address, from the last pass over our descriptors.
#[cfg(target_os = "linux")]
struct Connections {
    by_peer: HashMap<SocketAddr, i32>,
    /// When that pass began: it saw every connection open at that moment.
    pass_began: Instant,
}

/// A pass costs a system call per descriptor (a millisecond or more with a thousand
/// connections, made while holding a worker slot); one pass finds every connection open at
/// the time, so under overload most requests are answered from here with one call.
#[cfg(target_os = "linux")]
static CONNECTIONS: Mutex<Option<Connections>> = Mutex::new(None);

/// Our descriptor of the connection from `peer`: the one remembered if it still leads there
/// (descriptors are reused), else from a new pass, unless the last pass began after the
/// request began waiting (the connection was open then: a pass would not find it either).
/// So passes come at most once per wait, however many requests ask.
#[cfg(target_os = "linux")]
fn connection_from(peer: SocketAddr, waiting_since: Instant) -> Option<i32> {
    use crate::conn_pool::{own_descriptors, peer_of};
    let mut known = CONNECTIONS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = known.as_ref() {
        let remembered = known.by_peer.get(&peer).copied();
        if let Some(fd) = remembered.filter(|&fd| peer_of(fd) == Some(peer)) {
            return Some(fd);
        }
        if known.pass_began > waiting_since {
            return None;
        }
    }
    let pass_began = Instant::now();
    let by_peer: HashMap<SocketAddr, i32> = own_descriptors()
        .filter_map(|fd| Some((peer_of(fd)?, fd)))
        .collect();
    let fd = by_peer.get(&peer).copied();
    *known = Some(Connections {
        by_peer,
        pass_began,
    });
    fd
}

/// The TCP states (linux/include/net/tcp_states.h) after the client's FIN or a reset:
/// CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING.
#[cfg(target_os = "linux")]
const CLIENT_GONE_STATES: [u8; 4] = [7, 8, 9, 11];

/// True when socket `fd` has received the client's FIN or a reset, and holds no unread
/// bytes. The calls only query the socket: on a descriptor closed meanwhile they fail.
#[cfg(target_os = "linux")]
fn shows_client_gone(fd: i32) -> bool {
    use crate::conn_pool::{tcp_info, unread_bytes};
    tcp_info(fd).is_some_and(|(info, _)| CLIENT_GONE_STATES.contains(&info.tcpi_state))
        && unread_bytes(fd) == Some(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};

    #[test]
    fn a_client_that_closed_has_gone_and_an_open_one_has_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let accept = |client: &TcpStream| {
            let (ours, from) = listener.accept().unwrap();
            assert_eq!(from, client.local_addr().unwrap());
            ours
        };
        let open = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _open_ours = accept(&open);
        // tiny_http shuts down its reading side after a `Connection: close` request: that
        // client is still there.
        let told_close = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let told_close_ours = accept(&told_close);
        told_close_ours.shutdown(Shutdown::Read).unwrap();
        let mut pipelined = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _pipelined_ours = accept(&pipelined);
        let closed = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _closed_ours = accept(&closed);
        // As for a request: waiting began once its connection was open.
        let since = Instant::now();

        pipelined.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        pipelined.shutdown(Shutdown::Write).unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        // The FIN crosses loopback at once, but give the kernel a moment.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !has_gone(closed_addr, since) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(has_gone(closed_addr, since));
        assert!(!has_gone(open.local_addr().unwrap(), since));
        assert!(!has_gone(told_close.local_addr().unwrap(), since));
        let pipelined = pipelined.local_addr().unwrap();
        assert!(!has_gone(pipelined, since), "unread bytes come first");
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(!has_gone(nobody, Instant::now()));
    }
}
