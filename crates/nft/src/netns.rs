//! Running backend calls in another network namespace, from a thread of its own.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Runs `f` on a new thread that has joined the network namespace at `path` (for example
/// `/var/run/netns/<name>`), and returns its result. Netlink sockets `f` opens belong to that
/// namespace; the calling thread's namespace is untouched.
pub fn in_netns<T, F>(path: &Path, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let file = File::open(path)?;
    let handle = std::thread::spawn(move || -> io::Result<T> {
        // SAFETY: setns only reads the descriptor, which `file` keeps open for the call; it
        // changes the network namespace of this thread alone (a thread we own and end after
        // `f`), and no memory is shared with the kernel.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f())
    });
    handle
        .join()
        .map_err(|_| io::Error::other("the thread in the network namespace panicked"))?
}
