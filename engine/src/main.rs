//! The `herald` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    herald::cli::main()
}
