//! The plan: what the fast evaluator resolves about one schema against one index snapshot, once
//! for every Check on that snapshot instead of once per Check. Each schema relation's slot in
//! the index and how it may be evaluated, each arrow's tupleset slot and the member it reaches
//! on each subject type, the member each edge kind's subject sets name, and each recursive
//! permission's tree summary. Tables are indexed by the schema compiler's dense ids, so the
//! plan holds no references into the schema or the index: whoever keeps the snapshot keeps its
//! plan beside it.

use std::sync::Arc;

use crate::index::graph::IndexGraph;
use crate::index::relation::RelationIndex;
use crate::schema::ast::ArrowKind;
use crate::schema::{
    AllowedKind, ArrowId, CompiledSchema, Definition, DefinitionId, MemberId, Permission, PermissionId, Relation,
    RelationId, Rewrite,
};

/// See the module documentation.
pub struct Plan {
    /// By [`RelationId`].
    relations: Vec<RelPlan>,
    /// By [`ArrowId`].
    arrows: Vec<ArrowPlan>,
    /// By [`PermissionId`], for those with a summary.
    summaries: Vec<Option<Arc<TreeSummary>>>,
    /// By [`DefinitionId`]: the index slots of the definition's relations that have one.
    rows: Vec<Vec<u32>>,
    /// By index slot, then by edge kind position: the member a kind's subject sets name
    /// (`group#member` edges name `group`'s `member`), when the schema has it.
    kind_members: Vec<Vec<Option<MemberId>>>,
}

/// How a point Check may evaluate one schema relation.
#[derive(Clone, Copy, Default)]
pub(super) struct RelPlan {
    /// The relation's slot in the index (`None`: no edge was ever written).
    pub(super) slot: Option<u32>,
    /// The relation nests subject sets only in itself and its closure is valid: answered from
    /// the closure, which never evaluates another node.
    pub(super) closure: bool,
    /// Some edge names a subject set, so evaluating it may reach other nodes (and cycles).
    pub(super) nests: bool,
}

/// One arrow resolved.
#[derive(Clone, Default)]
pub(super) struct ArrowPlan {
    /// The tupleset relation's slot.
    pub(super) slot: Option<u32>,
    /// Per edge kind of the tupleset relation: the member `computed` names on the kind's
    /// subject type (`None`: the type lacks it, so the arrow reaches nothing there).
    pub(super) targets: Vec<Option<MemberId>>,
}

/// A permission that recursion through a tree relation only widens: every member reached from
/// it through same-object references (its members, `M`) is a union of relations, of members
/// of `M`, and of arrows `tree->m` with `m` in `M`, minus relations (`excluded`); and each
/// member of `M` has the arrow `tree->itself`. The tree relation links objects of one type
/// only, and the index keeps its closure. Then, for a subject that no excluded relation names
/// anywhere, the permission holds on `x` exactly when one of the `leaves` holds on `x` or on
/// an object the closure reaches from `x`: its least fixpoint is that union. (Drive's folder
/// `view` and `edit`, with `parent` as the tree and `banned` excluded.)
pub(super) struct TreeSummary {
    /// The tree relation's slot in the index.
    pub(super) tree: u32,
    /// The leaves' edge kinds (a leaf without edges has none).
    pub(super) leaves: Vec<LeafKind>,
    /// The excluded relations' slots (one without edges names nobody and is left out).
    pub(super) excluded: Vec<u32>,
    /// Other permissions of the definition whose summaries have the same tree and exclusions
    /// and every leaf of this one: where the summary answers, this permission holds only where
    /// they hold (Drive's `edit` is within `view`).
    pub(super) within: Vec<PermissionId>,
}

impl TreeSummary {
    /// Whether every leaf of `self` is a leaf of `other`, over the same tree with the same
    /// exclusions: then, where both summaries answer, `self` holds only where `other` does.
    fn is_within(&self, other: &TreeSummary) -> bool {
        let same_excluded = self.excluded.iter().all(|x| other.excluded.contains(x))
            && other.excluded.iter().all(|x| self.excluded.contains(x));
        self.tree == other.tree && same_excluded && self.leaves.iter().all(|l| other.leaves.contains(l))
    }
}

/// One edge kind of a summary's leaf: the relation's slot and the kind's position in it.
#[derive(PartialEq)]
pub(super) enum LeafKind {
    /// Terminal subjects (and wildcards) of the kind's subject type.
    Terminal { slot: u32, kind: usize },
    /// Subject sets `g#m` of a relation that nests only in itself: the subject's memberships
    /// come from the closure of `group` (a slot).
    Sets { slot: u32, kind: usize, group: u32 },
    /// Subject sets of a relation no relationship has: nobody is a member.
    Empty,
    /// Subject sets the summary cannot follow (a permission, or a relation nesting in others).
    Unusable,
}

/// Most members a permission's summary may span.
const SUMMARY_MEMBERS: usize = 16;

impl Plan {
    /// The plan of `schema` on `ix`.
    pub fn build(schema: &CompiledSchema, ix: &IndexGraph) -> Plan {
        let relations = schema.relations().map(|r| rel_plan(schema, ix, r)).collect();
        let mut arrows = vec![ArrowPlan::default(); schema.arrow_count()];
        for p in schema.permissions() {
            let Some(def) = schema.definition_by_id(p.definition) else { continue };
            for rw in p.rewrite.nodes() {
                let Rewrite::Arrow { id, tupleset, computed, .. } = rw else { continue };
                let slot = ix.relation_slot(&def.name, tupleset);
                let targets = slot.and_then(|s| ix.slot(s)).map_or_else(Vec::new, |ri| {
                    ri.kinds
                        .iter()
                        .map(|k| schema.definition(&k.subject_type).and_then(|d| d.member(computed)))
                        .collect()
                });
                if let Some(a) = arrows.get_mut(id.index()) {
                    *a = ArrowPlan { slot, targets };
                }
            }
        }
        let kind_members = (0..ix.slot_count())
            .map(|slot| {
                ix.slot(slot).map_or_else(Vec::new, |ri| {
                    ri.kinds
                        .iter()
                        .map(|k| {
                            let sr = k.subject_relation.as_ref()?;
                            schema.definition(&k.subject_type)?.member(sr)
                        })
                        .collect()
                })
            })
            .collect();
        let mut summaries = vec![None; schema.permission_count()];
        for def in schema.definitions() {
            let mut found: Vec<(PermissionId, TreeSummary)> = schema
                .permissions_of(def)
                // A permission recursing through an exclusion is not a union that only widens.
                .filter(|p| p.recursive && !schema.unstratified(MemberId::Permission(p.id)))
                .filter_map(|p| Some((p.id, analyze(schema, def, p, ix)?)))
                .collect();
            for i in 0..found.len() {
                let within: Vec<PermissionId> = match found.get(i) {
                    Some((a, s)) => found.iter().filter(|(b, t)| b != a && s.is_within(t)).map(|(b, _)| *b).collect(),
                    None => Vec::new(),
                };
                if let Some((_, s)) = found.get_mut(i) {
                    s.within = within;
                }
            }
            for (id, s) in found {
                if let Some(slot) = summaries.get_mut(id.index()) {
                    *slot = Some(Arc::new(s));
                }
            }
        }
        let rows = schema
            .definitions()
            .map(|def| schema.relations_of(def).filter_map(|r| ix.relation_slot(&def.name, &r.name)).collect())
            .collect();
        Plan { relations, arrows, summaries, rows, kind_members }
    }

    pub(super) fn relation(&self, id: RelationId) -> RelPlan {
        self.relations.get(id.index()).copied().unwrap_or_default()
    }

    /// The index slots of a definition's relations (those with edges).
    pub(super) fn row(&self, def: DefinitionId) -> &[u32] {
        self.rows.get(def.index()).map_or(&[], Vec::as_slice)
    }

    pub(super) fn arrow(&self, id: ArrowId) -> Option<&ArrowPlan> {
        self.arrows.get(id.index())
    }

    pub(super) fn summary(&self, id: PermissionId) -> Option<&Arc<TreeSummary>> {
        self.summaries.get(id.index())?.as_ref()
    }

    /// The member the subject sets of edge kind `kind` of `slot` name.
    pub(super) fn kind_member(&self, slot: u32, kind: usize) -> Option<MemberId> {
        *self.kind_members.get(slot as usize)?.get(kind)?
    }
}

/// How a point Check may evaluate schema relation `r` in `ix`.
fn rel_plan(schema: &CompiledSchema, ix: &IndexGraph, r: &Relation) -> RelPlan {
    let Some(def) = schema.definition_by_id(r.definition) else { return RelPlan::default() };
    let slot = ix.relation_slot(&def.name, &r.name);
    let index = slot.and_then(|s| ix.slot(s));
    // A relation naming only terminal subjects is one lookup: no closure to consult.
    let nests = index.is_some_and(|ri| ri.kinds.iter().any(|k| k.subject_relation.is_some()));
    RelPlan {
        slot,
        closure: nests && r.nests_only_in_itself(&def.name) && index.is_some_and(RelationIndex::closure_enabled),
        nests,
    }
}

/// The summary of `p` on `def`, if `p` has the shape [`TreeSummary`] describes and the index
/// keeps the tree's closure.
fn analyze(schema: &CompiledSchema, def: &Definition, p: &Permission, ix: &IndexGraph) -> Option<TreeSummary> {
    let mut members: Vec<&Permission> = vec![p];
    let mut targets: Vec<PermissionId> = Vec::new();
    let (mut leaves, mut excluded): (Vec<&Relation>, Vec<&Relation>) = (Vec::new(), Vec::new());
    let mut tree: Option<RelationId> = None;
    let mut i = 0;
    while let Some(q) = members.get(i).copied() {
        i += 1;
        let mut rw = &q.rewrite;
        while let Rewrite::Exclusion(a, b) = rw {
            let Rewrite::Computed { member: MemberId::Relation(r), .. } = &**b else { return None };
            excluded.push(schema.relation(*r)?);
            rw = a;
        }
        let mut self_arrow = false;
        let mut stack = vec![rw];
        while let Some(x) = stack.pop() {
            match x {
                Rewrite::Nil => {}
                Rewrite::Union(a, b) => {
                    stack.push(a);
                    stack.push(b);
                }
                Rewrite::Computed { member: MemberId::Relation(r), .. } => leaves.push(schema.relation(*r)?),
                Rewrite::Computed { member: MemberId::Permission(m), .. } => {
                    if !members.iter().any(|x| x.id == *m) {
                        if members.len() >= SUMMARY_MEMBERS {
                            return None;
                        }
                        members.push(schema.permission(*m)?);
                    }
                }
                Rewrite::Arrow { tupleset_id, computed, kind: ArrowKind::Arrow | ArrowKind::Any, .. } => {
                    if tree.is_some_and(|t| t != *tupleset_id) {
                        return None;
                    }
                    tree = Some(*tupleset_id);
                    // The tree links objects of this type (checked below): `computed` is ours.
                    let Some(MemberId::Permission(m)) = def.member(computed) else { return None };
                    self_arrow |= m == q.id;
                    targets.push(m);
                }
                _ => return None,
            }
        }
        if !self_arrow {
            return None;
        }
    }
    if !targets.iter().all(|t| members.iter().any(|m| m.id == *t)) {
        return None;
    }
    let tree_relation = schema.relation(tree?)?;
    if !tree_relation.allowed.iter().all(|a| a.ty == def.name && !matches!(a.kind, AllowedKind::Relation(_))) {
        return None;
    }
    let tree = ix.relation_slot(&def.name, &tree_relation.name)?;
    ix.slot(tree)?.tree()?;
    let excluded = excluded.iter().filter_map(|r| ix.relation_slot(&def.name, &r.name)).collect();
    let mut kinds = Vec::new();
    for r in leaves {
        let Some(slot) = ix.relation_slot(&def.name, &r.name) else { continue };
        let Some(ri) = ix.slot(slot) else { continue };
        for (kind, k) in ri.kinds.iter().enumerate() {
            let Some(sr) = &k.subject_relation else {
                kinds.push(LeafKind::Terminal { slot, kind });
                continue;
            };
            let group = schema.definition(&k.subject_type).and_then(|g| Some((g, schema.relation_of(g, sr)?)));
            let leaf = match group {
                Some((gdef, grel)) if grel.nests_only_in_itself(&gdef.name) => match ix.relation_slot(&gdef.name, sr) {
                    Some(group) => LeafKind::Sets { slot, kind, group },
                    None => LeafKind::Empty,
                },
                _ => LeafKind::Unusable,
            };
            kinds.push(leaf);
        }
    }
    Some(TreeSummary { tree, leaves: kinds, excluded, within: Vec::new() })
}
