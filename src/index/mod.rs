//! The in-memory index: dense id sets that promote to roaring bitmaps (`idset.rs`),
//! Leopard-style closures for relations that nest in themselves (`closure.rs`), the interned
//! relationship graph that holds them (`graph.rs`), and the fast evaluator over it (`eval.rs`:
//! point Checks on interned ids, LookupResources by set algebra).
//!
//! Architecture invariant: the only module that knows roaring. The index is derived state: it
//! can always be rebuilt from the store, and answers with it must equal answers without it.

pub mod closure;
pub mod eval;
pub mod graph;
pub mod hash;
pub mod idset;
pub mod shared;

pub use closure::Closure;
pub use graph::IndexGraph;
pub use idset::IdSet;
