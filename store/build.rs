//! Compiles the etcd v3 and peer protobuf definitions with a pure-Rust protobuf compiler, so the
//! build needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/rpc.proto", "proto/kv.proto", "proto/auth.proto", "proto/peer.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Methods we have not written answer UNIMPLEMENTED with a message, not a hang.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}
