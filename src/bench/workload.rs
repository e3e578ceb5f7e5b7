//! A deterministic generator of Google-Drive-like data for benchmarks: users, groups nested up to
//! 6 levels, folders nested up to 8 levels, documents with owners, editors and viewers, public
//! documents, banned users, and some caveated and expiring grants. The same seed always gives the
//! same relationships, so figures from different runs and machines describe the same data.
//!
//! Alongside the data it names probe queries whose answers are known by construction (a direct
//! grant, a grant through 6 levels of groups, through 8 levels of folders, a denial, a caveated
//! grant, and users who see many documents).

use crate::engine::CheckRequest;
use crate::model::{ObjectRef, Relationship, SubjectRef, Timestamp};

/// The schema the data is written for (the project's Drive fixture).
pub const DRIVE_SCHEMA: &str = include_str!("../../schema/drive.zed");

/// How much data to make.
#[derive(Debug, Clone, Copy)]
pub struct DriveSize {
    pub users: usize,
    pub groups: usize,
    pub folders: usize,
    pub documents: usize,
    pub seed: u64,
}

impl DriveSize {
    /// About 50k relationships.
    pub fn small() -> DriveSize {
        DriveSize { users: 2_000, groups: 300, folders: 1_500, documents: 12_000, seed: 7 }
    }

    /// About 1M relationships.
    pub fn medium() -> DriveSize {
        DriveSize { users: 40_000, groups: 6_000, folders: 30_000, documents: 240_000, seed: 7 }
    }

    pub fn by_name(name: &str) -> Option<DriveSize> {
        match name {
            "s" | "small" => Some(DriveSize::small()),
            "m" | "medium" => Some(DriveSize::medium()),
            _ => None,
        }
    }
}

/// A Check whose answer is known.
#[derive(Debug, Clone)]
pub struct Probe {
    pub name: &'static str,
    pub resource: ObjectRef,
    pub permission: &'static str,
    pub subject: SubjectRef,
    /// Request context (JSON object text).
    pub context: &'static str,
    /// The answer by construction: `true` allowed, `false` denied.
    pub expected: bool,
}

impl Probe {
    /// The probe as a Check request (its context is fixed, valid JSON).
    pub fn request(&self) -> CheckRequest {
        CheckRequest {
            resource: self.resource.clone(),
            permission: self.permission.into(),
            subject: self.subject.clone(),
            context: crate::model::parse_context(self.context).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Drive {
    pub relationships: Vec<Relationship>,
    pub probes: Vec<Probe>,
    /// Users for LookupResources, each with roughly how many documents they see.
    pub lookup_users: Vec<(&'static str, SubjectRef)>,
}

/// splitmix64: small, fast, seedable (a sequence replays exactly), and good enough to scatter
/// benchmark data and drive the fuzz tests' mutations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

fn obj(ty: &str, id: impl std::fmt::Display) -> ObjectRef {
    ObjectRef::new(ty, id.to_string())
}

fn user(i: usize) -> SubjectRef {
    SubjectRef::new(obj("user", format!("u{i}")), None)
}

fn group_members(i: usize) -> SubjectRef {
    SubjectRef::new(obj("group", format!("g{i}")), Some("member".into()))
}

fn rel(resource: ObjectRef, relation: &str, subject: SubjectRef) -> Relationship {
    Relationship { resource, relation: relation.into(), subject, caveat: None, expiration: None }
}

/// Generates the data set. Deterministic for a given size and seed.
pub fn generate(size: DriveSize) -> Drive {
    let mut r = Rng(size.seed);
    let mut out = Vec::new();
    let users = size.users.max(16);
    let groups = size.groups.max(14);
    let folders = size.folders.max(20);

    // Groups form chains of depth 6: group g's parent group is g - 1 unless g starts a chain.
    // Every group has a few direct members.
    for g in 0..groups {
        if g % 6 != 0 {
            out.push(rel(obj("group", format!("g{}", g - 1)), "member", group_members(g)));
        }
        for _ in 0..(users * 2 / groups).max(1) {
            out.push(rel(obj("group", format!("g{g}")), "member", user(r.below(users))));
        }
    }
    out.sort_by_key(|a| a.key());
    out.dedup_by(|a, b| a.key() == b.key());

    // Folders form trees of 50: every 50th folder is a root; the next 8 form a chain under it
    // (so depth 8 exists in every tree), and the rest hang under a random earlier folder of the
    // same tree whose depth is below 8.
    let mut depth = vec![0usize; folders];
    let depth_of = |depth: &[usize], f: usize| depth.get(f).copied().unwrap_or(0);
    for f in 0..folders {
        let root = f - f % 50;
        if f != root {
            let parent = if f - root <= 8 {
                f - 1
            } else {
                let candidate = root + r.below(f - root);
                if depth_of(&depth, candidate) < 8 { candidate } else { root }
            };
            let d = depth_of(&depth, parent) + 1;
            if let Some(slot) = depth.get_mut(f) {
                *slot = d;
            }
            out.push(rel(
                obj("folder", format!("f{f}")),
                "parent",
                SubjectRef::new(obj("folder", format!("f{parent}")), None),
            ));
        }
        out.push(rel(obj("folder", format!("f{f}")), "owner", user(r.below(users))));
        if r.chance(60) {
            out.push(rel(obj("folder", format!("f{f}")), "viewer", group_members(r.below(groups))));
        }
        if r.chance(20) {
            out.push(rel(obj("folder", format!("f{f}")), "editor", user(r.below(users))));
        }
    }

    // Two users who see many documents: `lr_staff` through a group that views every 24th root
    // folder (about 1/24 of the documents), `lr_manager` through one that views 5 of every 12.
    let staff = groups;
    let managers = groups + 1;
    out.push(rel(obj("group", format!("g{staff}")), "member", SubjectRef::new(obj("user", "lr_staff"), None)));
    out.push(rel(obj("group", format!("g{managers}")), "member", SubjectRef::new(obj("user", "lr_manager"), None)));
    for (i, root) in (0..folders).step_by(50).enumerate() {
        if i % 24 == 0 {
            out.push(rel(obj("folder", format!("f{root}")), "viewer", group_members(staff)));
        }
        if i % 12 < 5 {
            out.push(rel(obj("folder", format!("f{root}")), "viewer", group_members(managers)));
        }
    }

    let far_future = Timestamp::parse("2999-01-01T00:00:00Z").ok();
    let past = Timestamp::parse("2001-01-01T00:00:00Z").ok();
    for d in 0..size.documents {
        let doc = obj("document", format!("d{d}"));
        out.push(rel(doc.clone(), "parent", SubjectRef::new(obj("folder", format!("f{}", r.below(folders))), None)));
        out.push(rel(doc.clone(), "owner", user(r.below(users))));
        if r.chance(50) {
            out.push(rel(doc.clone(), "editor", user(r.below(users))));
        }
        match r.below(100) {
            0..=1 => out.push(rel(doc.clone(), "viewer", SubjectRef::new(obj("user", "*"), None))),
            2..=3 => {
                let mut g = rel(doc.clone(), "viewer", user(r.below(users)));
                g.caveat = Some(crate::model::CaveatRef {
                    name: "from_network".into(),
                    context: serde_json::json!({"network": "10.0.0.0/8"}).as_object().cloned().unwrap_or_default(),
                });
                out.push(g);
            }
            4..=5 => {
                let mut g = rel(doc.clone(), "viewer", user(r.below(users)));
                g.expiration = if r.chance(50) { far_future } else { past };
                out.push(g);
            }
            6..=45 => out.push(rel(doc.clone(), "viewer", group_members(r.below(groups)))),
            _ => out.push(rel(doc.clone(), "viewer", user(r.below(users)))),
        }
        if r.chance(1) {
            out.push(rel(doc.clone(), "banned", user(r.below(users))));
        }
    }

    // Probes, with relationships that make their answers true by construction.
    // Folder 8 is at depth 8 under root folder 0 (the chain above).
    let (deepest, root) = (8, 0);
    out.push(rel(
        obj("document", "probe_folder"),
        "parent",
        SubjectRef::new(obj("folder", format!("f{deepest}")), None),
    ));
    out.push(rel(
        obj("folder", format!("f{root}")),
        "viewer",
        SubjectRef::new(obj("user", "probe_folder_viewer"), None),
    ));
    out.push(rel(obj("document", "probe_direct"), "viewer", SubjectRef::new(obj("user", "probe_direct"), None)));
    // Group chain g0 ⊃ g1 ⊃ … ⊃ g5: a member of g5 is 6 levels below the grant on g0.
    out.push(rel(obj("document", "probe_group"), "viewer", group_members(0)));
    out.push(rel(obj("group", "g5"), "member", SubjectRef::new(obj("user", "probe_group_member"), None)));
    let mut caveated =
        rel(obj("document", "probe_caveat"), "viewer", SubjectRef::new(obj("user", "probe_caveat"), None));
    caveated.caveat = Some(crate::model::CaveatRef {
        name: "from_network".into(),
        context: serde_json::json!({"network": "10.0.0.0/8"}).as_object().cloned().unwrap_or_default(),
    });
    out.push(caveated);
    out.sort_by_key(|a| a.key());
    out.dedup_by(|a, b| a.key() == b.key());

    let probe = |name, resource: &str, subject: &str, context, expected| Probe {
        name,
        resource: obj("document", resource),
        permission: "view",
        subject: SubjectRef::new(obj("user", subject), None),
        context,
        expected,
    };
    let probes = vec![
        probe("direct grant", "probe_direct", "probe_direct", "{}", true),
        probe("6 levels of groups", "probe_group", "probe_group_member", "{}", true),
        probe("8 levels of folders", "probe_folder", "probe_folder_viewer", "{}", true),
        probe("denial", "probe_direct", "nobody", "{}", false),
        probe("rhai caveat", "probe_caveat", "probe_caveat", r#"{"client_ip": "10.1.2.3"}"#, true),
    ];
    let lookup_users = vec![
        ("lr_staff", SubjectRef::new(obj("user", "lr_staff"), None)),
        ("lr_manager", SubjectRef::new(obj("user", "lr_manager"), None)),
    ];
    Drive { relationships: out, probes, lookup_users }
}

/// The CheckBulk of 100 items every benchmark uses: `document#view` for documents and users
/// spread over the data set.
pub fn bulk_requests(size: DriveSize) -> Vec<CheckRequest> {
    (0..100)
        .map(|i| CheckRequest {
            resource: ObjectRef::new("document", format!("d{}", (i * 7919) % size.documents.max(1))),
            permission: "view".into(),
            subject: SubjectRef::new(ObjectRef::new("user", format!("u{}", (i * 104_729) % size.users.max(1))), None),
            context: serde_json::Map::new(),
        })
        .collect()
}

/// A stream of distinct Checks in the Drive mix, each to be asked once (as real traffic asks):
/// `view` (three in four) or `edit` on a random document for a random user, no two alike.
pub fn cold_checks(size: DriveSize, n: usize) -> Vec<CheckRequest> {
    let mut rng = Rng(size.seed ^ 0xC01D);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n && seen.len() < size.documents.saturating_mul(size.users) {
        let (d, u, edit) = (rng.below(size.documents), rng.below(size.users), rng.chance(25));
        if seen.insert((d, u, edit)) {
            let permission = if edit { "edit" } else { "view" };
            out.push(CheckRequest::new(obj("document", format!("d{d}")), permission, user(u)));
        }
    }
    out
}

/// Checks on documents no relationship names (each asked once), for random users.
pub fn unseen_checks(size: DriveSize, n: usize) -> Vec<CheckRequest> {
    let mut rng = Rng(size.seed ^ 0x0B5E);
    (0..n)
        .map(|i| CheckRequest::new(obj("document", format!("unseen{i}")), "view", user(rng.below(size.users))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_near_its_size() {
        let a = generate(DriveSize::small());
        let b = generate(DriveSize::small());
        assert_eq!(a.relationships, b.relationships);
        assert!((40_000..60_000).contains(&a.relationships.len()), "{}", a.relationships.len());
    }
}
