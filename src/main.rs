//! The `pemba` binary: parses arguments and hands over to the library's command line.

#![forbid(unsafe_code)]

/// mimalloc instead of the system allocator. With a large heap of small allocations live (the
/// index at 1M relationships, or the benchmarks' reference relationship set beside it), glibc's
/// malloc spent up to half of LookupResources' time finding room for each result's id; mimalloc
/// does not degrade that way (BENCHMARKS.md, "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pemba::cli::main()
}
