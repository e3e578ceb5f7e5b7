//! Resolves one batch of mutations against a tenant's tree plus the batch's own earlier writes:
//! the rows to write (an overlay of key → value) and the typed changes it made.

use std::collections::BTreeMap;

use super::integrity::Fingerprint;
use super::io;
use super::keys::{
    ATTRIBUTES, AttrRow, RELATIONSHIPS, RelRow, SCHEMAS, corrupt, parse_relationship, revision_key, row_prefix,
    split_versioned, versioned_key,
};
use crate::model::{ObjectRef, Relationship};
use crate::store::{Change, Mutation, Revision, StoreError, object_key, relationship_key};

/// A raw row: full key and value.
type Row = (Vec<u8>, Vec<u8>);

pub(super) struct Writer<'a> {
    pub(super) tree: &'a sled::Tree,
    /// The tree has no relationship rows: skip tree lookups for them.
    pub(super) fresh: bool,
    pub(super) rev: Revision,
    pub(super) overlay: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(super) changes: Vec<Change>,
    /// The tenant's live rows, kept up to date with the batch (the integrity record's count
    /// and hash).
    pub(super) rows: Fingerprint,
}

impl Writer<'_> {
    /// Every version of a row (tree merged with this batch's writes), as (full key, value).
    fn versions(&self, prefix: &[u8]) -> Result<Vec<Row>, StoreError> {
        let mut out: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        if !(self.fresh && prefix.first() == Some(&RELATIONSHIPS)) {
            for item in self.tree.scan_prefix(prefix) {
                let (k, v) = item.map_err(io)?;
                out.insert(k.to_vec(), v.to_vec());
            }
        }
        for (k, v) in self.overlay.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            out.insert(k.clone(), v.clone());
        }
        Ok(out.into_iter().collect())
    }

    /// The live version of a relationship row, if any.
    fn live_rel(&self, key: &str) -> Result<Option<(Vec<u8>, RelRow)>, StoreError> {
        for (k, v) in self.versions(&row_prefix(RELATIONSHIPS, key))?.into_iter().rev() {
            let row: RelRow = serde_json::from_slice(&v).map_err(corrupt)?;
            if row.deleted.is_none() {
                return Ok(Some((k, row)));
            }
        }
        Ok(None)
    }

    /// Marks a live row deleted at this revision; returns the relationship it held.
    fn delete_rel(&mut self, key: Vec<u8>, mut row: RelRow) -> Result<Relationship, StoreError> {
        row.deleted = Some(self.rev.0);
        let (identity, created) = split_versioned(&key)?;
        self.rows.remove(identity.as_bytes(), &row.text);
        let gone = parse_relationship(&row.text)?;
        if created == self.rev.0 {
            // Created and deleted in the same batch: never visible, drop it.
            self.overlay.remove(&key);
        } else {
            self.overlay.insert(key, serde_json::to_vec(&row).map_err(corrupt)?);
        }
        Ok(gone)
    }

    pub(super) fn put_rel(&mut self, r: &Relationship) -> Result<(), StoreError> {
        let row = RelRow { deleted: None, text: r.to_string() };
        let identity = relationship_key(r);
        self.rows.add(identity.as_bytes(), &row.text);
        self.overlay
            .insert(versioned_key(RELATIONSHIPS, &identity, self.rev.0), serde_json::to_vec(&row).map_err(corrupt)?);
        self.changes.push(Change::Upsert(r.clone()));
        Ok(())
    }

    pub(super) fn mutation(&mut self, m: &Mutation) -> Result<(), StoreError> {
        match m {
            Mutation::Create(r) => {
                if self.live_rel(&relationship_key(r))?.is_some() {
                    return Err(StoreError::AlreadyExists(r.to_string()));
                }
                self.put_rel(r)
            }
            Mutation::Touch(r) => {
                if let Some((k, row)) = self.live_rel(&relationship_key(r))? {
                    // The replaced version ends here; the change is the upsert alone.
                    self.delete_rel(k, row)?;
                }
                self.put_rel(r)
            }
            Mutation::Delete(r) => match self.live_rel(&relationship_key(r))? {
                Some((k, row)) => {
                    let gone = self.delete_rel(k, row)?;
                    self.changes.push(Change::Delete(gone));
                    Ok(())
                }
                None => Ok(()),
            },
            Mutation::DeleteByFilter(f) => {
                // Narrow the scan by the leading key parts the filter fixes.
                let mut prefix = vec![RELATIONSHIPS];
                if let Some(t) = &f.resource_type {
                    prefix.extend_from_slice(t.as_bytes());
                    prefix.push(1);
                    if let Some(id) = &f.resource_id {
                        prefix.extend_from_slice(id.as_bytes());
                        prefix.push(1);
                    }
                }
                let mut hits = Vec::new();
                for (k, v) in self.versions(&prefix)? {
                    let row: RelRow = serde_json::from_slice(&v).map_err(corrupt)?;
                    if row.deleted.is_none() && f.matches(&parse_relationship(&row.text)?) {
                        hits.push((k, row));
                    }
                }
                for (k, row) in hits {
                    let gone = self.delete_rel(k, row)?;
                    self.changes.push(Change::Delete(gone));
                }
                Ok(())
            }
            Mutation::SetAttributes(o, attrs) => {
                self.delete_attrs(o, false)?;
                let row = AttrRow { deleted: None, attributes: attrs.clone() };
                self.overlay.insert(
                    versioned_key(ATTRIBUTES, &object_key(o), self.rev.0),
                    serde_json::to_vec(&row).map_err(corrupt)?,
                );
                self.changes.push(Change::SetAttributes { object: o.clone(), attributes: attrs.clone() });
                Ok(())
            }
            Mutation::DeleteAttributes(o) => self.delete_attrs(o, true),
            Mutation::SetSchema(s) => {
                self.overlay.insert(revision_key(SCHEMAS, self.rev), s.as_bytes().to_vec());
                self.changes.push(Change::Schema(s.clone()));
                Ok(())
            }
            Mutation::Metadata(m) => {
                self.changes.push(Change::Metadata(m.clone()));
                Ok(())
            }
        }
    }

    fn delete_attrs(&mut self, o: &ObjectRef, record: bool) -> Result<(), StoreError> {
        for (k, v) in self.versions(&row_prefix(ATTRIBUTES, &object_key(o)))? {
            let mut row: AttrRow = serde_json::from_slice(&v).map_err(corrupt)?;
            if row.deleted.is_none() {
                let (_, created) = split_versioned(&k)?;
                if created == self.rev.0 {
                    self.overlay.remove(&k);
                } else {
                    row.deleted = Some(self.rev.0);
                    self.overlay.insert(k, serde_json::to_vec(&row).map_err(corrupt)?);
                }
                if record {
                    self.changes.push(Change::DeleteAttributes { object: o.clone() });
                }
            }
        }
        Ok(())
    }
}
