//! Generates the Rust code of `proto/switchboard/v1/*.proto` with the
//! `protoc` that `protoc-bin-vendored` ships, so that building needs no
//! system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let protos = ["switchboard/v1/router.proto", "switchboard/v1/api.proto"].map(|p| root.join(p));
    // The protos live outside this crate, so cargo would not notice their
    // changes by itself (and a custom `Config` emits no such line).
    println!("cargo:rerun-if-changed={}", root.display());
    let mut config = tonic_prost_build::Config::new();
    // The vendored binary, whatever PROTOC says: the same protoc everywhere.
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // `bytes` fields are `bytes::Bytes`: a delivery's packet is shared, not
    // copied, between decoding and the sockets' queues.
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(
        config,
        &protos,
        &[root, protoc_bin_vendored::include_path()?],
    )?;
    Ok(())
}
