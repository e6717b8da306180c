//! The `skiff` binary: see `cli::skiff`.

fn main() -> std::process::ExitCode {
    cli::skiff::main()
}
