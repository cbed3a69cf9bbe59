//! What the kernel tells about this process's threads and sockets: which system call a
//! thread is blocked in (`/proc/self/task/*/syscall`), our open descriptors
//! (`/proc/self/fd`), a socket's peer, its `TCP_INFO` and its unread bytes (`FIONREAD`).
//! The queries only look: on a descriptor closed (or reused) since it was listed, they fail
//! harmlessly or answer for the new one, which callers check.

use std::io;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

/// How long `poll_until` waits for tiny_http's threads before going on regardless.
const POLL_DEADLINE: Duration = Duration::from_secs(1);

/// This process's open file descriptors (none where there is no `/proc`).
pub(super) fn own_descriptors() -> impl Iterator<Item = i32> {
    numbered_entries("/proc/self/fd")
}

/// The entries of a `/proc` directory that are numbers: thread ids, descriptors.
pub(super) fn numbered_entries(dir: &str) -> impl Iterator<Item = i32> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
}

/// The ids of this process's threads.
#[cfg(target_os = "linux")]
pub(super) fn tasks() -> impl Iterator<Item = i32> {
    numbered_entries("/proc/self/task")
}

/// The system call a thread is blocked in and its first argument, as
/// `/proc/self/task/TID/syscall` shows them (`288 0x3 ...`); None for a running thread.
#[cfg(target_os = "linux")]
pub(super) fn blocked_in(tid: i32) -> Option<(i64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    let mut fields = text.split_whitespace();
    let syscall = fields.next()?.parse::<i64>().ok()?;
    let first = u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
    Some((syscall, first))
}

/// True when the thread is blocked in `accept`/`accept4` on that socket.
#[cfg(target_os = "linux")]
pub(super) fn waits_in_accept(tid: i32, listener_fd: i32) -> bool {
    matches!(blocked_in(tid), Some((n, fd))
        if (n == libc::SYS_accept4 || n == libc::SYS_accept) && fd == listener_fd as u64)
}

/// How many threads are blocked on the futex at `address`.
#[cfg(target_os = "linux")]
pub(super) fn waiting_on(address: u64) -> usize {
    tasks()
        .filter_map(blocked_in)
        .filter(|&blocked| blocked == (libc::SYS_futex, address))
        .count()
}

/// True when a thread of this process is blocked reading from `fd`.
#[cfg(target_os = "linux")]
pub(super) fn is_read(fd: i32) -> bool {
    tasks().filter_map(blocked_in).any(|(syscall, first)| {
        (syscall == libc::SYS_recvfrom || syscall == libc::SYS_read) && first == fd as u64
    })
}

/// Our descriptors of the accepted connection whose client is at `peer` (tiny_http holds
/// two: one to read, one to write).
#[cfg(target_os = "linux")]
pub(super) fn accepted_from(peer: SocketAddr) -> Vec<i32> {
    own_descriptors()
        .filter(|&fd| peer_of(fd) == Some(peer))
        .collect()
}

/// The address of the other end of socket `fd`. The descriptor may have been closed, or
/// reused, since it was listed: the call only queries it and fails harmlessly.
#[cfg(target_os = "linux")]
pub(super) fn peer_of(fd: i32) -> Option<SocketAddr> {
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
pub(super) fn tcp_info(fd: i32) -> Option<(libc::tcp_info, usize)> {
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
pub(super) fn unread_bytes(fd: i32) -> Option<usize> {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `unread`.
    let asked = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) };
    (asked == 0).then(|| usize::try_from(unread).unwrap_or(0))
}

/// Checks `found` every 200 µs until it gives an answer or `POLL_DEADLINE` passes: the
/// threads usually get there within a millisecond, and start-up waits on them.
#[cfg(target_os = "linux")]
pub(super) fn poll_until<T>(mut found: impl FnMut() -> Option<T>) -> Option<T> {
    use std::time::Instant;
    let deadline = Instant::now() + POLL_DEADLINE;
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
