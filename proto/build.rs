//! Compiles the .proto files with protox (pure Rust: no system `protoc` needed) and generates
//! tonic/prost code plus the descriptor set served by gRPC reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "pyralog/v1/pyralog.proto",
        "pyralog/internal/v1/cluster.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("pyralog_descriptor.bin"), fds.encode_to_vec())?;
    // The client listener's reflection lists only the public API.
    let public = protox::compile(["pyralog/v1/pyralog.proto"], ["proto"])?;
    std::fs::write(
        out.join("pyralog_public_descriptor.bin"),
        public.encode_to_vec(),
    )?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
