//! The `podctl` binary: a kubectl-style client for Skiff's API server; see `cli::podctl`.

fn main() -> std::process::ExitCode {
    cli::podctl::main()
}
