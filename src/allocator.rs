//! Settings of mimalloc, the allocator the `chancery` binary, the benches and
//! the timing probe use (each declares it as its global allocator).

/// Keeps memory that was freed for reuse instead of returning it to the
/// operating system a second later. A large batch, import or analysis builds and
/// drops structures of hundreds of megabytes; with mimalloc's default, pages
/// went back to the kernel between phases and were faulted in (and zeroed by
/// the kernel) again: a quarter of a 100,000-participant analysis's CPU
/// samples, and 10–15% of its time.
/// The memory is returned when the process ends. Call it first in `main`;
/// harmless where another allocator is the global one.
pub fn keep_freed_memory() {
    // SAFETY: `mi_option_set` only stores the option's value.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

/// `mi_option_purge_delay` in mimalloc 2 and 3 (`include/mimalloc.h`), which
/// the sys crate does not name: milliseconds before freed memory is purged,
/// −1 for never.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_the_purge_delay() {
        // The default purge delay of the mimalloc built here (version 3) is
        // 1,000 ms: if option 15 were another option, this would show it.
        // SAFETY: reading an option.
        let before = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(before, 1000);
        }
        keep_freed_memory();
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, -1);
    }
}
