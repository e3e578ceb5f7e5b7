//! The `pemba` binary: parses arguments and hands over to the library's command line.

fn main() -> std::process::ExitCode {
    pemba::cli::main()
}
