//! Whether the client of a request has gone away, which the engine's admission line asks
//! of a request that waited long for a worker slot or for its batch: a client that timed
//! out and left (or a proxy that gave up on it) is not owed a run.
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
use std::time::Instant;
#[cfg(target_os = "linux")]
use std::{collections::HashMap, sync::Mutex};

/// True when the connection from `peer`, open since before `waiting_since`, shows the
/// client's FIN or a reset and nothing unread. False when it is open, or cannot be found.
#[cfg(target_os = "linux")]
pub fn client_left(peer: SocketAddr, waiting_since: Instant) -> bool {
    use super::procfs::peer_of;
    let Some(fd) = connection_from(peer, waiting_since) else {
        return false;
    };
    let gone = shows_client_gone(fd);
    // The descriptor may have been closed and its number reused while we looked.
    gone && peer_of(fd) == Some(peer)
}

#[cfg(not(target_os = "linux"))]
pub fn client_left(_peer: SocketAddr, _waiting_since: Instant) -> bool {
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
    use super::procfs::{own_descriptors, peer_of};
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
    use super::procfs::{tcp_info, unread_bytes};
    tcp_info(fd).is_some_and(|(info, _)| CLIENT_GONE_STATES.contains(&info.tcpi_state))
        && unread_bytes(fd) == Some(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::time::Duration;

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
        while !client_left(closed_addr, since) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(client_left(closed_addr, since));
        assert!(!client_left(open.local_addr().unwrap(), since));
        assert!(!client_left(told_close.local_addr().unwrap(), since));
        let pipelined = pipelined.local_addr().unwrap();
        assert!(!client_left(pipelined, since), "unread bytes come first");
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(!client_left(nobody, Instant::now()));
    }
}
