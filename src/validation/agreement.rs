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
    subject_candidates,
};
use crate::engine::{self, CheckRequest, Ctx, Decision, Env, EvalError, History};
use crate::model::{ObjectRef, SubjectRef};
use crate::query::Snapshot;

/// Every triple's answer from the reference Check: a decision, or `None` where the answer
/// depends on itself through an exclusion (every path must then fail with that error; the cycle
/// it names may differ with the order each path met it).
type Decisions = BTreeMap<(ObjectRef, String, SubjectRef), Option<Decision>>;

/// Whether `got` is what `want` (a decision, or `None` for the exclusion-cycle error) expects.
fn agrees<T: PartialEq>(want: Option<&T>, got: &Result<T, EvalError>) -> bool {
    match (want, got) {
        (Some(w), Ok(g)) => w == g,
        (None, Err(EvalError::ExclusionCycle(_))) => true,
        _ => false,
    }
}

/// Most triples one file may generate; beyond this the file is reported as too large to agree
/// (known before any check runs: types' ids × their relations and permissions × subjects).
pub const MAX_TRIPLES: usize = 200_000;

/// How long the agreement checks of one file may run by default (`pemba validate
/// --agreement-budget-secs`).
pub const DEFAULT_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

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

/// Runs every agreement check, adding the number made and any disagreement to the report. A
/// file that would generate more than [`MAX_TRIPLES`] triples is refused before any check; the
/// checks stop, reported as a failure, when `budget` runs out.
pub fn check_agreement(
    file: &ValidationFile,
    conditions: &Conditions,
    env: Env,
    report: &mut FileReport,
    budget: std::time::Duration,
) {
    let seen = seen(file);
    let planned = file
        .schema
        .definitions()
        .map(|def| seen.objects.get(&def.name).map_or(0, BTreeSet::len).saturating_mul(def.member_names().count()))
        .fold(0usize, usize::saturating_add)
        .saturating_mul(seen.subjects.len());
    if planned > MAX_TRIPLES {
        report.failures.push(Failure {
            what: "agreement".into(),
            detail: format!(
                "the file would generate {planned} triples (each type's ids × its relations and permissions × {} \
                 subjects); the limit is {MAX_TRIPLES}: no agreement check was run (`--skip-agreement` runs the \
                 assertions alone)",
                seen.subjects.len()
            ),
        });
        return;
    }
    let deadline = std::time::Instant::now().checked_add(budget);
    let out_of_time = |report: &mut FileReport| {
        let over = deadline.is_some_and(|d| std::time::Instant::now() >= d);
        if over {
            report.failures.push(Failure {
                what: "agreement".into(),
                detail: format!(
                    "stopped after {} checks: the time budget of {} s ran out (`--agreement-budget-secs`)",
                    report.agreement_checks,
                    budget.as_secs_f64()
                ),
            });
        }
        over
    };
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
                if out_of_time(report) {
                    return;
                }
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
                        Ok(d) => Some(d),
                        Err(EvalError::UnknownMember { .. }) => continue,
                        Err(EvalError::ExclusionCycle(_)) => None,
                        Err(e) => {
                            fail(report, format!("Check `{triple}`"), format!("error: {e}"));
                            continue;
                        }
                    };
                    let shown = single.as_ref().map_or("the exclusion-cycle error".into(), |d| d.to_string());
                    if !agrees(single.as_ref(), &bulk_answer) {
                        fail(
                            report,
                            format!("CheckBulk `{triple}`"),
                            format!("CheckBulk gave {}, Check gave {shown}", answer(&bulk_answer)),
                        );
                    }
                    let fast_single = fast.check(req);
                    if !agrees(single.as_ref(), &fast_single) || !agrees(single.as_ref(), &bulk_fast) {
                        fail(
                            report,
                            format!("fast Check `{triple}`"),
                            format!(
                                "fast Check gave {}, fast CheckBulk {}, reference Check {shown}",
                                answer(&fast_single),
                                answer(&bulk_fast)
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
                if out_of_time(report) {
                    return;
                }
                let answers: Vec<(&String, Option<&Decision>)> = ids
                    .iter()
                    .filter_map(|id| {
                        let d = decisions.get(&(ObjectRef::new(def.name.clone(), id.clone()), m.clone(), s.clone()))?;
                        Some((id, d.as_ref()))
                    })
                    .collect();
                // One object whose Check meets a cycle through an exclusion fails the lookup.
                let cyclic = answers.iter().any(|(_, d)| d.is_none());
                let expected: Vec<ResourceResult> = answers
                    .iter()
                    .filter_map(|(id, d)| {
                        let d = (*d)?;
                        (d != &Decision::No).then(|| ResourceResult { id: (*id).clone(), decision: d.clone() })
                    })
                    .collect();
                let want = (!cyclic).then_some(&expected);
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
                let unpaged = lookup_resources(&reader, &req, env.now).map(|p| p.items);
                if matches!(unpaged, Err(EvalError::UnknownMember { .. })) {
                    continue;
                }
                let mismatch = |got: &Result<Vec<ResourceResult>, EvalError>| match (want, got) {
                    (Some(e), Ok(g)) => diff_resources(e, g),
                    (Some(_), Err(e)) => format!("error: {e}"),
                    (None, Ok(g)) => format!("expected the exclusion-cycle error, got {} results", g.len()),
                    (None, Err(e)) => format!("expected the exclusion-cycle error, got: {e}"),
                };
                if !agrees(want, &unpaged) {
                    fail(report, what.clone(), mismatch(&unpaged));
                }
                let fast_unpaged = fast.lookup_resources(&req).map(|p| p.items);
                if !agrees(want, &fast_unpaged) {
                    fail(report, format!("{what} (fast path)"), mismatch(&fast_unpaged));
                }
                req.limit = Some(2);
                let paged = all_pages(|cursor| {
                    req.cursor = cursor;
                    fast.lookup_resources(&req)
                });
                if !agrees(want, &paged) {
                    fail(report, format!("{what} in pages of 2"), mismatch(&paged));
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
                if out_of_time(report) {
                    return;
                }
                for (ty, rel) in &kinds {
                    subjects_agree((&reference, &fast), &resource, m, (ty, rel), (&seen, &decisions), report);
                }
                expansion_agrees(&reference, &fast, &resource, m, &seen, &decisions, report);
            }
        }
    }
}

/// A decision or an error, as a report shows it.
fn answer(r: &Result<Decision, EvalError>) -> String {
    match r {
        Ok(d) => d.to_string(),
        Err(e) => format!("the error `{e}`"),
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
    (reference, fast): (&Ctx<'_>, &Snapshot),
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
    let of_kind: Vec<&SubjectRef> = seen.subjects.iter().filter(|s| s.object.ty == ty && &s.relation == rel).collect();
    // The lookup fails when a candidate's Check meets a cycle through an exclusion; candidates
    // include subject sets that evaluation visits and no relationship names, so ask the
    // reference about each candidate rather than only the seen subjects.
    let cyclic = subject_candidates(reference, &req, "").is_ok_and(|candidates| {
        candidates.into_iter().any(|subject| {
            let check = CheckRequest {
                resource: resource.clone(),
                permission: permission.to_string(),
                subject,
                context: Map::new(),
            };
            matches!(engine::check(reference, &check), Err(EvalError::ExclusionCycle(_)))
        })
    });
    let unpaged = match fast.lookup_subjects(&req) {
        Ok(p) if !cyclic => p.items,
        Err(EvalError::UnknownMember { .. }) => return,
        Err(EvalError::ExclusionCycle(_)) if cyclic => return,
        other => {
            let detail = match other {
                Ok(p) => format!("expected the exclusion-cycle error, got {} results", p.items.len()),
                Err(e) => format!("error: {e}"),
            };
            report.failures.push(Failure { what, detail });
            return;
        }
    };
    let mut problems = Vec::new();
    for s in of_kind {
        let Some(Some(expected)) = decisions.get(&(resource.clone(), permission.to_string(), s.clone())) else {
            continue;
        };
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
    let cyclic = seen
        .subjects
        .iter()
        .filter(|s| s.relation.is_none())
        .any(|s| decisions.get(&(resource.clone(), permission.to_string(), s.clone())) == Some(&None));
    // Both expansions meet a cycle through an exclusion or neither does (a candidate no seen
    // subject covers, such as a wildcard, may be the one that meets it); one that the seen
    // subjects' Checks met must be met.
    let found = match (found_subjects(reference, resource, permission), fast.found_subjects(resource, permission)) {
        (Err(EvalError::ExclusionCycle(_)), Err(EvalError::ExclusionCycle(_))) => return,
        (Err(EvalError::ExclusionCycle(_)), other) => {
            let detail = format!(
                "the relationship set's expansion met a cycle through an exclusion; the index's gave {other:?}"
            );
            report.failures.push(Failure { what: format!("{what} on the index"), detail });
            return;
        }
        (Ok(_), _) if cyclic => {
            let detail = "a Check met a cycle through an exclusion; the expansion did not".into();
            report.failures.push(Failure { what, detail });
            return;
        }
        (Err(e), _) => {
            report.failures.push(Failure { what, detail: format!("error: {e}") });
            return;
        }
        (Ok(found), on_index) => {
            // The same expansion reading the index finds the same subjects, paths and exclusions.
            match on_index {
                Ok(on_index) if format!("{on_index:?}") == format!("{found:?}") => {}
                Ok(on_index) => report.failures.push(Failure {
                    what: format!("{what} on the index"),
                    detail: format!("index: {on_index:?}\nrelationship set: {found:?}"),
                }),
                Err(e) => report
                    .failures
                    .push(Failure { what: format!("{what} on the index"), detail: format!("error: {e}") }),
            }
            found
        }
    };
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
        let Some(Some(expected)) = decisions.get(&(resource.clone(), permission.to_string(), s.clone())) else {
            continue;
        };
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
