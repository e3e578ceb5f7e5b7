//! Compiles the gRPC definitions under `proto/` (SpiceDB's `authzed.api.v1`, `google.rpc` and
//! Pemba's `pemba.v1`) into Rust when the `server` feature is on: protox parses them (pure Rust,
//! no protoc), tonic-prost-build generates messages, clients and servers, and the encoded
//! descriptor set is kept for server reflection and the wire-compatibility test.

#[cfg_attr(feature = "server", expect(clippy::panic, reason = "a build script reports failure by panicking"))]
fn main() {
    #[cfg(feature = "server")]
    if let Err(e) = server::compile() {
        panic!("compiling proto/: {e}");
    }
}

#[cfg(feature = "server")]
mod server {
    use std::path::PathBuf;

    pub const FILES: &[&str] = &[
        "authzed/api/v1/core.proto",
        "authzed/api/v1/debug.proto",
        "authzed/api/v1/permission_service.proto",
        "authzed/api/v1/schema_service.proto",
        "authzed/api/v1/watch_service.proto",
        "authzed/api/v1/error_reason.proto",
        "google/rpc/status.proto",
        "google/rpc/error_details.proto",
        "pemba/v1/pemba.proto",
    ];

    pub fn compile() -> Result<(), Box<dyn std::error::Error>> {
        println!("cargo:rerun-if-changed=proto");
        let out = PathBuf::from(std::env::var("OUT_DIR")?);
        let mut compiler = protox::Compiler::new(["proto"])?;
        compiler.include_source_info(false).include_imports(true);
        compiler.open_files(FILES.iter().copied())?;
        std::fs::write(out.join("descriptor.bin"), compiler.encode_file_descriptor_set())?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(compiler.file_descriptor_set())?;
        Ok(())
    }
}
