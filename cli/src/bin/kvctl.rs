//! The `kvctl` binary: an etcdctl-compatible store client; see `cli::kvctl`.

fn main() -> std::process::ExitCode {
    cli::kvctl::main()
}
