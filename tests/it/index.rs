//! The index graph against the relationship set it is derived from: after random inserts and
//! removes, its unconditional edges, wildcards and closures equal what the set implies. And the
//! database's fast path (Check and LookupResources over the index) against the reference
//! evaluator, after every write and after a restart.

use std::collections::BTreeSet;

use pemba::engine::Tuples;
use pemba::index::IndexGraph;
use pemba::model::{ObjectRef, Relationship, SubjectRef};
use proptest::prelude::*;

/// The index read as the reference evaluator reads data (`Relations`: what the fast path falls
/// back on, and what Expand and LookupSubjects read) gives what the relationship set gives.
fn assert_same_relations(tuples: &Tuples, g: &IndexGraph) -> Result<(), TestCaseError> {
    use pemba::engine::Relations;
    let text = |rels: &[Relationship]| {
        let mut v: Vec<String> = rels.iter().map(|r| r.to_string()).collect();
        v.sort();
        v
    };
    let mut objects: Vec<ObjectRef> = (0..4).map(|i| ObjectRef::new("group", format!("g{i}"))).collect();
    objects.extend((0..4).map(|i| ObjectRef::new("user", format!("u{i}"))));
    objects.push(ObjectRef::parse_allowing_wildcard("user:*").unwrap());
    for o in &objects {
        for rel in ["member", "viewer", "parent", "banned"] {
            let want = text(&Relations::edges(tuples, o, rel));
            prop_assert_eq!(text(&Relations::edges(g, o, rel)), want, "edges of {}#{}", o, rel);
        }
        let naming = |d: &dyn Relations| {
            let mut v = Vec::new();
            d.each_naming(o, &mut |res, rel| v.push(format!("{res}#{rel}")));
            v.sort();
            v
        };
        prop_assert_eq!(naming(g), naming(tuples), "relationships naming {}", o);
    }
    let all: Vec<Relationship> = g.relationships(None, None, None).collect();
    prop_assert_eq!(text(&all), text(&tuples.iter().cloned().collect::<Vec<_>>()));
    for ty in ["group", "user", "doc"] {
        let ids = g.object_ids(ty);
        for id in tuples.object_ids(ty) {
            prop_assert!(ids.iter().any(|x| x == id), "object ids of {} miss {}", ty, id);
        }
    }
    Ok(())
}

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
                prop_assert!(g.remove(&old), "the index held {}", old);
            }
            prop_assert!(!g.remove(r), "removed twice: {}", r);
            if *insert {
                tuples.insert(r.clone());
                g.insert(r);
            }
        }
        assert_same_relations(&tuples, &g)?;
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

/// Relationships of `doc`: viewers (groups), a parent chain that may form cycles, banned users.
fn doc_relationship() -> impl Strategy<Value = Relationship> {
    (0..4u8, 0..3u8, 0..4u8).prop_map(|(d, kind, x)| {
        let text = match kind {
            0 => format!("doc:d{d}#viewer@group:g{x}#member"),
            1 => format!("doc:d{d}#parent@doc:d{x}"),
            _ => format!("doc:d{d}#banned@user:u{x}"),
        };
        Relationship::parse(&text).unwrap()
    })
}

fn any_relationship() -> impl Strategy<Value = Relationship> {
    prop_oneof![relationship(), doc_relationship()]
}

const DB_SCHEMA: &str = "use expiration\ndefinition user {}\ncaveat cav(x int) {\n  x == 1\n}\ndefinition group {\n  relation member: user | user:* | user with cav | user:* with cav | user with expiration | user:* with expiration | group#member | group#member with cav | group#member with expiration\n}\ndefinition doc {\n  relation viewer: group#member\n  relation parent: doc\n  relation banned: user\n  permission view = viewer + parent->view - banned\n}";

/// Every Check and LookupResources through the database (the fast path) against the reference
/// evaluator on the same relationships.
fn assert_database_equals_reference(db: &pemba::db::Database, tuples: &Tuples) -> Result<(), TestCaseError> {
    use pemba::db::Consistency;
    use pemba::engine::lookup::LookupResourcesRequest;
    use pemba::engine::{CheckRequest, Env};
    let conditions = pemba::conditions::Conditions::new();
    let schema = pemba::schema::compile_text(DB_SCHEMA, &conditions).unwrap();
    let subjects = (0..4)
        .map(|i| format!("user:u{i}"))
        .chain((0..4).map(|i| format!("group:g{i}#member")))
        .chain(["user:*".to_string()]);
    use pemba::engine::lookup::{LookupSubjectsRequest, Reader, lookup_resources, lookup_subjects};
    let history = pemba::engine::History::new(tuples.clone());
    let key = pemba::engine::cursor::CursorKey::random();
    let reader = Reader { schema: &schema, conditions: &conditions, history: &history, key: &key, tenant: "t" };
    let reference = pemba::engine::Ctx {
        schema: &schema,
        data: tuples,
        conditions: &conditions,
        env: Env::new(pemba::model::Timestamp::now()),
    };
    for s in subjects {
        let subject = SubjectRef::parse(&s).unwrap();
        for (res, perm) in [
            ("doc:d0", "view"),
            ("doc:d1", "view"),
            ("doc:d3", "viewer"),
            ("group:g0", "member"),
            ("group:g2", "member"),
        ] {
            for ctx in [serde_json::Map::new(), serde_json::from_str(r#"{"x": 1}"#).unwrap()] {
                let req = CheckRequest {
                    resource: ObjectRef::parse(res).unwrap(),
                    permission: perm.into(),
                    subject: subject.clone(),
                    context: ctx,
                };
                let (got, _) = db.check("t", Consistency::FullyConsistent, &req).unwrap();
                let want = pemba::engine::check(&reference, &req).unwrap();
                prop_assert_eq!(got, want, "{}#{}@{}", res, perm, s);
            }
        }
        for (ty, perm) in [("doc", "view"), ("group", "member")] {
            let req = LookupResourcesRequest {
                resource_type: ty.into(),
                permission: perm.into(),
                subject: subject.clone(),
                context: Default::default(),
                limit: None,
                cursor: None,
            };
            let got = db.lookup_resources("t", Consistency::FullyConsistent, &req).unwrap().items;
            let want = lookup_resources(&reader, &req, pemba::model::Timestamp::now()).unwrap().items;
            prop_assert_eq!(got, want, "LookupResources {}#{}@{}", ty, perm, s);
        }
    }
    // LookupSubjects and Expand through the database read the index (candidates, exclusions,
    // trees); the reference reads the relationship set.
    for (res, perm) in
        [("doc:d0", "view"), ("doc:d1", "view"), ("doc:d2", "viewer"), ("group:g0", "member"), ("group:g3", "member")]
    {
        let resource = ObjectRef::parse(res).unwrap();
        for (ty, rel) in [("user", None), ("group", Some("member"))] {
            for ctx in [serde_json::Map::new(), serde_json::from_str(r#"{"x": 1}"#).unwrap()] {
                let req = LookupSubjectsRequest {
                    resource: resource.clone(),
                    permission: perm.into(),
                    subject_type: ty.into(),
                    subject_relation: rel.map(str::to_string),
                    context: ctx,
                    limit: None,
                    cursor: None,
                };
                let got = db.lookup_subjects("t", Consistency::FullyConsistent, &req).unwrap().items;
                let want = lookup_subjects(&reader, &req, pemba::model::Timestamp::now()).unwrap().items;
                prop_assert_eq!(got, want, "LookupSubjects {}#{}@{}", res, perm, ty);
            }
        }
        let (got, _) = db.expand("t", Consistency::FullyConsistent, &resource, perm).unwrap();
        let want = pemba::engine::expand::expand(&reference, &resource, perm).unwrap();
        prop_assert_eq!(sorted_tree(got), sorted_tree(want), "Expand {}#{}", res, perm);
    }
    Ok(())
}

/// An expansion tree with every leaf's subjects and every node's children in a fixed order
/// (the index lists a relation's subjects by subject, the relationship set by insertion).
fn sorted_tree(t: pemba::engine::expand::ExpandTree) -> String {
    use pemba::engine::expand::ExpandTree;
    match t {
        ExpandTree::Leaf { object, relation, subjects } => {
            let mut v: Vec<String> = subjects
                .iter()
                .map(|s| format!("{}{}", s.subject, if s.caveated { "[caveated]" } else { "" }))
                .collect();
            v.sort();
            format!("leaf {object}#{relation} [{}]", v.join(", "))
        }
        ExpandTree::Union { object, relation, children } => {
            let mut v: Vec<String> = children.into_iter().map(sorted_tree).collect();
            v.sort();
            format!("union {object}#{relation} ({})", v.join("; "))
        }
        ExpandTree::Intersection { object, relation, children } => {
            let mut v: Vec<String> = children.into_iter().map(sorted_tree).collect();
            v.sort();
            format!("intersection {object}#{relation} ({})", v.join("; "))
        }
        ExpandTree::Exclusion { object, relation, children } => {
            let v: Vec<String> = children.into_iter().map(sorted_tree).collect();
            format!("exclusion {object}#{relation} ({})", v.join("; "))
        }
    }
}

fn apply(tuples: &mut Tuples, insert: bool, r: Relationship) {
    if let Some(old) = tuples.edges(&r.resource, &r.relation).iter().find(|x| x.subject == r.subject).cloned() {
        tuples.remove(&old);
    }
    if insert {
        tuples.insert(r);
    }
}

/// A database in memory with tenant `t` on [`DB_SCHEMA`] and `seed` written in one batch, and
/// the same relationships for the reference.
fn seeded_database(seed: &[String]) -> (pemba::db::Database, Tuples) {
    use pemba::db::{Database, WriteRequest};
    use pemba::store::Mutation;
    let db = Database::in_memory();
    db.create_tenant("t").unwrap();
    db.write_schema("t", DB_SCHEMA).unwrap();
    let seed: Vec<Relationship> = seed.iter().map(|t| Relationship::parse(t).unwrap()).collect();
    db.write("t", WriteRequest::new(seed.iter().cloned().map(Mutation::Touch).collect())).unwrap();
    let mut tuples = Tuples::new();
    for r in seed {
        tuples.insert(r);
    }
    (db, tuples)
}

/// Writes each op on its own (a touch or a delete) and compares the database with the reference
/// after each.
fn write_each_and_compare(
    db: &pemba::db::Database,
    tuples: &mut Tuples,
    ops: Vec<(bool, Relationship)>,
) -> Result<(), TestCaseError> {
    use pemba::db::WriteRequest;
    use pemba::store::Mutation;
    for (insert, r) in ops {
        let m = if insert { Mutation::Touch(r.clone()) } else { Mutation::Delete(r.clone()) };
        db.write("t", WriteRequest::new(vec![m])).unwrap();
        apply(tuples, insert, r);
        assert_database_equals_reference(db, tuples)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The index inside `Database` is kept current write by write: after every write, Check and
    /// LookupResources through the database (the fast evaluator) equal the reference evaluator
    /// on the same relationships.
    #[test]
    fn database_answers_equal_the_reference_after_every_write(ops in prop::collection::vec((any::<bool>(), any_relationship()), 1..30)) {
        let (db, mut tuples) = seeded_database(&["doc:d0#viewer@group:g0#member".to_string()]);
        write_each_and_compare(&db, &mut tuples, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Past 64 resources with one subject each, a kind keeps those subjects in a column by
    /// resource id (`ForwardSets`); writes that give them a second subject or take them away
    /// keep the fast path equal to the reference.
    #[test]
    fn single_subject_columns_equal_the_reference(ops in prop::collection::vec((any::<bool>(), any_relationship()), 1..16)) {
        let mut seed = Vec::new();
        for d in 0..80 {
            seed.push(format!("doc:d{d}#parent@doc:d{}", d + 1));
            seed.push(format!("doc:d{d}#banned@user:u{}", d % 5 + 4));
            seed.push(format!("doc:d{d}#viewer@group:g{}#member", d % 4));
        }
        let (db, mut tuples) = seeded_database(&seed);
        assert_database_equals_reference(&db, &tuples)?;
        write_each_and_compare(&db, &mut tuples, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// After a restart the index is rebuilt from the store: the fast path still equals the
    /// reference on the relationships written before it.
    #[test]
    fn database_answers_equal_the_reference_after_a_restart(ops in prop::collection::vec((any::<bool>(), any_relationship()), 1..40)) {
        use pemba::db::{Database, WriteRequest};
        use pemba::store::Mutation;
        let dir = super::store::temp_dir("index-restart");
        let mut tuples = Tuples::new();
        {
            let db = Database::open(&dir).unwrap();
            db.create_tenant("t").unwrap();
            db.write_schema("t", DB_SCHEMA).unwrap();
            for chunk in ops.chunks(8) {
                let mutations: Vec<Mutation> = chunk.iter().map(|(insert, r)| if *insert { Mutation::Touch(r.clone()) } else { Mutation::Delete(r.clone()) }).collect();
                // A batch touching one row twice is refused; such chunks are simply skipped.
                if db.write("t", WriteRequest::new(mutations)).is_ok() {
                    for (insert, r) in chunk {
                        apply(&mut tuples, *insert, r.clone());
                    }
                }
            }
        }
        // sled's background threads may hold the directory's lock a moment after a close.
        let mut reopened = Database::open(&dir);
        for _ in 0..500 {
            match &reopened {
                Err(e) if e.to_string().contains("could not acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    reopened = Database::open(&dir);
                }
                _ => break,
            }
        }
        let db = reopened.unwrap();
        let result = assert_database_equals_reference(&db, &tuples);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
        result?;
    }
}

/// A snapshot of the index (a clone, which shares its parts) is unchanged by writes to the next
/// one, at sizes where maps split into tables and vectors into several chunks; and the next one
/// holds exactly the writes.
#[test]
fn snapshots_share_parts_and_stay_independent() {
    use pemba::engine::Relations;
    let parse = |s: String| Relationship::parse(&s).unwrap();
    let mut rels = Vec::new();
    for i in 0..6000 {
        rels.push(parse(format!("doc:d{i}#viewer@user:u{}", i % 700)));
        rels.push(parse(format!("doc:d{i}#parent@folder:f{}", i % 50)));
        if i % 7 == 0 {
            rels.push(parse(format!("doc:d{i}#viewer@user:v{i}[cav]")));
        }
    }
    // 30 chains of 100 nested groups.
    for i in (0..3000).filter(|i| (i + 1) % 100 != 0) {
        rels.push(parse(format!("group:g{}#member@group:g{}#member", i, i + 1)));
    }
    let mut tuples = Tuples::from_relationships(rels.clone());
    let mut g = IndexGraph::build(&rels);
    let before = (tuples.clone(), g.clone());
    for i in (0..6000).step_by(5) {
        let old = parse(format!("doc:d{i}#viewer@user:u{}", i % 700));
        assert!(g.remove(&old));
        tuples.remove(&old);
        let new = parse(format!("doc:d{i}#viewer@user:new{i}"));
        g.insert(&new);
        tuples.insert(new);
        if i % 35 == 0 {
            let touched = parse(format!("doc:d{i}#viewer@user:v{i}"));
            g.upsert(&touched);
            tuples.remove(&touched);
            tuples.insert(touched);
        }
    }
    for i in (50..3000).step_by(100) {
        let nest = parse(format!("group:g{}#member@group:g{}#member", i, i + 1));
        g.remove(&nest);
        tuples.remove(&nest);
    }
    g.set_attributes(ObjectRef::new("doc", "d1"), serde_json::from_str(r#"{"a": 1}"#).unwrap());
    let text = |rels: Vec<Relationship>| {
        let mut v: Vec<String> = rels.iter().map(|r| r.to_string()).collect();
        v.sort();
        v
    };
    for (t, ix) in [(&before.0, &before.1), (&tuples, &g)] {
        assert_eq!(text(ix.relationships(None, None, None).collect()), text(t.iter().cloned().collect()));
        for o in ["user:u3", "user:new35", "user:v35", "folder:f7", "group:g150", "group:g0"] {
            let o = ObjectRef::parse(o).unwrap();
            let naming = |d: &dyn Relations| {
                let mut v = Vec::new();
                d.each_naming(&o, &mut |res, rel| v.push(format!("{res}#{rel}")));
                v.sort();
                v
            };
            assert_eq!(naming(ix), naming(t), "naming {o}");
        }
        // The closure follows its own snapshot's nesting.
        let (a, b) =
            (ix.id(&ObjectRef::new("group", "g100")).unwrap(), ix.id(&ObjectRef::new("group", "g160")).unwrap());
        let nested = t.edges(&ObjectRef::new("group", "g150"), "member").iter().any(|r| r.subject.object.id == "g151");
        assert_eq!(ix.closure("group", "member").unwrap().reaches(a, b), nested);
    }
    assert!(Relations::attributes(&before.1, &ObjectRef::new("doc", "d1")).is_empty());
    assert_eq!(Relations::attributes(&g, &ObjectRef::new("doc", "d1")).len(), 1);
}

const TREE_SCHEMA: &str = "use expiration\ndefinition user {}\ncaveat cav(x int) {\n  x == 1\n}\ndefinition group {\n  relation member: user | user:* | user with cav | group#member | group#member with cav\n}\ndefinition folder {\n  relation parent: folder | folder with cav\n  relation owner: user\n  relation editor: user | group#member | user with expiration\n  relation viewer: user | user:* | group#member | group#member with cav\n  relation banned: user | user:*\n  permission edit = owner + editor + parent->edit - banned\n  permission view = edit + viewer + parent->view - banned\n  relation blocked: user\n  permission strict = viewer & parent->view\n  permission see = viewer + parent->see - blocked\n  permission glance = viewer + parent->glance\n}\ndefinition doc {\n  relation parent: folder\n  relation viewer: user\n  relation banned: user\n  permission view = viewer + parent->view - banned\n}";

/// Relationships of the folder schema over a few objects: folder trees (with cycles, several
/// parents and conditional parent edges), grants through nested groups, wildcards, caveats,
/// expiration and bans.
fn tree_relationship() -> impl Strategy<Value = Relationship> {
    (0..15u8, 0..5u8, 0..5u8).prop_map(|(kind, a, b)| {
        let text = match kind {
            0..=3 => format!("folder:f{a}#parent@folder:f{b}"),
            4 => format!("folder:f{a}#parent@folder:f{b}[cav]"),
            5 => format!("folder:f{a}#owner@user:u{b}"),
            6 => format!("folder:f{a}#editor@group:g{b}#member"),
            7 => format!("folder:f{a}#editor@user:u{b}[expiration:2999-01-01T00:00:00Z]"),
            8 => format!("folder:f{a}#viewer@user:u{b}"),
            9 => {
                if b == 0 {
                    format!("folder:f{a}#viewer@user:*")
                } else {
                    format!("folder:f{a}#viewer@group:g{b}#member[cav]")
                }
            }
            10 => format!("folder:f{a}#banned@user:u{b}"),
            14 => format!("folder:f{a}#blocked@user:u{b}"),
            11 => format!("group:g{a}#member@user:u{b}"),
            12 => match b {
                0 => format!("group:g{a}#member@user:*"),
                1 => format!("group:g{a}#member@user:u{b}[cav]"),
                _ => format!("group:g{a}#member@group:g{b}#member"),
            },
            _ => match b {
                0 => format!("doc:d{a}#banned@user:u1"),
                1 => format!("doc:d{a}#viewer@user:u{a}"),
                _ => format!("doc:d{a}#parent@folder:f{b}"),
            },
        };
        Relationship::parse(&text).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Folder trees answered from the tree closure (the summaries of `view`, `edit`, `see` and
    /// `glance`) equal the reference, for every subject, with and without the caveat's context,
    /// after every write. `edit` is within `view`, `see` and `glance` have the same leaves but
    /// not the same exclusions: a summary's no carried to another is tested both ways (`edit`
    /// is asked before and after `view` on each folder).
    #[test]
    fn tree_summaries_equal_the_reference(ops in prop::collection::vec((any::<bool>(), tree_relationship()), 1..40)) {
        use pemba::db::{Consistency, Database, WriteRequest};
        use pemba::engine::{CheckRequest, Env};
        use pemba::store::Mutation;
        let conditions = pemba::conditions::Conditions::new();
        let schema = pemba::schema::compile_text(TREE_SCHEMA, &conditions).unwrap();
        let db = Database::in_memory();
        db.create_tenant("t").unwrap();
        db.write_schema("t", TREE_SCHEMA).unwrap();
        let mut tuples = Tuples::new();
        for (insert, r) in ops {
            let m = if insert { Mutation::Touch(r.clone()) } else { Mutation::Delete(r.clone()) };
            db.write("t", WriteRequest::new(vec![m])).unwrap();
            apply(&mut tuples, insert, r);
        }
        let subjects: Vec<String> = (0..5).map(|i| format!("user:u{i}")).chain(["user:*".to_string(), "user:stranger".to_string(), "group:g2#member".to_string()]).collect();
        let resources: Vec<(String, &str)> = (0..5).flat_map(|i| [(format!("folder:f{i}"), "edit"), (format!("folder:f{i}"), "view"), (format!("folder:f{i}"), "edit"), (format!("folder:f{i}"), "strict"), (format!("folder:f{i}"), "see"), (format!("folder:f{i}"), "glance"), (format!("folder:f{i}"), "see"), (format!("doc:d{i}"), "view")]).collect();
        for s in &subjects {
            let subject = SubjectRef::parse(s).unwrap();
            for ctx in [serde_json::Map::new(), serde_json::from_str(r#"{"x": 1}"#).unwrap()] {
                let reqs: Vec<CheckRequest> = resources.iter().map(|(res, perm)| CheckRequest { resource: ObjectRef::parse(res).unwrap(), permission: (*perm).into(), subject: subject.clone(), context: ctx.clone() }).collect();
                let (bulk, _) = db.check_bulk("t", Consistency::FullyConsistent, &reqs).unwrap();
                for (req, got_bulk) in reqs.iter().zip(bulk) {
                    let (got, _) = db.check("t", Consistency::FullyConsistent, req).unwrap();
                    let reference = pemba::engine::Ctx { schema: &schema, data: &tuples, conditions: &conditions, env: Env::new(pemba::model::Timestamp::now()) };
                    let want = pemba::engine::check(&reference, req).unwrap();
                    prop_assert_eq!(&got, &want, "{}#{}@{} {:?}\n{:#?}", req.resource, req.permission, s, req.context, tuples.iter().map(|r| r.to_string()).collect::<Vec<_>>());
                    prop_assert_eq!(got_bulk.unwrap(), want, "bulk {}#{}@{}", req.resource, req.permission, s);
                }
            }
        }
    }
}

/// A closure that would grow quadratically (one chain of 3000 nested groups: 4.5M pairs) is
/// switched off past its budget; Checks through the chain still equal the reference (the
/// fast path walks, or hands deep walks to the reference).
#[test]
fn closures_past_their_budget_are_off_and_answers_stay_exact() {
    use pemba::engine::{CheckRequest, Env};
    let conditions = pemba::conditions::Conditions::new();
    let schema = pemba::schema::compile_text(
        "definition user {}\ndefinition group {\n  relation member: user | group#member\n}",
        &conditions,
    )
    .unwrap();
    let mut rels: Vec<Relationship> = (0..3000)
        .map(|i| Relationship::parse(&format!("group:g{}#member@group:g{}#member", i, i + 1)).unwrap())
        .collect();
    rels.push(Relationship::parse("group:g3000#member@user:ann").unwrap());
    let g = std::sync::Arc::new(IndexGraph::build(&rels));
    assert!(g.closure("group", "member").is_none());
    let tuples = Tuples::from_relationships(rels);
    let snapshot = pemba::query::Snapshot::detached(schema.clone(), g, &conditions, pemba::model::Timestamp::now());
    for (group, user) in [("g0", "ann"), ("g2999", "ann"), ("g10", "bob")] {
        let req = CheckRequest {
            resource: ObjectRef::new("group", group),
            permission: "member".into(),
            subject: SubjectRef::parse(&format!("user:{user}")).unwrap(),
            context: Default::default(),
        };
        let env = Env::new(pemba::model::Timestamp::now());
        let reference = pemba::engine::Ctx { schema: &schema, data: &tuples, conditions: &conditions, env };
        let want = pemba::engine::check(&reference, &req).unwrap();
        assert_eq!(snapshot.check(&req).unwrap(), want, "{group}@{user}");
    }
}

/// The evaluator's plan (what it resolves about a schema on one index snapshot) serves only the
/// schema it was built for: one index checked under two schemas answers for each (each view
/// keeps the plan of its own schema), and a database whose schema changes with no relationship
/// written answers for the new schema.
#[test]
fn a_plan_serves_only_its_own_schema() {
    use pemba::db::{Consistency, Database, WriteRequest};
    use pemba::engine::{CheckRequest, Decision, Env};
    use pemba::store::Mutation;
    let conditions = pemba::conditions::Conditions::new();
    let tree = "definition user {}\ndefinition folder {\n  relation parent: folder\n  relation viewer: user\n  relation banned: user\n  permission view = viewer + parent->view - banned\n}";
    let flat = "definition user {}\ndefinition folder {\n  relation parent: folder\n  relation viewer: user\n  relation banned: user\n  permission view = viewer - banned\n}";
    let rels: Vec<Relationship> = [
        "folder:f1#parent@folder:f0",
        "folder:f2#parent@folder:f1",
        "folder:f0#viewer@user:ann",
        "folder:f9#banned@user:ann",
    ]
    .iter()
    .map(|r| Relationship::parse(r).unwrap())
    .collect();
    let g = std::sync::Arc::new(IndexGraph::build(&rels));
    let req = CheckRequest {
        resource: ObjectRef::new("folder", "f2"),
        permission: "view".into(),
        subject: SubjectRef::parse("user:ann").unwrap(),
        context: Default::default(),
    };
    let env = Env::new(pemba::model::Timestamp::now());
    let (a, b) = (
        pemba::schema::compile_text(tree, &conditions).unwrap(),
        pemba::schema::compile_text(flat, &conditions).unwrap(),
    );
    for (schema, want) in [(&a, Decision::Has), (&b, Decision::No), (&a, Decision::Has), (&b, Decision::No)] {
        let snapshot = pemba::query::Snapshot::detached(schema.clone(), g.clone(), &conditions, env.now);
        assert_eq!(snapshot.check(&req).unwrap(), want);
    }
    let db = Database::in_memory();
    db.create_tenant("t").unwrap();
    db.write_schema("t", tree).unwrap();
    db.write("t", WriteRequest::new(rels.iter().cloned().map(Mutation::Touch).collect())).unwrap();
    assert_eq!(db.check("t", Consistency::FullyConsistent, &req).unwrap().0, Decision::Has);
    db.write_schema("t", flat).unwrap();
    assert_eq!(db.check("t", Consistency::FullyConsistent, &req).unwrap().0, Decision::No);
    db.write_schema("t", tree).unwrap();
    assert_eq!(db.check("t", Consistency::FullyConsistent, &req).unwrap().0, Decision::Has);
}
