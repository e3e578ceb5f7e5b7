//! The index graph against the relationship set it is derived from: after random inserts and
//! removes, its unconditional edges, wildcards and closures equal what the set implies.

use std::collections::BTreeSet;

use pemba::engine::Tuples;
use pemba::index::IndexGraph;
use pemba::model::{ObjectRef, Relationship, SubjectRef};
use proptest::prelude::*;

fn relationship() -> impl Strategy<Value = Relationship> {
    (0..4u8, 0..4u8, 0..4u8, 0..3u8).prop_map(|(g, kind, s, cav)| {
        let subject = match kind {
            0 => format!("group:g{s}#member"),
            1 => "user:*".to_string(),
            _ => format!("user:u{s}"),
        };
        let suffix = ["", "[cav]", "[expiration:2999-01-01T00:00:00Z]"][cav as usize];
        Relationship::parse(&format!("group:g{g}#member@{subject}{suffix}")).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn index_graph_equals_the_relationship_set(ops in prop::collection::vec((any::<bool>(), relationship()), 1..60)) {
        let mut tuples = Tuples::new();
        let mut g = IndexGraph::new();
        for (insert, r) in &ops {
            // A row is replaced whole: remove the old version first (what a touch does).
            let old: Option<Relationship> = tuples.edges(&r.resource, &r.relation).iter().find(|x| x.subject == r.subject).cloned();
            if let Some(old) = old {
                tuples.remove(&old);
                g.remove(&old);
            }
            if *insert {
                tuples.insert(r.clone());
                g.insert(r);
            }
        }
        let unconditional = |x: &Relationship| x.caveat.is_none() && x.expiration.is_none();
        for gi in 0..4 {
            let group = ObjectRef::new("group", format!("g{gi}"));
            for s in (0..4).map(|i| SubjectRef::parse(&format!("user:u{i}")).unwrap()).chain((0..4).map(|i| SubjectRef::parse(&format!("group:g{i}#member")).unwrap())) {
                let want = tuples.edges(&group, "member").iter().any(|x| x.subject == s && unconditional(x));
                prop_assert_eq!(g.has_edge(&group, "member", &s), want, "{}#member@{}", group, s);
            }
            let want_wild = tuples.edges(&group, "member").iter().any(|x| x.subject.is_wildcard() && unconditional(x));
            let got_wild = g.id(&group).is_some_and(|id| g.wildcard("group", "member", "user").is_some_and(|w| w.contains(id)));
            prop_assert_eq!(got_wild, want_wild);
        }
        // Closure: present exactly when no conditional nesting edge exists, and then equal to
        // reachability over the unconditional nesting edges.
        let nesting: Vec<&Relationship> = tuples.iter().filter(|x| x.subject.relation.is_some()).collect();
        let conditional_nesting = nesting.iter().any(|x| !unconditional(x));
        let closure = g.closure("group", "member");
        if conditional_nesting {
            prop_assert!(closure.is_none());
        } else if let Some(c) = closure {
            let edges: BTreeSet<(String, String)> = nesting.iter().map(|x| (x.resource.id.clone(), x.subject.object.id.clone())).collect();
            for a in 0..4 {
                let mut seen = BTreeSet::new();
                let mut stack = vec![format!("g{a}")];
                while let Some(x) = stack.pop() {
                    for (p, ch) in &edges {
                        if p == &x && seen.insert(ch.clone()) {
                            stack.push(ch.clone());
                        }
                    }
                }
                for b in 0..4 {
                    let (Some(ia), Some(ib)) = (g.id(&ObjectRef::new("group", format!("g{a}"))), g.id(&ObjectRef::new("group", format!("g{b}")))) else { continue };
                    let want = seen.contains(&format!("g{b}"));
                    let got = c.descendants(ia).is_some_and(|d| d.contains(ib));
                    prop_assert_eq!(got, want, "g{} contains g{}", a, b);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The index inside `Database` is kept current write by write: after every write, Check
    /// through the database (closures) equals the reference evaluator on the same relationships.
    #[test]
    fn database_checks_equal_the_reference_after_every_write(ops in prop::collection::vec((any::<bool>(), relationship()), 1..30)) {
        use pemba::db::{Consistency, Database, WriteRequest};
        use pemba::engine::{CheckRequest, Env};
        use pemba::store::Mutation;
        let schema_text = "use expiration\ndefinition user {}\ncaveat cav(x int) {\n  x == 1\n}\ndefinition group {\n  relation member: user | user:* | user with cav | user:* with cav | user with expiration | user:* with expiration | group#member | group#member with cav | group#member with expiration\n}\ndefinition doc {\n  relation viewer: group#member\n  permission view = viewer\n}";
        let db = Database::in_memory();
        db.create_tenant("t").unwrap();
        db.write_schema("t", schema_text).unwrap();
        let conditions = pemba::conditions::Conditions::new();
        let schema = pemba::schema::compile_text(schema_text, &conditions).unwrap();
        let mut tuples = Tuples::new();
        db.write("t", WriteRequest::new(vec![Mutation::Touch(Relationship::parse("doc:d#viewer@group:g0#member").unwrap())])).unwrap();
        tuples.insert(Relationship::parse("doc:d#viewer@group:g0#member").unwrap());
        for (insert, r) in ops {
            let m = if insert { Mutation::Touch(r.clone()) } else { Mutation::Delete(r.clone()) };
            db.write("t", WriteRequest::new(vec![m])).unwrap();
            if let Some(old) = tuples.edges(&r.resource, &r.relation).iter().find(|x| x.subject == r.subject).cloned() {
                tuples.remove(&old);
            }
            if insert {
                tuples.insert(r);
            }
            for s in (0..4).map(|i| format!("user:u{i}")).chain((0..4).map(|i| format!("group:g{i}#member"))) {
                for (res, perm) in [("doc:d", "view"), ("group:g0", "member"), ("group:g2", "member")] {
                    let req = CheckRequest { resource: ObjectRef::parse(res, false).unwrap(), permission: perm.into(), subject: SubjectRef::parse(&s).unwrap(), context: Default::default() };
                    let (got, _) = db.check("t", Consistency::FullyConsistent, &req).unwrap();
                    let want = pemba::engine::check(&schema, &tuples, &conditions, &req, Env::new(pemba::model::Timestamp::now())).unwrap();
                    prop_assert_eq!(got, want, "{}#{}@{}", res, perm, s);
                }
            }
        }
    }
}
