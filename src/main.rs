//! The `pemba` binary: parses arguments and hands over to the library's command line.

// One exception, `purge_freed_memory_sooner`: a call into mimalloc's C API.
#![deny(unsafe_code)]

/// mimalloc instead of the system allocator. With a large heap of small allocations live (the
/// index at 1M relationships, or the benchmarks' reference relationship set beside it), glibc's
/// malloc spent up to half of LookupResources' time finding room for each result's id; mimalloc
/// does not degrade that way (BENCHMARKS.md, "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its `mimalloc.h`, the same in its versions 2 and 3;
/// `libmimalloc-sys` names no constant for it).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Freed memory becomes eligible to go back to the system 10 ms after it is freed (mimalloc 2's
/// default) instead of mimalloc 3's 1 s; mimalloc returns it at its next purge (when a later
/// page is freed). An open frees about 70 MB at M (the pages sled read to build the index, the
/// build's buffers); with a 1 s delay they stayed resident until some page was freed a second
/// later, which a quiet server may not do for long (BENCHMARKS.md, "Memory after an open").
/// `MIMALLOC_PURGE_DELAY` in the environment, which mimalloc reads itself, is left to rule.
#[expect(unsafe_code, reason = "mimalloc's options are set through its C API only")]
fn purge_freed_memory_sooner() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores a number in mimalloc's table of options; it is called
    // before any other thread exists (its documentation asks for no concurrent calls), and the
    // option is one mimalloc reads whenever it decides what to purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10) };
}

fn main() -> std::process::ExitCode {
    purge_freed_memory_sooner();
    pemba::cli::main()
}
