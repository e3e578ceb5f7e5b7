//! The in-memory index (in progress): dense id sets that promote to roaring bitmaps
//! (`idset.rs`), Leopard-style closures for relations that nest in themselves (`closure.rs`), and
//! the interned relationship graph that holds them (`graph.rs`). The fast evaluator that will
//! read them does not exist yet; evaluation still runs on the reference evaluator.
//!
//! Architecture invariant: the only module that knows roaring. The index is derived state: it
//! can always be rebuilt from the store, and answers with it must equal answers without it.

pub mod closure;
pub mod graph;
pub mod idset;

pub use closure::Closure;
pub use graph::IndexGraph;
pub use idset::IdSet;
