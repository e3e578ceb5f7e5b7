//! An expansion tree as SpiceDB's `PermissionRelationshipTree`.

use super::convert::{object_ref, subject_ref};
use super::proto::authzed::api::v1 as api;
use crate::engine::expand::ExpandTree;

pub fn tree(t: &ExpandTree) -> api::PermissionRelationshipTree {
    use api::algebraic_subject_set::Operation;
    use api::permission_relationship_tree::TreeType;
    let node = |object, relation: &str, tree_type| api::PermissionRelationshipTree {
        tree_type: Some(tree_type),
        expanded_object: Some(object_ref(object)),
        expanded_relation: relation.to_string(),
    };
    let set = |op: Operation, children: &[ExpandTree]| {
        TreeType::Intermediate(api::AlgebraicSubjectSet {
            operation: op as i32,
            children: children.iter().map(tree).collect(),
        })
    };
    match t {
        ExpandTree::Leaf { object, relation, subjects } => node(
            object,
            relation,
            TreeType::Leaf(api::DirectSubjectSet {
                subjects: subjects.iter().map(|s| subject_ref(&s.subject)).collect(),
            }),
        ),
        ExpandTree::Union { object, relation, children } => node(object, relation, set(Operation::Union, children)),
        ExpandTree::Intersection { object, relation, children } => {
            node(object, relation, set(Operation::Intersection, children))
        }
        ExpandTree::Exclusion { object, relation, children } => {
            node(object, relation, set(Operation::Exclusion, children))
        }
    }
}
