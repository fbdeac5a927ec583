//! Server-side apply and `metadata.managedFields`: which manager owns which fields of an object,
//! how an applied configuration merges into the live object, and when it conflicts.
//!
//! Upstream this is `k8s.io/apimachinery/pkg/util/managedfields` (the `internal` field manager
//! chain the apiserver's `pkg/endpoints/handlers/fieldmanager` wraps) on top of
//! `sigs.k8s.io/structured-merge-diff` (`fieldpath`, `typed`, `merge`). Here, as pure functions over
//! objects held as [`serde_json::Value`]:
//! - [`fieldpath`]: field paths, field sets and their `FieldsV1` encoding;
//! - `typeinfo`: how each field merges (granular, atomic, set, list-map and its keys), from the
//!   strategic-merge-patch table in [`crate::patch::schema`] plus the few facts where apply differs;
//! - `typed`: field sets of objects, merge, compare, remove;
//! - `managed`: decoding and encoding `managedFields`;
//! - [`apply()`] (`apply.rs`): server-side apply, with conflicts and pruning;
//! - [`update()`] (`update.rs`): ownership for every other write (create, update, patch);
//! - [`ApplyError`] (`conflict.rs`): errors worded as upstream's, down to the 409 `Status`;
//! - `lastapplied`: kubectl's bridge from client-side apply.
//!
//! Deliberately left out: conversion between API versions (every manager's fields are read against
//! the one object as stored), the cap on the number of `Update` entries, and schema changes between
//! versions of a kind.

mod apply;
mod conflict;
pub mod fieldpath;
mod lastapplied;
mod managed;
mod typed;
mod typeinfo;
mod update;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use apply::apply;
pub use conflict::{ApplyError, Conflict};
pub use fieldpath::{FieldSet, Path, PathElement};
pub use lastapplied::LAST_APPLIED_ANNOTATION;
pub use managed::Operation;
pub use update::update;

/// The set of fields `object` specifies, read with the list keys of `kind` (upstream's
/// `TypedValue.ToFieldSet`): what an `Apply` entry records for it, before `status` and the
/// server-set metadata are taken out. Fails when a list item lacks its key or a key repeats.
pub fn field_set(object: &Value, kind: &str) -> Result<FieldSet, String> {
    let ty = typeinfo::Ty::root(kind);
    typed::validate(object, &ty, false)?;
    Ok(typed::field_set(object, &ty))
}
