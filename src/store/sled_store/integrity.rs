//! What the data directory holds besides sled's files, so that a damaged store is found at open
//! instead of served:
//! - `PEMBA`, the marker, written last when a store is created: a non-empty directory without
//!   it is not opened (a foreign directory is refused untouched; an interrupted creation is
//!   named as such);
//! - `pemba.state`, the integrity record: per tenant the last acknowledged head revision, the
//!   number of live relationship rows and an order-independent hash of them, checksummed,
//!   written after each flush that acknowledges writes into the older of two slots (a torn write
//!   leaves the other whole). Open compares it with what sled holds: a tenant gone, a head
//!   behind the record, or rows that do not add up to the record's count and hash are damage.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

pub(super) const MARKER: &str = "PEMBA";
pub(super) const RECORD: &str = "pemba.state";
const MARKER_TEXT: &str = "Pemba data directory (sled store). Do not edit the files here.\n";

/// Live relationship rows of a tenant at one revision: how many, and the wrapping sum of each
/// row's hash (so the order rows are read in does not matter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Fingerprint {
    pub(super) live: u64,
    pub(super) hash: u64,
}

impl Fingerprint {
    pub(super) fn add(&mut self, key: &[u8], text: &str) {
        self.live = self.live.wrapping_add(1);
        self.hash = self.hash.wrapping_add(row_hash(key, text));
    }

    pub(super) fn remove(&mut self, key: &[u8], text: &str) {
        self.live = self.live.wrapping_sub(1);
        self.hash = self.hash.wrapping_sub(row_hash(key, text));
    }
}

/// FNV-1a over the row's identity (its key without the version) and its text, then a
/// splitmix64 finalizer: fixed forever, since records outlive builds.
fn row_hash(key: &[u8], text: &str) -> u64 {
    let mut h = fnv1a(key.iter().chain([0xffu8].iter()).chain(text.as_bytes()));
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// One tenant's acknowledged state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TenantRecord {
    pub(super) head: u64,
    #[serde(flatten)]
    pub(super) rows: Fingerprint,
    /// The rows a garbage collection in progress leaves (it removes expired rows without a new
    /// revision): either count is whole at `head` until it is recorded done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) after_gc: Option<Fingerprint>,
}

impl TenantRecord {
    /// Whether rows counted at this record's head agree with it.
    pub(super) fn accepts(&self, rows: Fingerprint) -> bool {
        self.rows == rows || self.after_gc == Some(rows)
    }
}

/// The integrity record: every tenant's acknowledged state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) tenants: BTreeMap<String, TenantRecord>,
}

/// Bytes of one slot of the record file. The record is written to the two slots in turn, each
/// with its sequence number, length and checksum: a write torn by a crash leaves the other slot
/// whole, and rewriting a slot in place costs no file creation or rename.
/// 1 MiB: about 7,500 tenants (the default limit is 1,000). The file is sparse.
const SLOT: u64 = 1024 * 1024;
const MAGIC: &[u8; 8] = b"PEMBArec";
const HEADER: usize = 32;

fn checksum(bytes: &[u8]) -> u64 {
    fnv1a(bytes)
}

/// 64-bit FNV-1a.
fn fnv1a<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

pub(super) fn damaged(dir: &Path, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Damaged { dir: dir.display().to_string(), detail: detail.to_string() }
}

/// One slot's record and sequence number, if the slot is whole.
fn read_slot(bytes: &[u8]) -> Option<(u64, Record)> {
    let head = bytes.get(..HEADER)?;
    if head.get(..8)? != MAGIC {
        return None;
    }
    let num = |r: std::ops::Range<usize>| head.get(r).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    let (seq, len, sum) = (num(8..16)?, num(16..24)?, num(24..32)?);
    let body = bytes.get(HEADER..HEADER.checked_add(usize::try_from(len).ok()?)?)?;
    if checksum(body) != sum {
        return None;
    }
    Some((seq, serde_json::from_slice(body).ok()?))
}

/// The open record file: the next sequence number to write.
pub(super) struct RecordFile {
    file: std::fs::File,
    next: u64,
}

/// What the record file holds.
pub(super) enum Loaded {
    /// No file.
    Missing,
    /// A file with no whole slot (damage, or a first write torn before the marker existed).
    Unreadable,
    /// The newest whole record and its sequence number.
    Record(Record, u64),
}

/// Reads the record.
pub(super) fn load(dir: &Path) -> Result<Loaded, StoreError> {
    let path = dir.join(RECORD);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => return Err(damaged(dir, format!("cannot read `{RECORD}`: {e}"))),
    };
    let slot = SLOT as usize;
    let a = bytes.get(..slot.min(bytes.len())).and_then(read_slot);
    let b = bytes.get(slot..).and_then(read_slot);
    Ok(match (a, b) {
        (Some(x), Some(y)) => {
            if x.0 >= y.0 {
                Loaded::Record(x.1, x.0)
            } else {
                Loaded::Record(y.1, y.0)
            }
        }
        (Some(x), None) | (None, Some(x)) => Loaded::Record(x.1, x.0),
        (None, None) => Loaded::Unreadable,
    })
}

impl RecordFile {
    /// Opens (or creates) the record file; `last` is the sequence number of the record read.
    pub(super) fn open(dir: &Path, last: u64) -> Result<RecordFile, StoreError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(RECORD))
            .map_err(|e| StoreError::Unavailable(format!("cannot open `{}`: {e}", dir.join(RECORD).display())))?;
        Ok(RecordFile { file, next: last + 1 })
    }

    /// Writes the record over the older slot; synced (data only) when `sync`.
    pub(super) fn save(&mut self, dir: &Path, record: &Record, sync: bool) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        let fail =
            |e: std::io::Error| StoreError::Unavailable(format!("cannot write `{}`: {e}", dir.join(RECORD).display()));
        let body = serde_json::to_vec(record).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if body.len() + HEADER > SLOT as usize {
            return Err(StoreError::Unavailable(format!("the integrity record outgrew its {SLOT}-byte slot")));
        }
        let mut bytes = Vec::with_capacity(HEADER + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&self.next.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&checksum(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        self.file.write_all_at(&bytes, (self.next % 2) * SLOT).map_err(fail)?;
        if sync {
            self.file.sync_data().map_err(fail)?;
        }
        self.next += 1;
        Ok(())
    }
}

/// Writes `name` in `dir` through a temporary file renamed over it, synced before the rename
/// and the directory after it.
pub(super) fn replace(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp: PathBuf = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

pub(super) fn write_marker(dir: &Path) -> std::io::Result<()> {
    replace(dir, MARKER, MARKER_TEXT.as_bytes())
}

/// What a directory is, before sled touches it.
pub(super) enum Found {
    /// Missing or empty: a new store is created.
    New,
    /// Pemba's marker is there.
    Store,
    /// sled's files without the marker: a store of an earlier build (opened and marked if its
    /// format key is there) or a creation that was interrupted.
    Unmarked,
}

pub(super) fn inspect(dir: &Path) -> Result<Found, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::New),
        Err(e) => return Err(StoreError::Unavailable(format!("cannot read the directory `{}`: {e}", dir.display()))),
    };
    let mut names = Vec::new();
    for e in entries {
        let e =
            e.map_err(|e| StoreError::Unavailable(format!("cannot read the directory `{}`: {e}", dir.display())))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    if names.is_empty() {
        return Ok(Found::New);
    }
    if names.iter().any(|n| n == MARKER) {
        return Ok(Found::Store);
    }
    // sled's own files: `conf` (its configuration, text starting with `segment_size`), `db`,
    // `blobs/`, `snap.*`.
    let conf = std::fs::read(dir.join("conf")).unwrap_or_default();
    let sled_only = names.iter().all(|n| {
        matches!(n.as_str(), "conf" | "db" | "blobs" | RECORD) || n.starts_with("snap.") || n.ends_with(".tmp")
    });
    if conf.starts_with(b"segment_size") && sled_only {
        return Ok(Found::Unmarked);
    }
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    Err(StoreError::NotAStore {
        dir: dir.display().to_string(),
        detail: format!(
            "it is not empty ({}{}) and has no `{MARKER}` marker; nothing was changed: give an empty or new directory",
            shown.join(", "),
            if names.len() > 5 { ", …" } else { "" }
        ),
    })
}
