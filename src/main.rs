//! The `pemba` binary: parses arguments and hands over to the library's command line.

// One call into mimalloc needs `unsafe` ([`release_freed_memory`]); nothing else may.
#![deny(unsafe_code)]

/// mimalloc instead of the system allocator. With a large heap of small allocations live (the
/// index at 1M relationships, or the benchmarks' reference relationship set beside it), glibc's
/// malloc spent up to half of LookupResources' time finding room for each result's id; mimalloc
/// does not degrade that way (BENCHMARKS.md, "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pemba::db::set_release_hook(release_freed_memory);
    pemba::cli::main()
}

/// Gives the memory an open freed (the load's buffers, the store's cache) back to the system
/// now, instead of after mimalloc's purge delay and only once something else is freed (a
/// process just opened at 1M relationships held 185-207 MB instead of about 120).
#[expect(unsafe_code, reason = "mimalloc's collection is a C call")]
fn release_freed_memory() {
    // SAFETY: `mi_collect` takes a flag by value and works on mimalloc's own state, which is
    // thread-safe; it may be called at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
