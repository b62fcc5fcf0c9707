//! Compiles `proto/cairn/v1/*.proto` with protox (pure Rust, no system `protoc`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The runtime variable, not `env!`: a build script compiled for one checkout must not
    // read another checkout's protos when the target directory is shared.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let files = [
        "cairn/v1/common.proto",
        "cairn/v1/master.proto",
        "cairn/v1/chunk.proto",
        "cairn/v1/fs.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    // Status messages serialize to JSON as they are, for `cairn status --json` and the
    // master's /status endpoint: one shape, every field, no hand-written mapping.
    let mut config = tonic_prost_build::configure().bytes(".");
    for msg in ["ClusterStatusResponse", "ServerStatus", "StatusEvent"] {
        config = config.type_attribute(format!("cairn.v1.{msg}"), "#[derive(serde::Serialize)]");
    }
    config.compile_fds(fds)?;
    Ok(())
}
