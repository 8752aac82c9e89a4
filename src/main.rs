//! Thin entry point: parse the command line, hand it to the library, map errors to exit codes.

fn main() -> std::process::ExitCode {
    faultline::cli::main()
}
