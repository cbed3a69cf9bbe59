//! Whether the client of a request has gone away, asked of a request that waited long for
//! a worker slot: a client that timed out and left (or a proxy that gave up on it) is not
//! owed a run, and running the model for nobody makes everyone queued behind it wait longer.
//! Under overload that is what keeps a queue long after its clients have stopped waiting.
//!
//! tiny_http does not give handlers the socket, so the connection is found among this
//! process's descriptors by the client's address. Gone means the client has finished
//! sending (end-of-stream is all that is left to read) or the connection was reset. As in
//! nginx (which answers such requests 499 and closes), a client that only half-closes its
//! side while still waiting for the answer counts as gone: HTTP clients do not do that.

use std::net::SocketAddr;
use std::time::Duration;
#[cfg(target_os = "linux")]
use std::{collections::HashMap, sync::Mutex};

/// A request that waited this long (for a worker slot, or for its batch) is not run if its
/// client has left meanwhile. Short enough to catch clients that time out after a second or
/// more; long enough that the look (a system call or two, a pass over the descriptors now
/// and then) is small beside the wait.
pub const ASK_AFTER: Duration = Duration::from_millis(20);

/// True when a request that waited `waited` should not run: it waited `ASK_AFTER` or more
/// and its client, at `client`, has gone.
pub fn after_waiting(waited: Duration, client: Option<SocketAddr>) -> bool {
    waited >= ASK_AFTER && client.is_some_and(has_gone)
}

/// True when the connection from `peer` shows the client's end-of-stream or a reset. False
/// when it is open, has unread bytes (a pipelined request), or cannot be found.
#[cfg(target_os = "linux")]
pub fn has_gone(peer: SocketAddr) -> bool {
    connection_from(peer).is_some_and(shows_end_of_stream)
}

#[cfg(not(target_os = "linux"))]
pub fn has_gone(_peer: SocketAddr) -> bool {
    false
}

/// Accepted connections by client address, from the last pass over our descriptors. A pass
/// costs a system call per descriptor (a millisecond or more with a thousand connections,
/// and it is made while holding a worker slot); one pass finds every connection open at the
/// time, so under overload most requests are answered from here with one call.
#[cfg(target_os = "linux")]
static CONNECTIONS: Mutex<Option<HashMap<SocketAddr, i32>>> = Mutex::new(None);

/// Our descriptor of the connection from `peer`: the one remembered if it still leads there
/// (descriptors are reused), else from a new pass.
#[cfg(target_os = "linux")]
fn connection_from(peer: SocketAddr) -> Option<i32> {
    use crate::conn_pool::{own_descriptors, peer_of};
    let mut known = CONNECTIONS.lock().unwrap_or_else(|p| p.into_inner());
    let remembered = known.as_ref().and_then(|k| k.get(&peer).copied());
    if let Some(fd) = remembered.filter(|&fd| peer_of(fd) == Some(peer)) {
        return Some(fd);
    }
    let found: HashMap<SocketAddr, i32> = own_descriptors()
        .filter_map(|fd| Some((peer_of(fd)?, fd)))
        .collect();
    let fd = found.get(&peer).copied();
    *known = Some(found);
    fd
}

/// Peeks one byte without waiting: 0 bytes is the client's FIN with nothing before it. The
/// descriptor may have been closed or reused since it was found; a peek changes nothing.
#[cfg(target_os = "linux")]
fn shows_end_of_stream(fd: i32) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv writes at most the one byte it is given.
    let n = unsafe {
        libc::recv(
            fd,
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        -1 => matches!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ECONNRESET | libc::EPIPE)
        ),
        _ => false,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};

    #[test]
    fn a_client_that_closed_has_gone_and_an_open_one_has_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_open_server_end, _) = listener.accept().unwrap();
        let mut pipelined = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_pipelined_server_end, _) = listener.accept().unwrap();
        let closed = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_closed_server_end, _) = listener.accept().unwrap();

        pipelined.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        pipelined.shutdown(Shutdown::Write).unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        // The FIN crosses loopback at once, but give the kernel a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !has_gone(closed_addr) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(has_gone(closed_addr));
        assert!(!has_gone(open.local_addr().unwrap()));
        assert!(
            !has_gone(pipelined.local_addr().unwrap()),
            "unread bytes come first"
        );
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(!has_gone(nobody));
    }
}
