//! Leopard-style closures (Zanzibar §3.2.4) for a relation that nests in itself through
//! unconditional edges (`group#member@group:eng#member`, `folder#parent@folder:x`): for each
//! object, every object nested below it (its descendants) and above it (its ancestors), kept
//! current incrementally as edges are added and removed. "Is u a member of g" becomes "do u's
//! direct groups intersect g's descendants (or g)", one set intersection instead of a walk.

use std::collections::VecDeque;

use super::edges::DenseSets;
use super::idset::IdSet;

#[derive(Debug, Clone, Default)]
pub struct Closure {
    /// Direct nesting: parent → children.
    children: DenseSets,
    /// Transitive: object → every object nested below it (itself excluded unless in a cycle).
    descendants: DenseSets,
    /// Transitive: object → every object it is nested below.
    ancestors: DenseSets,
    /// Set insertions and removals made so far (the cost of keeping the closure current).
    pub updates: u64,
    /// Entries of `descendants` (each pair is also one entry of `ancestors`).
    pairs: usize,
}

impl Closure {
    pub fn new() -> Closure {
        Closure::default()
    }

    pub fn descendants(&self, id: u32) -> Option<&IdSet> {
        self.descendants.get(id)
    }

    pub fn ancestors(&self, id: u32) -> Option<&IdSet> {
        self.ancestors.get(id)
    }

    /// Whether `inner` is `outer` or nested below it.
    pub fn reaches(&self, outer: u32, inner: u32) -> bool {
        outer == inner || self.descendants.get(outer).is_some_and(|d| d.contains(inner))
    }

    /// Records that `child` is nested directly in `parent`; returns the set updates made.
    pub fn add_edge(&mut self, parent: u32, child: u32) -> u64 {
        if self.children.get(parent).is_some_and(|c| c.contains(child)) {
            return 0;
        }
        self.children.slot(parent).insert(child);
        let mut above: Vec<u32> = self.ancestors.get(parent).map(|a| a.iter().collect()).unwrap_or_default();
        above.push(parent);
        let mut below: Vec<u32> = self.descendants.get(child).map(|d| d.iter().collect()).unwrap_or_default();
        below.push(child);
        let mut n = 0;
        // Only sets that change are touched (and so copied, when a snapshot shares them).
        for &a in &above {
            for &d in &below {
                if !self.descendants.get(a).is_some_and(|x| x.contains(d)) && self.descendants.slot(a).insert(d) {
                    n += 1;
                    self.pairs += 1;
                }
                if !self.ancestors.get(d).is_some_and(|x| x.contains(a)) && self.ancestors.slot(d).insert(a) {
                    n += 1;
                }
            }
        }
        self.updates += n;
        n
    }

    /// Removes a direct nesting and repairs the closure of everything above `parent`.
    pub fn remove_edge(&mut self, parent: u32, child: u32) -> u64 {
        let removed = self.children.get(parent).is_some_and(|c| c.contains(child))
            && self.children.get_mut(parent).is_some_and(|c| c.remove(child));
        if !removed {
            return 0;
        }
        self.children.tidy(parent);
        let mut affected: Vec<u32> = self.ancestors.get(parent).map(|a| a.iter().collect()).unwrap_or_default();
        affected.push(parent);
        let mut n = 0;
        for a in affected {
            let fresh = self.walk(a);
            let old = self.descendants.get_mut(a).map(std::mem::take).unwrap_or_default();
            self.pairs = self.pairs - old.len() + fresh.len();
            for d in old.iter() {
                if !fresh.contains(d) {
                    if let Some(anc) = self.ancestors.get_mut(d) {
                        anc.remove(a);
                    }
                    self.ancestors.tidy(d);
                    n += 2;
                }
            }
            for d in fresh.iter() {
                if !old.contains(d) {
                    self.ancestors.slot(d).insert(a);
                    n += 2;
                }
            }
            if fresh.is_empty() {
                self.descendants.tidy(a);
            } else {
                *self.descendants.slot(a) = fresh;
            }
        }
        self.updates += n;
        n
    }

    /// Everything reachable from `start` through direct nesting (breadth first, no recursion).
    fn walk(&self, start: u32) -> IdSet {
        let mut seen = IdSet::default();
        let mut queue: VecDeque<u32> = self.children.get(start).map(|c| c.iter().collect()).unwrap_or_default();
        while let Some(x) = queue.pop_front() {
            if seen.insert(x)
                && let Some(c) = self.children.get(x)
            {
                queue.extend(c.iter());
            }
        }
        seen
    }

    /// At most how many pairs adding the edge `parent → child` would add.
    pub fn pairs_added_at_most(&self, parent: u32, child: u32) -> usize {
        let above = self.ancestors.get(parent).map_or(0, IdSet::len) + 1;
        let below = self.descendants.get(child).map_or(0, IdSet::len) + 1;
        above.saturating_mul(below)
    }

    /// (ancestor, descendant) pairs held.
    pub fn pairs(&self) -> usize {
        self.pairs
    }

    /// Heap bytes held by the closure's tables and sets.
    pub fn heap_bytes(&self) -> usize {
        [&self.children, &self.descendants, &self.ancestors].iter().map(|m| m.heap_bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn reachable(edges: &BTreeSet<(u32, u32)>, start: u32) -> BTreeSet<u32> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<u32> = edges.iter().filter(|(p, _)| *p == start).map(|(_, c)| *c).collect();
        while let Some(x) = stack.pop() {
            if seen.insert(x) {
                stack.extend(edges.iter().filter(|(p, _)| *p == x).map(|(_, c)| *c));
            }
        }
        seen
    }

    /// Random adds and removes (cycles included) against a closure recomputed from scratch.
    #[test]
    fn incremental_closure_equals_recomputed_closure() {
        let mut c = Closure::new();
        let mut edges = BTreeSet::new();
        let mut x: u64 = 42;
        for step in 0..3000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (p, ch) = (((x >> 33) % 12) as u32, ((x >> 40) % 12) as u32);
            if (x >> 20).is_multiple_of(3) {
                c.remove_edge(p, ch);
                edges.remove(&(p, ch));
            } else {
                c.add_edge(p, ch);
                edges.insert((p, ch));
            }
            if step % 50 == 0 {
                for g in 0..12 {
                    let want = reachable(&edges, g);
                    let got: BTreeSet<u32> = c.descendants(g).map(|d| d.iter().collect()).unwrap_or_default();
                    assert_eq!(got, want, "descendants of {g} after step {step}");
                    for h in 0..12 {
                        let up = c.ancestors(h).is_some_and(|a| a.contains(g));
                        assert_eq!(up, want.contains(&h), "ancestors of {h}");
                    }
                }
            }
        }
        assert!(c.updates > 0);
    }
}
