//! The open-file limit, raised to its hard limit at start-up.
//!
//! Each connection costs tiny_http two file descriptors (a read and a write half of the
//! socket) and a thread. The soft `RLIMIT_NOFILE` is often 1024, so a few hundred idle
//! clients would make `accept()` fail with `EMFILE`, and tiny_http 0.12 ends its accept
//! loop at the first such error (`accept.rs` notices).

/// The soft and hard open-file limits before and after `raise_open_files_limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    pub before: u64,
    pub now: u64,
}

/// Raises the soft open-file limit to the hard limit; an unprivileged process may always
/// do this.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every Unix
pub fn raise_open_files_limit() -> std::io::Result<OpenFiles> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur as u64;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(OpenFiles {
        before,
        now: limit.rlim_cur as u64,
    })
}

#[cfg(not(unix))]
pub fn raise_open_files_limit() -> std::io::Result<OpenFiles> {
    Err(std::io::Error::other("open-file limits are a Unix notion"))
}
