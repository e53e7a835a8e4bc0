//! Compiles `proto/counter.proto` with protox, a protobuf compiler written in Rust, so building
//! the example needs no `protoc` on the machine. With `protoc` installed,
//! `tonic_prost_build::compile_protos("proto/counter.proto")` does the same.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["counter.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
