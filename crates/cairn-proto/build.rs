//! Compiles `proto/cairn/v1/*.proto` with protox (pure Rust, no system `protoc`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let files = [
        "cairn/v1/common.proto",
        "cairn/v1/master.proto",
        "cairn/v1/chunk.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
