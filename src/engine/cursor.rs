//! Opaque, tamper-evident page cursors. A cursor carries the revision and the `now` of the first
//! page (so every page answers at one snapshot and one instant), the tenant, a digest of the
//! query it belongs to, and the last id returned; an HMAC-SHA256 tag over all of it makes a
//! forged cursor, or one from another query or tenant, an error.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::model::{Revision, Timestamp};

/// Longest cursor text accepted, in bytes.
pub const MAX_CURSOR_LEN: usize = 8 * 1024;
const VERSION: &str = "c1";

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
        let payload = encode(c);
        // The tag cannot fail for a 32-byte key; a failure would only yield a cursor that is
        // rejected on use.
        let tag = self.tag(&payload).unwrap_or_default();
        format!("{VERSION}.{}.{}", hex(&payload), hex(&tag))
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
        let mut parts = text.split('.');
        let (Some(VERSION), Some(p), Some(t), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(CursorError::Malformed);
        };
        let payload = unhex(p).ok_or(CursorError::Malformed)?;
        let tag = unhex(t).ok_or(CursorError::Malformed)?;
        let expected = self.tag(&payload)?;
        // Constant-time comparison of the tags.
        if tag.len() != expected.len() || tag.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return Err(CursorError::BadTag);
        }
        let c = decode(&payload).ok_or(CursorError::Malformed)?;
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
    b.iter().map(|x| format!("{x:02x}")).collect()
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
        assert_eq!(key.open(&text, q, "t"), Ok(c));
        assert_eq!(key.open(&text, query_digest(&["other"]), "t"), Err(CursorError::WrongQuery));
        assert_eq!(key.open(&text, q, "u"), Err(CursorError::WrongTenant));
        assert_eq!(CursorKey::random().open(&text, q, "t"), Err(CursorError::BadTag));
        let mut forged = text.clone().into_bytes();
        let i = 10;
        forged[i] = if forged[i] == b'0' { b'1' } else { b'0' };
        assert_eq!(key.open(std::str::from_utf8(&forged).unwrap(), q, "t"), Err(CursorError::BadTag));
        assert_eq!(key.open("garbage", q, "t"), Err(CursorError::Malformed));
    }
}
