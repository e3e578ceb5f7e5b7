//! The agreement checks SpiceDB's harness makes for every validation file: over every
//! (resource, permission, subject) triple built from the types, ids and subjects seen in the
//! file, Check, CheckBulk, LookupResources (unpaged and with pages of 2), LookupSubjects (the
//! same) and the recursive expansion must give the same answers; Check, CheckBulk and
//! LookupResources are made both by the reference evaluator and on a snapshot of the index (the
//! fast path, as the database answers), LookupSubjects on the snapshot (its reference path is
//! covered by the paging proptests).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Map;

use super::{Failure, FileReport, ValidationFile};
use crate::conditions::Conditions;
use crate::engine::cursor::CursorKey;
use crate::engine::expand::found_subjects;
use crate::engine::lookup::{
    LookupResourcesRequest, LookupSubjectsRequest, Page, Reader, ResourceResult, SubjectResult, lookup_resources,
};
use crate::engine::{self, CheckRequest, Ctx, Decision, Env, EvalError, History};
use crate::model::{ObjectRef, SubjectRef};
use crate::query::Snapshot;

/// Every triple's answer, from the reference Check.
type Decisions = BTreeMap<(ObjectRef, String, SubjectRef), Decision>;

/// Most triples one file may generate; beyond this the file is reported as too large to agree.
pub const MAX_TRIPLES: usize = 200_000;

struct Seen {
    /// Object ids per type, from relationships and assertions.
    objects: BTreeMap<String, BTreeSet<String>>,
    /// Subjects (terminal and subject sets, no wildcards), from relationships and assertions.
    subjects: BTreeSet<SubjectRef>,
}

fn seen(file: &ValidationFile) -> Seen {
    let mut objects: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut subjects = BTreeSet::new();
    let mut add = |o: &ObjectRef| {
        if !o.is_wildcard() {
            objects.entry(o.ty.clone()).or_default().insert(o.id.clone());
        }
    };
    for r in file.tuples.iter() {
        add(&r.resource);
        add(&r.subject.object);
        if !r.subject.is_wildcard() {
            subjects.insert(r.subject.clone());
        }
    }
    for a in &file.assertions {
        add(&a.request.resource);
        add(&a.request.subject.object);
        if !a.request.subject.is_wildcard() {
            subjects.insert(a.request.subject.clone());
        }
    }
    for (ty, ids) in &objects {
        for id in ids {
            subjects.insert(SubjectRef::new(ObjectRef::new(ty.clone(), id.clone()), None));
        }
    }
    Seen { objects, subjects }
}

/// Runs every agreement check, adding the number made and any disagreement to the report.
pub fn check_agreement(file: &ValidationFile, conditions: &Conditions, env: Env, report: &mut FileReport) {
    let seen = seen(file);
    let history = History::new(file.tuples.clone());
    let key = CursorKey::random();
    let reader = Reader { schema: &file.schema, conditions, history: &history, key: &key, tenant: "" };
    let reference = Ctx { schema: &file.schema, data: &file.tuples, conditions, env };
    // The fast path reads a snapshot of the index for everything, as the database does: its
    // point Checks, the reference's fallback, and LookupSubjects' candidates. Its paged lookups
    // read through its lookup cache.
    let index = Arc::new(crate::index::IndexGraph::from_tuples(&file.tuples));
    let fast = Snapshot::detached(file.schema.clone(), index, conditions, env.now).with_limits(env.limits);
    let none = Map::new();
    let fail = |report: &mut FileReport, what: String, detail: String| report.failures.push(Failure { what, detail });

    // 1. Check every triple, and CheckBulk per resource and permission.
    let mut decisions: Decisions = BTreeMap::new();
    let mut triples = 0usize;
    for def in file.schema.definitions() {
        let Some(ids) = seen.objects.get(&def.name) else { continue };
        let members: Vec<&String> = def.member_names().collect();
        for id in ids {
            let resource = ObjectRef::new(def.name.clone(), id.clone());
            for m in &members {
                let reqs: Vec<CheckRequest> = seen
                    .subjects
                    .iter()
                    .map(|s| CheckRequest {
                        resource: resource.clone(),
                        permission: (*m).clone(),
                        subject: s.clone(),
                        context: none.clone(),
                    })
                    .collect();
                triples += reqs.len();
                if triples > MAX_TRIPLES {
                    fail(report, "agreement".into(), format!("the file generates more than {MAX_TRIPLES} triples"));
                    return;
                }
                let bulk = engine::check_bulk(&reference, &reqs);
                let bulk_fast = fast.check_bulk(&reqs);
                for ((req, bulk_answer), bulk_fast) in reqs.iter().zip(bulk).zip(bulk_fast) {
                    let triple = format!("{}#{}@{}", req.resource, req.permission, req.subject);
                    report.agreement_checks += 1;
                    let single = match engine::check(&reference, req) {
                        Ok(d) => d,
                        Err(EvalError::UnknownMember { .. }) => continue,
                        Err(e) => {
                            fail(report, format!("Check `{triple}`"), format!("error: {e}"));
                            continue;
                        }
                    };
                    if bulk_answer.as_ref() != Ok(&single) {
                        fail(
                            report,
                            format!("CheckBulk `{triple}`"),
                            format!("CheckBulk gave {bulk_answer:?}, Check gave {single}"),
                        );
                    }
                    let fast_single = fast.check(req);
                    if fast_single.as_ref() != Ok(&single) || bulk_fast.as_ref() != Ok(&single) {
                        fail(
                            report,
                            format!("fast Check `{triple}`"),
                            format!(
                                "fast Check gave {fast_single:?}, fast CheckBulk {bulk_fast:?}, reference Check {single}"
                            ),
                        );
                    }
                    decisions.insert((req.resource.clone(), req.permission.clone(), req.subject.clone()), single);
                }
            }
        }
    }

    // 2. LookupResources for every (type, permission, subject), unpaged and in pages of 2.
    for def in file.schema.definitions() {
        let ids = seen.objects.get(&def.name).cloned().unwrap_or_default();
        for m in def.member_names() {
            for s in &seen.subjects {
                let expected: Vec<ResourceResult> = ids
                    .iter()
                    .filter_map(|id| {
                        let d = decisions.get(&(ObjectRef::new(def.name.clone(), id.clone()), m.clone(), s.clone()))?;
                        (d != &Decision::No).then(|| ResourceResult { id: id.clone(), decision: d.clone() })
                    })
                    .collect();
                let what = format!("LookupResources `{}#{m}@{s}`", def.name);
                let mut req = LookupResourcesRequest {
                    resource_type: def.name.clone(),
                    permission: m.clone(),
                    subject: s.clone(),
                    context: none.clone(),
                    limit: None,
                    cursor: None,
                };
                report.agreement_checks += 1;
                let unpaged = match lookup_resources(&reader, &req, env.now) {
                    Ok(p) => p.items,
                    Err(EvalError::UnknownMember { .. }) => continue,
                    Err(e) => {
                        fail(report, what, format!("error: {e}"));
                        continue;
                    }
                };
                if unpaged != expected {
                    fail(report, what.clone(), diff_resources(&expected, &unpaged));
                }
                match fast.lookup_resources(&req) {
                    Ok(p) if p.items == expected => {}
                    Ok(p) => fail(report, format!("{what} (fast path)"), diff_resources(&expected, &p.items)),
                    Err(e) => fail(report, format!("{what} (fast path)"), format!("error: {e}")),
                }
                req.limit = Some(2);
                match all_pages(|cursor| {
                    req.cursor = cursor;
                    fast.lookup_resources(&req)
                }) {
                    Ok(paged) if paged == unpaged => {}
                    Ok(paged) => fail(report, format!("{what} in pages of 2"), diff_resources(&unpaged, &paged)),
                    Err(e) => fail(report, format!("{what} in pages of 2"), format!("error: {e}")),
                }
            }
        }
    }

    // 3. LookupSubjects and the recursive expansion for every resource and permission.
    let kinds: BTreeSet<(String, Option<String>)> =
        seen.subjects.iter().map(|s| (s.object.ty.clone(), s.relation.clone())).collect();
    for def in file.schema.definitions() {
        let Some(ids) = seen.objects.get(&def.name) else { continue };
        for id in ids {
            let resource = ObjectRef::new(def.name.clone(), id.clone());
            for m in def.member_names() {
                for (ty, rel) in &kinds {
                    subjects_agree(&fast, &resource, m, (ty, rel), (&seen, &decisions), report);
                }
                expansion_agrees(&reference, &fast, &resource, m, &seen, &decisions, report);
            }
        }
    }
}

fn all_pages<T>(mut next: impl FnMut(Option<String>) -> Result<Page<T>, EvalError>) -> Result<Vec<T>, EvalError> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..100_000 {
        let page = next(cursor)?;
        out.extend(page.items);
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
    Ok(out)
}

fn diff_resources(expected: &[ResourceResult], got: &[ResourceResult]) -> String {
    let show =
        |v: &[ResourceResult]| v.iter().map(|r| format!("{} ({})", r.id, r.decision)).collect::<Vec<_>>().join(", ");
    format!("expected (from Check): [{}]\n     got: [{}]", show(expected), show(got))
}

fn subjects_agree(
    fast: &Snapshot,
    resource: &ObjectRef,
    permission: &str,
    (ty, rel): (&str, &Option<String>),
    (seen, decisions): (&Seen, &Decisions),
    report: &mut FileReport,
) {
    let mut req = LookupSubjectsRequest {
        resource: resource.clone(),
        permission: permission.to_string(),
        subject_type: ty.to_string(),
        subject_relation: rel.clone(),
        context: Map::new(),
        limit: None,
        cursor: None,
    };
    let what = format!(
        "LookupSubjects `{resource}#{permission}` for `{ty}{}`",
        rel.as_ref().map(|r| format!("#{r}")).unwrap_or_default()
    );
    report.agreement_checks += 1;
    let unpaged = match fast.lookup_subjects(&req) {
        Ok(p) => p.items,
        Err(EvalError::UnknownMember { .. }) => return,
        Err(e) => {
            report.failures.push(Failure { what, detail: format!("error: {e}") });
            return;
        }
    };
    let mut problems = Vec::new();
    for s in seen.subjects.iter().filter(|s| s.object.ty == ty && &s.relation == rel) {
        let Some(expected) = decisions.get(&(resource.clone(), permission.to_string(), s.clone())) else { continue };
        let got = subject_answer(&unpaged, s);
        if &got != expected {
            problems.push(format!("`{s}`: Check gave {expected}, LookupSubjects implies {got}"));
        }
    }
    req.limit = Some(2);
    match all_pages(|cursor| {
        req.cursor = cursor;
        fast.lookup_subjects(&req)
    }) {
        Ok(paged) if paged == unpaged => {}
        Ok(paged) => problems.push(format!("pages of 2 gave {} results, unpaged {}", paged.len(), unpaged.len())),
        Err(e) => problems.push(format!("pages of 2: error: {e}")),
    }
    if !problems.is_empty() {
        report.failures.push(Failure { what, detail: problems.join("\n") });
    }
}

/// The answer a LookupSubjects result implies for one subject: its own entry, else the
/// wildcard's (minus its exclusions), else no.
fn subject_answer(results: &[SubjectResult], s: &SubjectRef) -> Decision {
    if let Some(r) = results.iter().find(|r| &r.subject == s) {
        return r.decision.clone();
    }
    if s.relation.is_none()
        && let Some(w) = results.iter().find(|r| r.subject.is_wildcard() && r.subject.object.ty == s.object.ty)
    {
        return match w.excluded.iter().find(|(x, _)| x == s) {
            Some((_, d)) => d.clone(),
            None => w.decision.clone(),
        };
    }
    Decision::No
}

fn expansion_agrees(
    reference: &Ctx<'_>,
    fast: &Snapshot,
    resource: &ObjectRef,
    permission: &str,
    seen: &Seen,
    decisions: &Decisions,
    report: &mut FileReport,
) {
    let what = format!("recursive Expand `{resource}#{permission}`");
    report.agreement_checks += 1;
    let found = match found_subjects(reference, resource, permission) {
        Ok(f) => f,
        Err(e) => {
            report.failures.push(Failure { what, detail: format!("error: {e}") });
            return;
        }
    };
    // The same expansion reading the index finds the same subjects, paths and exclusions.
    match fast.found_subjects(resource, permission) {
        Ok(on_index) if format!("{on_index:?}") == format!("{found:?}") => {}
        Ok(on_index) => report.failures.push(Failure {
            what: format!("{what} on the index"),
            detail: format!("index: {on_index:?}\nrelationship set: {found:?}"),
        }),
        Err(e) => report.failures.push(Failure { what: format!("{what} on the index"), detail: format!("error: {e}") }),
    }
    let results: Vec<SubjectResult> = found
        .iter()
        .map(|f| SubjectResult {
            subject: f.subject.clone(),
            decision: Decision::from_tri(&f.value),
            excluded: f
                .excluded
                .iter()
                .map(|(s, c)| (s.clone(), if *c { Decision::Conditional(Vec::new()) } else { Decision::No }))
                .collect(),
        })
        .collect();
    let mut problems = Vec::new();
    for s in seen.subjects.iter().filter(|s| s.relation.is_none()) {
        let Some(expected) = decisions.get(&(resource.clone(), permission.to_string(), s.clone())) else { continue };
        let got = subject_answer(&results, s);
        let same = matches!(
            (expected, &got),
            (Decision::Has, Decision::Has)
                | (Decision::No, Decision::No)
                | (Decision::Conditional(_), Decision::Conditional(_))
        );
        if !same {
            problems.push(format!("`{s}`: Check gave {expected}, the expansion reaches {got}"));
        }
    }
    if !problems.is_empty() {
        report.failures.push(Failure { what, detail: problems.join("\n") });
    }
}
