//! The fast evaluator: Check and LookupResources over the index's dense ids and id sets, with
//! the reference evaluator's semantics.
//!
//! Check (`point.rs`) walks `object#member` nodes depth first over interned ids, memoizing each
//! node's three-valued value, trying a permission's cheap terms first and stopping a union at
//! the first yes and an intersection or exclusion at the first no. Relations that nest only in
//! themselves are answered from the Leopard closure (one intersection with the subject's direct
//! groups). Why this equals the reference's least fixpoint: when the walk meets no node that is
//! still being evaluated, the nodes it visits form a DAG, and on a DAG the least fixpoint is
//! exactly bottom-up evaluation; short-circuits skip only operands that cannot change the value
//! (`True ∨ x = True`, `False ∧ x = False`, `False − x = False`). When the walk does meet a
//! node still in progress (a cycle in the data), or exceeds its frame budget, it gives up and
//! the caller asks the reference evaluator, which solves cycles by Kleene iteration.
//!
//! LookupResources (`sets.rs`) computes, for every schema node the permission depends on, two
//! bitmaps of object ids: `yes` (surely true: derived from unconditional edges only) and
//! `maybe` (possibly true or conditional: caveated and expiring edges counted as present), by
//! set algebra over the schema's equations, each strongly connected group of nodes iterated to
//! its least fixpoint. `yes ⊆ true ⊆ true ∪ conditional ⊆ maybe` holds node by node (for
//! `a − b`: `yes = yes(a) − maybe(b)`, `maybe = maybe(a) − yes(b)`), so objects in `yes` are
//! answered at once and only `maybe − yes` needs a point Check.
//!
//! Both read a [`Plan`] (`plan.rs`): what is resolved about the schema on one index snapshot,
//! built once per snapshot by whoever keeps the snapshot (the `query` layer) and keyed by the
//! schema compiler's dense ids.
//!
//! Differences from the reference, both deliberate: a caveat whose value cannot change the
//! answer is not evaluated (so its errors are not reported), and work is counted differently.

pub mod plan;
pub mod point;
pub mod sets;

pub use plan::Plan;
pub use point::Point;
pub use sets::resource_sets;

use super::graph::IndexGraph;
use super::idset::IdSet;
use super::relation::RelationIndex;
use crate::conditions::Conditions;
use crate::engine::Env;
use crate::model::SubjectRef;
use crate::schema::{CompiledSchema, MemberId};

/// What the fast evaluator reads for one request: the schema, the index snapshot, the plan of
/// that schema on that snapshot, the conditions engine and the request's environment.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub schema: &'a CompiledSchema,
    pub ix: &'a IndexGraph,
    pub plan: &'a Plan,
    pub conditions: &'a Conditions,
    pub env: Env,
}

/// The id a [`Point`] gives its subject (none for a wildcard, or a subject no edge names).
pub fn subject_id(ix: &IndexGraph, subject: &SubjectRef) -> Option<u32> {
    if subject.is_wildcard() { None } else { ix.id(&subject.object) }
}

/// The member a subject set names (`doc:1#view` names `doc`'s `view`); `None` for a terminal
/// subject. Evaluation reaching that member on the subject's object is true.
pub fn subject_member(schema: &CompiledSchema, subject: &SubjectRef) -> Option<MemberId> {
    let r = subject.relation.as_ref()?;
    schema.definition(&subject.object.ty)?.member(r)
}

/// Whether `set` holds `id` or one of `up`, trying the smaller side against the larger.
fn meets(set: &IdSet, id: u32, up: Option<&IdSet>) -> bool {
    set.contains(id)
        || up
            .is_some_and(|u| if set.len() <= u.len() { set.any(|x| u.contains(x)) } else { u.any(|y| set.contains(y)) })
}

/// Whether a subject whose direct objects of a self-nesting relation (with a valid closure)
/// are `direct` is in `g`: one of them is `g` or nested below it.
fn direct_member(ri: &RelationIndex, direct: Option<&IdSet>, g: u32) -> bool {
    direct.is_some_and(|d| meets(d, g, ri.closure().and_then(|c| c.descendants(g))))
}

/// A schema, an index of some relationships and its plan, for the evaluators' unit tests.
#[cfg(test)]
pub(super) struct Fixture {
    pub conditions: Conditions,
    pub schema: CompiledSchema,
    pub ix: IndexGraph,
    pub plan: Plan,
}

#[cfg(test)]
impl Fixture {
    pub fn new(schema: &str, rels: &[crate::model::Relationship]) -> Fixture {
        let conditions = Conditions::new();
        let schema = crate::schema::compile_text(schema, &conditions).unwrap();
        let ix = IndexGraph::build(rels);
        let plan = Plan::build(&schema, &ix);
        Fixture { conditions, schema, ix, plan }
    }

    /// Its context, with `now` for the clock.
    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            schema: &self.schema,
            ix: &self.ix,
            plan: &self.plan,
            conditions: &self.conditions,
            env: Env::new(crate::model::Timestamp::now()),
        }
    }
}
