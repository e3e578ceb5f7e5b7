//! Three-valued results (false, unknown with missing parameters, true) and their combination
//! through union, intersection and exclusion (Kleene's logic, as SpiceDB combines caveats).

use std::collections::BTreeSet;

/// A three-valued truth. The order `False < Unknown < True` is the one fixpoint iteration climbs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tri {
    False,
    /// Depends on the named context parameters (boxed: the evaluators pass `Tri` by value on
    /// every step, and the common answers stay two words, not four).
    Unknown(Box<BTreeSet<String>>),
    True,
}

impl Tri {
    /// Unknown on the named parameters.
    pub fn unknown(missing: BTreeSet<String>) -> Tri {
        Tri::Unknown(Box::new(missing))
    }

    pub fn is_true(&self) -> bool {
        matches!(self, Tri::True)
    }

    pub fn is_false(&self) -> bool {
        matches!(self, Tri::False)
    }

    /// Union: true if either is true, false if both are false.
    pub fn or(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::True, _) | (_, Tri::True) => Tri::True,
            (Tri::False, x) | (x, Tri::False) => x,
            (Tri::Unknown(mut a), Tri::Unknown(b)) => {
                a.extend(*b);
                Tri::Unknown(a)
            }
        }
    }

    /// Intersection: false if either is false, true if both are true.
    pub fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::False, _) | (_, Tri::False) => Tri::False,
            (Tri::True, x) | (x, Tri::True) => x,
            (Tri::Unknown(mut a), Tri::Unknown(b)) => {
                a.extend(*b);
                Tri::Unknown(a)
            }
        }
    }

    /// Kleene negation: unknown stays unknown.
    pub fn negate(self) -> Tri {
        match self {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            u @ Tri::Unknown(_) => u,
        }
    }

    /// Exclusion `self - other`.
    pub fn minus(self, other: Tri) -> Tri {
        self.and(other.negate())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Tri {
        Tri::unknown([s.to_string()].into())
    }

    #[test]
    fn a_tri_is_two_words() {
        assert_eq!(std::mem::size_of::<Tri>(), 16);
    }

    #[test]
    fn kleene_tables() {
        assert_eq!(Tri::True.or(u("a")), Tri::True);
        assert_eq!(Tri::False.or(u("a")), u("a"));
        assert_eq!(Tri::False.and(u("a")), Tri::False);
        assert_eq!(Tri::True.and(u("a")), u("a"));
        assert_eq!(u("a").and(u("b")), Tri::unknown(["a".to_string(), "b".to_string()].into()));
        assert_eq!(Tri::True.minus(u("a")), u("a"));
        assert_eq!(Tri::True.minus(Tri::True), Tri::False);
        assert_eq!(u("a").minus(Tri::True), Tri::False);
    }
}
