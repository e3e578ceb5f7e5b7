//! The in-memory index (in progress): dense id sets that promote to roaring bitmaps, and
//! Leopard-style closures for relations that nest in themselves. The fast evaluator that will
//! read them does not exist yet; evaluation still runs on the reference evaluator.
//!
//! Architecture invariant: the only module that knows roaring. The index is derived state: it
//! can always be rebuilt from the store, and answers with it must equal answers without it.

pub mod closure;
pub mod idset;

pub use closure::Closure;
pub use idset::IdSet;
