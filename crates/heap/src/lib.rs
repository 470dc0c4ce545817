//! The agent process's heap: glibc malloc settings for a process that holds a large, slowly
//! changing state and builds large short-lived buffers around it.
//!
//! - **One arena for every thread.** glibc gives threads that contend for the heap arenas of
//!   their own (up to 8 per core), and memory freed in one arena is only reused by the threads
//!   allocating from it. The daemon parses objects on its runtime's threads and builds
//!   rulesets on a blocking thread, so each phase's peak stayed resident in its own arena: at
//!   10 000 Services the daemon's peak RSS was 157 MB with the default arenas and 121 MB with
//!   one (`docs/benchmarks.md` §4). The agent allocates from a few threads, in turns, so one
//!   arena costs it no measurable contention.
//! - **Fixed mmap and trim thresholds** (1 MiB; glibc starts at 128 KiB). By default
//!   glibc raises both each time a large block is freed: the mmap threshold up to the size of
//!   that block (later blocks of that size come from the heap, where they leave holes when
//!   freed) and the trim threshold to twice it (free memory at the top of the heap stays
//!   resident). After a sync's large buffers (a stage's netlink batch, a read-back's dump) the
//!   daemon kept megabytes it no longer used: fixed, its peak at 10 000 Services is about
//!   4 MB lower. A block above the threshold costs an `mmap`, a `munmap` and fresh pages each
//!   time: at 128 KiB the restart's read-back (many such blocks) was 18 % slower (383 against
//!   323 ms at 10 000 Services), at 1 MiB 6 % (343 ms) for the same peak.
//!
//! Each setting is left alone when the operator set its environment variable
//! (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`): glibc reads those at
//! start-up and they win.

/// The mmap and trim threshold, fixed (see the module documentation).
pub const THRESHOLD: i32 = 1024 * 1024;

/// Applies the settings above. Call it first thing in `main`, before any thread exists.
pub fn configure() {
    let unset = |name: &str| std::env::var_os(name).is_none();
    if unset("MALLOC_ARENA_MAX") {
        set(Param::ArenaMax, 1);
    }
    if unset("MALLOC_MMAP_THRESHOLD_") && unset("MALLOC_TRIM_THRESHOLD_") {
        set(Param::MmapThreshold, THRESHOLD);
        set(Param::TrimThreshold, THRESHOLD);
    }
}

/// The malloc parameters we set.
#[derive(Clone, Copy)]
enum Param {
    ArenaMax,
    MmapThreshold,
    TrimThreshold,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(param: Param, value: i32) {
    let param = match param {
        Param::ArenaMax => libc::M_ARENA_MAX,
        Param::MmapThreshold => libc::M_MMAP_THRESHOLD,
        Param::TrimThreshold => libc::M_TRIM_THRESHOLD,
    };
    // SAFETY: mallopt sets one of the allocator's parameters; it takes no pointer and is safe
    // to call at any time (glibc takes the arena lock), here before any other thread exists.
    // It returns 0 for a value it refuses, which leaves the default in place: nothing to do.
    unsafe {
        libc::mallopt(param, value);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_param: Param, _value: i32) {}

#[cfg(test)]
mod tests {
    #[test]
    fn it_can_be_called_more_than_once() {
        super::configure();
        super::configure();
        // Small and large blocks still come and go.
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 499_500);
        let big = vec![1u8; 4 * super::THRESHOLD as usize];
        assert_eq!(
            big.iter().map(|&b| usize::from(b)).sum::<usize>(),
            big.len()
        );
    }
}
