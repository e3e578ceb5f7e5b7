//! Bearer keys. Each key belongs to one tenant (a tenant may hold several, for rotation with
//! overlap); a separate admin key guards the tenant service. Keys are stored only as SHA-256
//! hashes, in the database's settings; a presented key is hashed and compared in constant time
//! with every stored hash, so no lookup's timing depends on a secret.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{Database, DbError};

/// The setting the key hashes live in.
const SETTING: &str = "server/keys";

/// Why a key could not be added.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key belongs to another tenant: a key maps to exactly one tenant")]
    OtherTenant,
    #[error("the tenant holds this key already, as `{0}`")]
    Held(String),
    #[error("the tenant has a key `{0}` already")]
    IdTaken(String),
    #[error("`{0}` is not a key id (1 to 64 characters of `a-z A-Z 0-9 _ -`)")]
    BadId(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    /// A short public name for the key (revoking names it).
    pub id: String,
    pub tenant: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

pub struct Keys {
    db: Arc<Database>,
    keys: RwLock<Vec<StoredKey>>,
    admin: Option<[u8; 32]>,
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Equal bytes, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random key: 32 bytes from the operating system's randomness (through std's hasher
/// seeding), as hex with a recognizable prefix.
pub fn generate() -> String {
    use std::hash::{BuildHasher, RandomState};
    let mut bytes = Vec::with_capacity(32);
    for i in 0..4u64 {
        let v = RandomState::new().hash_one((i, std::time::SystemTime::now()));
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    format!("pmb_{}", hex(&bytes))
}

fn poisoned<T>(_: T) -> DbError {
    DbError::Internal("the key store's lock was poisoned".into())
}

impl Keys {
    /// The keys the database holds, and the admin key given at start (not stored).
    pub fn load(db: Arc<Database>, admin: Option<&str>) -> Result<Keys, DbError> {
        let keys = match db.setting(SETTING)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| DbError::Internal(format!("the stored key hashes do not parse: {e}")))?,
            None => Vec::new(),
        };
        Ok(Keys { db, keys: RwLock::new(keys), admin: admin.map(hash) })
    }

    fn save(&self, keys: &[StoredKey]) -> Result<(), DbError> {
        let bytes = serde_json::to_vec(keys).map_err(|e| DbError::Internal(e.to_string()))?;
        self.db.set_setting(SETTING, &bytes)
    }

    /// The tenant a presented key belongs to.
    pub fn tenant_of(&self, key: &str) -> Option<String> {
        let presented = hash(key);
        let keys = self.keys.read().ok()?;
        let mut found = None;
        // Every stored hash is compared, whichever matches.
        for k in keys.iter() {
            let stored: Vec<u8> = (0..k.sha256.len())
                .step_by(2)
                .filter_map(|i| k.sha256.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect();
            if same(&stored, &presented) && found.is_none() {
                found = Some(k.tenant.clone());
            }
        }
        found
    }

    /// Whether a presented key is the admin key.
    pub fn is_admin(&self, key: &str) -> bool {
        self.admin.is_some_and(|a| same(&a, &hash(key)))
    }

    /// Adds a key for a tenant; returns its id. Adding a key the tenant holds already returns
    /// its id (and keeps it as it is).
    pub fn add(&self, tenant: &str, key: &str) -> Result<String, KeyError> {
        self.add_as(tenant, key, None)
    }

    /// [`Keys::add`] with an id of the caller's choice (1 to 64 characters of `a-z A-Z 0-9 _
    /// -`; unique within the tenant). A key held by another tenant is refused: a key maps to
    /// exactly one tenant.
    pub fn add_as(&self, tenant: &str, key: &str, id: Option<&str>) -> Result<String, KeyError> {
        if let Some(id) = id
            && (id.is_empty()
                || id.len() > 64
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            return Err(KeyError::BadId(id.chars().take(64).collect()));
        }
        let sha = hex(&hash(key));
        let mut keys = self.keys.write().map_err(poisoned)?;
        if let Some(k) = keys.iter().find(|k| k.sha256 == sha) {
            if k.tenant != tenant {
                return Err(KeyError::OtherTenant);
            }
            if id.is_some_and(|id| id != k.id) {
                return Err(KeyError::Held(k.id.clone()));
            }
            return Ok(k.id.clone());
        }
        let id = match id {
            Some(id) if keys.iter().any(|k| k.tenant == tenant && k.id == id) => {
                return Err(KeyError::IdTaken(id.to_string()));
            }
            Some(id) => id.to_string(),
            None => format!("k{}", sha.get(..12).unwrap_or(&sha)),
        };
        let created = crate::model::Timestamp::now().0 / 1_000_000_000;
        let mut next = keys.clone();
        next.push(StoredKey { id: id.clone(), tenant: tenant.to_string(), sha256: sha, created: created as i64 });
        self.save(&next)?;
        *keys = next;
        Ok(id)
    }

    /// Revokes a tenant's key by id; returns whether it was there.
    pub fn revoke(&self, tenant: &str, id: &str) -> Result<bool, DbError> {
        let mut keys = self.keys.write().map_err(poisoned)?;
        let next: Vec<StoredKey> = keys.iter().filter(|k| !(k.tenant == tenant && k.id == id)).cloned().collect();
        if next.len() == keys.len() {
            return Ok(false);
        }
        self.save(&next)?;
        *keys = next;
        Ok(true)
    }

    /// Forgets every key of a dropped tenant.
    pub fn drop_tenant(&self, tenant: &str) -> Result<(), DbError> {
        let mut keys = self.keys.write().map_err(poisoned)?;
        let next: Vec<StoredKey> = keys.iter().filter(|k| k.tenant != tenant).cloned().collect();
        self.save(&next)?;
        *keys = next;
        Ok(())
    }

    /// A tenant's keys (ids and creation times; never the keys).
    pub fn of_tenant(&self, tenant: &str) -> Vec<StoredKey> {
        self.keys.read().map(|k| k.iter().filter(|k| k.tenant == tenant).cloned().collect()).unwrap_or_default()
    }

    /// Whether any tenant key exists.
    pub fn is_empty(&self) -> bool {
        self.keys.read().map(|k| k.is_empty()).unwrap_or(true)
    }
}
