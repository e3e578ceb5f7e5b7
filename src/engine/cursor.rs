//! Opaque, tamper-evident page cursors. A cursor carries the revision and the `now` of the first
//! page (so every page answers at one snapshot and one instant), the tenant, a digest of the
//! query it belongs to, and the last id returned. An HMAC-SHA256 tag over the revision, `now`,
//! tenant and query makes a forged cursor, or one from another query or tenant, an error. The
//! last id follows the tag, hex-encoded but not tagged (`c2.<payload>.<tag>.<id>`): it only says where in its own
//! query's answer, at its pinned revision, the next page starts, which the client may choose
//! anyway, so one tag serves every result of a stream and a per-result cursor costs a copy, not
//! a MAC (the load benchmark found per-result tags took 80% of a streamed lookup's time).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::model::{Revision, Timestamp};

/// Longest cursor text accepted, in bytes.
pub const MAX_CURSOR_LEN: usize = 8 * 1024;
/// The current format; `c1` cursors (the tag covering the id as well) are still opened.
const VERSION: &str = "c2";
const VERSION_1: &str = "c1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub revision: Revision,
    pub now: Timestamp,
    pub tenant: String,
    /// Digest of the query the cursor continues.
    pub query: [u8; 16],
    /// The last id returned; the next page starts after it.
    pub after: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("malformed cursor")]
    Malformed,
    #[error("cursor failed its integrity check: it was altered or issued by another server")]
    BadTag,
    #[error("cursor belongs to a different query")]
    WrongQuery,
    #[error("cursor belongs to a different tenant")]
    WrongTenant,
}

/// The secret that signs cursors.
#[derive(Clone)]
pub struct CursorKey([u8; 32]);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    pub fn from_bytes(bytes: [u8; 32]) -> CursorKey {
        CursorKey(bytes)
    }

    /// A key from the operating system's randomness (through std's hasher seeding), for
    /// processes that do not persist one.
    pub fn random() -> CursorKey {
        use std::hash::{BuildHasher, RandomState};
        let mut key = [0u8; 32];
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            let v = RandomState::new().hash_one((i, std::time::SystemTime::now()));
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        CursorKey(key)
    }

    pub fn bytes(&self) -> [u8; 32] {
        self.0
    }

    fn tag(&self, payload: &[u8]) -> Result<[u8; 16], CursorError> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).map_err(|_| CursorError::Malformed)?;
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(full.get(..16).ok_or(CursorError::Malformed)?);
        Ok(out)
    }

    pub fn seal(&self, c: &Cursor) -> String {
        let mut text = self.seal_prefix(c);
        push_hex(&mut text, c.after.as_bytes());
        text
    }

    /// Everything of a sealed cursor but its last id (`c.after` is ignored): a stream computes
    /// it once and appends each result's id with [`push_hex`].
    pub fn seal_prefix(&self, c: &Cursor) -> String {
        let payload = encode_head(c);
        // The tag cannot fail for a 32-byte key; a failure would only yield a cursor that is
        // rejected on use.
        let tag = self.tag(&payload).unwrap_or_default();
        format!("{VERSION}.{}.{}.", hex(&payload), hex(&tag))
    }

    /// Opens a cursor, checking its tag, that it continues `query`, and that it belongs to `tenant`.
    pub fn open(&self, text: &str, query: [u8; 16], tenant: &str) -> Result<Cursor, CursorError> {
        let c = self.open_any(text, tenant)?;
        if c.query != query {
            return Err(CursorError::WrongQuery);
        }
        Ok(c)
    }

    /// Opens a cursor of any query, checking its tag and that it belongs to `tenant` (to learn
    /// the revision and `now` it pins before the query is known in full).
    pub fn open_any(&self, text: &str, tenant: &str) -> Result<Cursor, CursorError> {
        if text.len() > MAX_CURSOR_LEN {
            return Err(CursorError::Malformed);
        }
        let mut parts = text.splitn(4, '.');
        let (version, p, t, after) = (parts.next(), parts.next(), parts.next(), parts.next());
        let (Some(p), Some(t)) = (p, t) else { return Err(CursorError::Malformed) };
        let payload = unhex(p).ok_or(CursorError::Malformed)?;
        let tag = unhex(t).ok_or(CursorError::Malformed)?;
        let expected = self.tag(&payload)?;
        // Constant-time comparison of the tags.
        if tag.len() != expected.len() || tag.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return Err(CursorError::BadTag);
        }
        let c = match (version, after) {
            (Some(VERSION), Some(after)) => {
                let mut c = decode_head(&payload).ok_or(CursorError::Malformed)?;
                c.after = unhex(after).and_then(|b| String::from_utf8(b).ok()).ok_or(CursorError::Malformed)?;
                c
            }
            (Some(VERSION_1), None) => decode(&payload).ok_or(CursorError::Malformed)?,
            _ => return Err(CursorError::Malformed),
        };
        if c.tenant != tenant {
            return Err(CursorError::WrongTenant);
        }
        Ok(c)
    }
}

/// A digest identifying a query (its kind and every parameter that shapes the answer).
pub fn query_digest(parts: &[&str]) -> [u8; 16] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    if let Some(head) = full.get(..16) {
        out.copy_from_slice(head);
    }
    out
}

/// The tagged part of a `c2` cursor: revision, `now`, query, tenant.
fn encode_head(c: &Cursor) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + c.tenant.len());
    out.extend_from_slice(&c.revision.0.to_be_bytes());
    out.extend_from_slice(&c.now.0.to_be_bytes());
    out.extend_from_slice(&c.query);
    out.extend_from_slice(&(c.tenant.len() as u32).to_be_bytes());
    out.extend_from_slice(c.tenant.as_bytes());
    out
}

fn decode_head(b: &[u8]) -> Option<Cursor> {
    let revision = Revision(u64::from_be_bytes(b.get(0..8)?.try_into().ok()?));
    let now = Timestamp(i128::from_be_bytes(b.get(8..24)?.try_into().ok()?));
    let query: [u8; 16] = b.get(24..40)?.try_into().ok()?;
    let len = u32::from_be_bytes(b.get(40..44)?.try_into().ok()?) as usize;
    let tenant = std::str::from_utf8(b.get(44..44usize.checked_add(len)?)?).ok()?.to_string();
    if b.len() != 44 + len {
        return None;
    }
    Some(Cursor { revision, now, tenant, query, after: String::new() })
}

/// The `c1` payload (the id inside the tag), kept to open cursors issued before `c2`.
#[cfg(test)]
fn encode(c: &Cursor) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + c.after.len() + c.tenant.len());
    out.extend_from_slice(&c.revision.0.to_be_bytes());
    out.extend_from_slice(&c.now.0.to_be_bytes());
    out.extend_from_slice(&c.query);
    for s in [&c.tenant, &c.after] {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

fn decode(b: &[u8]) -> Option<Cursor> {
    let revision = Revision(u64::from_be_bytes(b.get(0..8)?.try_into().ok()?));
    let now = Timestamp(i128::from_be_bytes(b.get(8..24)?.try_into().ok()?));
    let query: [u8; 16] = b.get(24..40)?.try_into().ok()?;
    let mut rest = b.get(40..)?;
    let mut strings = Vec::new();
    for _ in 0..2 {
        let len = u32::from_be_bytes(rest.get(0..4)?.try_into().ok()?) as usize;
        let s = std::str::from_utf8(rest.get(4..4 + len)?).ok()?.to_string();
        rest = rest.get(4 + len..)?;
        strings.push(s);
    }
    if !rest.is_empty() {
        return None;
    }
    let after = strings.pop()?;
    let tenant = strings.pop()?;
    Some(Cursor { revision, now, tenant, query, after })
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    push_hex(&mut s, b);
    s
}

/// Appends `b` in lowercase hex.
pub fn push_hex(s: &mut String, b: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for x in b {
        for nibble in [x >> 4, x & 15] {
            s.push(char::from(DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0')));
        }
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_tampering() {
        let key = CursorKey::random();
        let q = query_digest(&["lr", "doc", "view"]);
        let c =
            Cursor { revision: Revision(7), now: Timestamp(42), tenant: "t".into(), query: q, after: "doc-9".into() };
        let text = key.seal(&c);
        assert_eq!(key.open(&text, q, "t"), Ok(c.clone()));
        assert_eq!(key.open(&text, query_digest(&["other"]), "t"), Err(CursorError::WrongQuery));
        assert_eq!(key.open(&text, q, "u"), Err(CursorError::WrongTenant));
        assert_eq!(CursorKey::random().open(&text, q, "t"), Err(CursorError::BadTag));
        let mut forged = text.clone().into_bytes();
        let i = 10;
        forged[i] = if forged[i] == b'0' { b'1' } else { b'0' };
        assert_eq!(key.open(std::str::from_utf8(&forged).unwrap(), q, "t"), Err(CursorError::BadTag));
        assert_eq!(key.open("garbage", q, "t"), Err(CursorError::Malformed));
        // The id follows the tag: another id is another position in the same answer; bytes an id
        // cannot hold are refused.
        let (prefix, id) = text.rsplit_once('.').unwrap();
        assert_eq!(id, hex(b"doc-9"));
        let moved = format!("{prefix}.{}", hex(b"doc-1"));
        assert_eq!(key.open(&moved, q, "t").map(|c| c.after), Ok("doc-1".to_string()));
        assert_eq!(key.open(&format!("{prefix}.zz"), q, "t"), Err(CursorError::Malformed));
        assert_eq!(key.open(&format!("{prefix}.{}", hex(&[0xff])), q, "t"), Err(CursorError::Malformed));
        // One prefix serves every id of a stream.
        let mut again = key.seal_prefix(&c);
        push_hex(&mut again, b"doc-9");
        assert_eq!(again, text);
    }

    #[test]
    fn version_1_cursors_still_open() {
        let key = CursorKey::random();
        let q = query_digest(&["lr"]);
        let c = Cursor { revision: Revision(3), now: Timestamp(5), tenant: "t".into(), query: q, after: "x".into() };
        let payload = encode(&c);
        let v1 = format!("c1.{}.{}", hex(&payload), hex(&key.tag(&payload).unwrap()));
        assert_eq!(key.open(&v1, q, "t"), Ok(c));
        let forged = format!("c1.{}.{}", hex(&payload), hex(&[0u8; 16]));
        assert_eq!(key.open(&forged, q, "t"), Err(CursorError::BadTag));
    }
}
