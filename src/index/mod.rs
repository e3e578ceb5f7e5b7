//! The in-memory index: dense id sets that promote to roaring bitmaps (`idset.rs`),
//! Leopard-style closures for relations that nest in themselves (`closure.rs`), the interned
//! relationship graph that holds them (`graph.rs` with `interner.rs`, `edges.rs`,
//! `relation.rs`), the same graph as the reference evaluator's data (`relations.rs`), and the
//! fast evaluator over it (`eval/`: the per-snapshot plan, point Checks on interned ids,
//! LookupResources by set algebra).
//!
//! Architecture invariant: the only module that knows roaring. The index is derived state: it
//! can always be rebuilt from the store, and answers with it must equal answers without it. It
//! reads the engine's types (`Relations`, `Tri`, `EvalError`) and never chooses between the
//! evaluators: `query` does.

pub mod closure;
pub mod edges;
pub mod eval;
pub mod graph;
pub mod hash;
pub mod idset;
pub mod interner;
pub mod relation;
pub mod relations;
pub mod shared;

pub use closure::Closure;
pub use graph::{IndexGraph, WILDCARD};
pub use idset::IdSet;
