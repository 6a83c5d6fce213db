//! [`Diff`]: how a value of each type found in the pod view is kept in a
//! snapshot and patched, and [`view_struct!`], which defines a struct of the
//! view and its [`Diff`] from one list of fields.
//!
//! Adding a field to the view is one line in its `view_struct!`; if the
//! field's type has no [`Diff`] yet, the build fails until a list says how to
//! patch it: in `k8s.rs` `k8s_struct!` (a struct of k8s-openapi, member by member;
//! destructured whole, so a field k8s-openapi adds fails to compile too),
//! `whole!` (a value diffed as JSON), or in `lists.rs` `keyed!` (a list of
//! named elements), `atomic!` (a list replaced whole) or `appended!` (a list
//! layers append to).
//!
//! A snapshot copies the strings of the view into one buffer, an
//! [`Arena`], instead of cloning the view (an allocation per string, then
//! one free each): that is most of what a snapshot costs on the admission
//! path.

use std::collections::BTreeMap;
use std::ops::Range;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Serialize;

use super::{OpKind, Ops, Path, SnapshotError};
use crate::mutate::Extra;

/// The strings of a snapshot, in one buffer, and the runs of them that make
/// up string maps and string lists.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    text: String,
    /// Key and value of each map entry, maps in key order.
    entries: Vec<(Span, Span)>,
    /// The items of string lists.
    pub(super) items: Vec<Span>,
}

/// A string of an [`Arena`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    start: usize,
    end: usize,
}

impl Arena {
    pub(crate) fn with_capacity(text: usize) -> Self {
        Arena {
            text: String::with_capacity(text),
            entries: Vec::with_capacity(16),
            items: Vec::new(),
        }
    }

    /// Bytes of text kept.
    pub(crate) fn len(&self) -> usize {
        self.text.len()
    }

    pub(super) fn put(&mut self, s: &str) -> Span {
        let start = self.text.len();
        self.text.push_str(s);
        Span {
            start,
            end: self.text.len(),
        }
    }

    pub(super) fn get(&self, s: Span) -> &str {
        self.text.get(s.start..s.end).unwrap_or_default()
    }

    fn entry(&self, i: usize) -> (&str, &str) {
        match self.entries.get(i) {
            Some(&(k, v)) => (self.get(k), self.get(v)),
            None => ("", ""),
        }
    }
}

/// How a value of the view is kept in a snapshot and patched.
pub(crate) trait Diff {
    /// What a snapshot keeps of a value.
    type Snap;

    /// Keep `self`.
    fn snap(&self, arena: &mut Arena) -> Self::Snap;

    /// Whether `self` is the value `snap` kept.
    fn same(&self, snap: &Self::Snap, arena: &Arena) -> bool;

    /// Write to `ops` what turns the value `snap` kept, found at `path`,
    /// into `self`.
    fn diff(
        &self,
        snap: &Self::Snap,
        arena: &Arena,
        path: &mut Path,
        ops: &mut Ops,
    ) -> Result<(), SnapshotError>;

    /// Whether the value is made of members that each compare themselves
    /// when diffed (structs, keyed lists): [`Diff::diff`] is then called
    /// without comparing the whole first, so that each member is compared
    /// once, not once per level above it.
    const COMPOSITE: bool = false;

    /// [`Diff::diff`] as member `key` of the object at `path` (a JSON field
    /// name: no character of it needs escaping, see [`plain_key`]).
    fn diff_member(
        &self,
        snap: &Self::Snap,
        arena: &Arena,
        key: &'static str,
        path: &mut Path,
        ops: &mut Ops,
    ) -> Result<(), SnapshotError> {
        if !Self::COMPOSITE && self.same(snap, arena) {
            return Ok(());
        }
        let at = path.push_plain(key);
        let result = self.diff(snap, arena, path, ops);
        path.truncate(at);
        result
    }
}

/// Whether `key` can go into a JSON Pointer as it is (no `~`, no `/`): the
/// macros below check each field name at compile time.
pub(crate) const fn plain_key(key: &str) -> bool {
    let b = key.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'~' || b[i] == b'/' {
            return false;
        }
        i += 1;
    }
    true
}

/// Defines a struct of the pod view from one list of fields, each
/// `pub NAME: TYPE = "jsonName",` under its doc comment and serde
/// attributes: the struct (decoded from JSON objects only, see
/// [`crate::json::object`]) and its [`Diff`], member by member (its snapshot
/// is the tuple of its members'). So the decoder, the encoder, the snapshot
/// and the patch cannot disagree about a field.
macro_rules! view_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident : $ty:ty = $key:literal,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(remote = "Self")]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(rename = $key)]
                pub $field: $ty,
            )*
        }

        $crate::json::object::object_only!($name);

        const _: () = {$(assert!($crate::patch::plain_key($key), "a JSON field name to escape");)*};

        impl $crate::patch::Diff for $name {
            type Snap = ($(<$ty as $crate::patch::Diff>::Snap,)*);
            const COMPOSITE: bool = true;

            fn snap(&self, arena: &mut $crate::patch::Arena) -> Self::Snap {
                ($($crate::patch::Diff::snap(&self.$field, arena),)*)
            }

            fn same(&self, snap: &Self::Snap, arena: &$crate::patch::Arena) -> bool {
                let ($($field,)*) = snap;
                true $(&& $crate::patch::Diff::same(&self.$field, $field, arena))*
            }

            fn diff(
                &self,
                snap: &Self::Snap,
                arena: &$crate::patch::Arena,
                path: &mut $crate::patch::Path,
                ops: &mut $crate::patch::Ops,
            ) -> Result<(), $crate::patch::SnapshotError> {
                let ($($field,)*) = snap;
                $(
                    $crate::patch::Diff::diff_member(&self.$field, $field, arena, $key, path, ops)?;
                )*
                Ok(())
            }
        }
    };
}
pub(crate) use view_struct;

/// Present on both sides: diffed; added or removed whole.
impl<T: Diff + Serialize> Diff for Option<T> {
    type Snap = Option<T::Snap>;

    fn snap(&self, arena: &mut Arena) -> Self::Snap {
        self.as_ref().map(|v| v.snap(arena))
    }

    fn same(&self, snap: &Self::Snap, arena: &Arena) -> bool {
        match (self, snap) {
            (Some(v), Some(s)) => v.same(s, arena),
            (None, None) => true,
            _ => false,
        }
    }

    fn diff(
        &self,
        snap: &Self::Snap,
        arena: &Arena,
        path: &mut Path,
        ops: &mut Ops,
    ) -> Result<(), SnapshotError> {
        match (self, snap) {
            (Some(v), Some(s)) => v.diff(s, arena, path, ops),
            (Some(v), None) => ops.with_serde(OpKind::Add, &path.text, v),
            (None, Some(_)) => {
                ops.remove(&path.text);
                Ok(())
            }
            (None, None) => Ok(()),
        }
    }

    fn diff_member(
        &self,
        snap: &Self::Snap,
        arena: &Arena,
        key: &'static str,
        path: &mut Path,
        ops: &mut Ops,
    ) -> Result<(), SnapshotError> {
        match (self, snap) {
            (Some(v), Some(s)) => v.diff_member(s, arena, key, path, ops),
            (None, None) => Ok(()),
            _ => {
                let at = path.push_plain(key);
                let result = self.diff(snap, arena, path, ops);
                path.truncate(at);
                result
            }
        }
    }
}

/// A string: `replace`. The strings that are not optional in the view are
/// required fields of their object (a name, a mount path) that the API
/// server would refuse missing, and the keys of their lists, never changed
/// in place.
impl Diff for String {
    type Snap = Span;

    fn snap(&self, arena: &mut Arena) -> Span {
        arena.put(self)
    }

    fn same(&self, snap: &Span, arena: &Arena) -> bool {
        arena.get(*snap) == self
    }

    fn diff(
        &self,
        snap: &Span,
        arena: &Arena,
        path: &mut Path,
        ops: &mut Ops,
    ) -> Result<(), SnapshotError> {
        if !self.same(snap, arena) {
            ops.with_str(OpKind::Replace, &path.text, self);
        }
        Ok(())
    }
}

/// A value of a string-keyed map diffed key by key: a JSON string.
trait MapValue {
    fn text(&self) -> &str;
}

impl MapValue for String {
    fn text(&self) -> &str {
        self
    }
}

impl MapValue for Quantity {
    fn text(&self) -> &str {
        &self.0
    }
}

/// Labels, annotations, resource quantities: only the keys that changed.
impl<V: MapValue> Diff for BTreeMap<String, V> {
    /// Its entries in [`Arena::entries`].
    type Snap = Range<usize>;

    fn snap(&self, arena: &mut Arena) -> Range<usize> {
        let from = arena.entries.len();
        for (k, v) in self {
            let entry = (arena.put(k), arena.put(v.text()));
            arena.entries.push(entry);
        }
        from..arena.entries.len()
    }

    fn same(&self, snap: &Range<usize>, arena: &Arena) -> bool {
        snap.len() == self.len()
            && snap
                .clone()
                .zip(self)
                .all(|(i, (k, v))| arena.entry(i) == (k.as_str(), v.text()))
    }

    fn diff(
        &self,
        snap: &Range<usize>,
        arena: &Arena,
        path: &mut Path,
        ops: &mut Ops,
    ) -> Result<(), SnapshotError> {
        for (k, va) in snap.clone().map(|i| arena.entry(i)) {
            match self.get(k) {
                None => path.at(k, |p| ops.remove(p)),
                Some(vb) if vb.text() != va => {
                    path.at(k, |p| ops.with_str(OpKind::Replace, p, vb.text()))
                }
                Some(_) => {}
            }
        }
        // Entries are in key order.
        let had = |key: &str| {
            let (mut lo, mut hi) = (snap.start, snap.end);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match arena.entry(mid).0.cmp(key) {
                    std::cmp::Ordering::Less => lo = mid + 1,
                    std::cmp::Ordering::Greater => hi = mid,
                    std::cmp::Ordering::Equal => return true,
                }
            }
            false
        };
        for (k, vb) in self {
            if !had(k) {
                path.at(k, |p| ops.with_str(OpKind::Add, p, vb.text()));
            }
        }
        Ok(())
    }
}

/// Fields of a container the view does not model, set by a layer: each is
/// written whole (`add`, which replaces one the object has), at the level of
/// the container, not under a key of its own.
impl Diff for Extra {
    /// Always empty on a decoded pod (never decoded): kept as it is.
    type Snap = Extra;

    fn snap(&self, _: &mut Arena) -> Extra {
        self.clone()
    }

    fn same(&self, snap: &Extra, _: &Arena) -> bool {
        self == snap
    }

    fn diff(
        &self,
        snap: &Extra,
        _: &Arena,
        path: &mut Path,
        ops: &mut Ops,
    ) -> Result<(), SnapshotError> {
        for k in snap.0.keys() {
            if !self.0.contains_key(k) {
                path.at(k, |p| ops.remove(p));
            }
        }
        for (k, v) in &self.0 {
            if snap.0.get(k) != Some(v) {
                path.at(k, |p| ops.with_value(OpKind::Add, p, v));
            }
        }
        Ok(())
    }

    fn diff_member(
        &self,
        snap: &Extra,
        arena: &Arena,
        _flattened: &'static str,
        path: &mut Path,
        ops: &mut Ops,
    ) -> Result<(), SnapshotError> {
        self.diff(snap, arena, path, ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::{ContainerView, PodSpecView, PodView};
    use serde_json::{json, Value};

    fn ops(a: &PodView, b: &PodView) -> Result<Value, SnapshotError> {
        let ops = crate::patch::diff_views(a, b)?;
        Ok(serde_json::from_slice(ops.as_json())?)
    }

    #[test]
    fn extra_fields_are_set_whole_on_the_container() {
        let a = PodView {
            spec: Some(PodSpecView {
                containers: vec![ContainerView::default()],
                ..PodSpecView::default()
            }),
            ..PodView::default()
        };
        let mut b = a.clone();
        if let Some(s) = b.spec.as_mut() {
            s.containers[0]
                .extra
                .0
                .insert("securityContext".into(), json!({"runAsNonRoot": true}));
        }
        assert_eq!(
            ops(&a, &b).ok(),
            Some(
                json!([{"op": "add", "path": "/spec/containers/0/securityContext",
                         "value": {"runAsNonRoot": true}}])
            )
        );
        assert_eq!(
            ops(&b, &a).ok().map(|v| v[0]["op"].clone()),
            Some(json!("remove"))
        );
    }
}
