//! Process limits against connection floods: the open-file limit raised to its hard limit at
//! start-up, and a watchdog that notices when tiny_http's accept thread has died.
//!
//! Each connection costs tiny_http two file descriptors (a read and a write half of the
//! socket) and a thread. The soft `RLIMIT_NOFILE` is often 1024, so a few hundred idle
//! clients would make `accept()` fail with `EMFILE`; tiny_http 0.12 ends its accept loop at
//! the first such error (and a failed thread spawn panics it), after which the listening
//! socket still takes connections into its backlog but nobody accepts them. A server in
//! that state looks alive to a TCP probe, so the watchdog turns it into an exit with code 1
//! for a supervisor to restart.

use std::time::Duration;

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

/// How often the watchdog looks at the accept thread.
pub const WATCH_PERIOD: Duration = Duration::from_millis(200);

/// Calls `dead` once, when the thread `tid` of this process has ended. Watching a thread
/// id from `/proc` rather than probing the port: a probe connection would itself take a
/// connection thread, and would be accepted into the backlog even by a dead server.
#[cfg(target_os = "linux")]
pub fn watch_thread(tid: i32, dead: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let path = format!("/proc/self/task/{tid}");
    std::thread::Builder::new()
        .name("accept-watchdog".into())
        .spawn(move || {
            // Thread ids are reused only after the thread is gone, and no thread of ours
            // is made often enough to take this id back within one period.
            while std::path::Path::new(&path).exists() {
                std::thread::sleep(WATCH_PERIOD);
            }
            dead();
        })?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn watch_thread(_tid: i32, _dead: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    Err(std::io::Error::other("the accept watchdog needs Linux"))
}
