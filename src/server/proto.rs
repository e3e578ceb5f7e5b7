//! The code generated from `proto/` (see `build.rs`): SpiceDB's `authzed.api.v1`, `google.rpc`
//! and Pemba's `pemba.v1`, as messages, clients and servers, and the encoded descriptor set that
//! server reflection serves.

#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

pub mod authzed {
    pub mod api {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/authzed.api.v1.rs"));
        }
    }
}

pub mod google {
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}

pub mod pemba {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/pemba.v1.rs"));
    }
}

/// Every file under `proto/`, compiled and encoded (`FileDescriptorSet`).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
