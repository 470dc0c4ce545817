//! The agent process's heap: one glibc malloc arena for every thread.
//!
//! glibc gives threads that contend for the heap arenas of their own (up to 8 per core), and
//! memory freed in one arena is only reused by the threads allocating from it. The daemon
//! parses objects on its runtime's threads and builds rulesets on a blocking thread, so each
//! phase's peak stayed resident in its own arena: at 10 000 Services the daemon's peak RSS
//! was 157 MB with the default arenas and 121 MB with one (`docs/benchmarks.md` §4). The agent
//! allocates from a few threads, in turns, so one arena costs it no measurable contention.

/// Limits malloc to one arena, unless the operator set `MALLOC_ARENA_MAX` (glibc reads it at
/// start-up and it wins). Call it first thing in `main`, before any thread exists.
pub fn one_arena() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets one of the allocator's parameters; it takes no pointer and is safe
    // to call at any time (glibc takes the arena lock), here before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn it_can_be_called_more_than_once() {
        super::one_arena();
        super::one_arena();
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 499_500);
    }
}
