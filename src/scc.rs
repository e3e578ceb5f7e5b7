//! Strongly connected components (SCCs) of a directed graph given as edge pairs, for the
//! schema's recursion analysis, the reference evaluator's data-level evaluation order and the
//! fast evaluator's set fixpoints.
//!
//! This is the only module that knows petgraph. Its algorithm (Kosaraju, built on petgraph's
//! iterative depth-first search) does not recurse on the native stack, so deep data is safe.

use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};

/// The components of the graph on nodes `0..n`, dependencies first: if `a` has an edge to `b`
/// in another component, `b`'s component comes before `a`'s.
pub fn strongly_connected_components(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut g: DiGraph<(), ()> = DiGraph::with_capacity(n, edges.len());
    for _ in 0..n {
        g.add_node(());
    }
    for &(a, b) in edges {
        if a < n && b < n {
            g.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
        }
    }
    kosaraju_scc(&g).into_iter().map(|c| c.into_iter().map(NodeIndex::index).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_come_dependencies_first() {
        // 0 -> 1 <-> 2 -> 3
        let comps = strongly_connected_components(4, &[(0, 1), (1, 2), (2, 1), (2, 3)]);
        let pos = |x: usize| comps.iter().position(|c| c.contains(&x)).unwrap();
        assert!(pos(3) < pos(1));
        assert_eq!(pos(1), pos(2));
        assert!(pos(1) < pos(0));
    }

    #[test]
    fn deep_chains_do_not_overflow_the_stack() {
        let n = 200_000;
        let edges: Vec<_> = (0..n - 1).map(|i| (i, i + 1)).collect();
        assert_eq!(strongly_connected_components(n, &edges).len(), n);
    }
}
