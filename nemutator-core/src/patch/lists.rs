//! Lists of the view: atomic lists, replaced whole, and lists of named
//! elements, matched by name ([`diff_keyed`]).

use k8s_openapi::api::core::v1::{
    EnvVar, LocalObjectReference, PodAffinityTerm, ResourceClaim, Toleration, Volume, VolumeMount,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Serialize;
use std::ops::Range;

use super::diff::{Arena, Diff, Span};
use super::{OpKind, Ops, Path, SnapshotError};
use crate::mutate::ContainerView;

/// Lists the API server treats as one value (`+listType=atomic`): replaced
/// whole. Lists of strings keep their items in the arena, others clones.
impl Diff for Vec<String> {
    /// Its items in [`Arena::items`].
    type Snap = Range<usize>;

    fn snap(&self, arena: &mut Arena) -> Range<usize> {
        let from = arena.items.len();
        for s in self {
            let span = arena.put(s);
            arena.items.push(span);
        }
        from..arena.items.len()
    }

    fn same(&self, snap: &Range<usize>, arena: &Arena) -> bool {
        snap.len() == self.len()
            && arena
                .items
                .get(snap.clone())
                .unwrap_or_default()
                .iter()
                .zip(self)
                .all(|(span, s)| arena.get(*span) == s)
    }

    fn diff(
        &self,
        _: &Range<usize>,
        _: &Arena,
        path: &mut Path,
        ops: &mut Ops,
    ) -> Result<(), SnapshotError> {
        ops.with_serde(OpKind::Replace, &path.text, self)
    }
}

macro_rules! atomic {
    ($($ty:ty),+ $(,)?) => {$(
        impl Diff for Vec<$ty> {
            type Snap = Vec<<$ty as Diff>::Snap>;
            const COMPOSITE: bool = false;

            fn snap(&self, arena: &mut Arena) -> Self::Snap {
                self.iter().map(|e| e.snap(arena)).collect()
            }

            fn same(&self, snap: &Self::Snap, arena: &Arena) -> bool {
                snap.len() == self.len() && self.iter().zip(snap).all(|(e, s)| e.same(s, arena))
            }

            fn diff(&self, _: &Self::Snap, _: &Arena, path: &mut Path, ops: &mut Ops) -> Result<(), SnapshotError> {
                ops.with_serde(OpKind::Replace, &path.text, self)
            }
        }
    )+};
}
atomic!(OwnerReference, ResourceClaim);

/// Lists with no key (`+listType=atomic` in the API) that layers only append
/// to: scheduling terms and tolerations. When the elements the list had are
/// still its first ones, unchanged, each new element is added at `-`, so the
/// kept ones are never rewritten (nor a field of theirs the decoder did not
/// know dropped); any other change replaces the list whole.
macro_rules! appended {
    ($($ty:ty),+ $(,)?) => {$(
        impl Diff for Vec<$ty> {
            type Snap = Vec<<$ty as Diff>::Snap>;
            const COMPOSITE: bool = false;

            fn snap(&self, arena: &mut Arena) -> Self::Snap {
                self.iter().map(|e| e.snap(arena)).collect()
            }

            fn same(&self, snap: &Self::Snap, arena: &Arena) -> bool {
                snap.len() == self.len() && self.iter().zip(snap).all(|(e, s)| e.same(s, arena))
            }

            fn diff(&self, snap: &Self::Snap, arena: &Arena, path: &mut Path, ops: &mut Ops) -> Result<(), SnapshotError> {
                diff_appended(snap, arena, self, path, ops)
            }
        }
    )+};
}
appended!(WeightedPodAffinityTerm, PodAffinityTerm, Toleration);

/// `b` as elements added at `-` after those `a` kept, when `b` starts with
/// them; else `b` replacing the list.
fn diff_appended<T: Diff + Serialize>(
    a: &[T::Snap],
    arena: &Arena,
    b: &[T],
    path: &mut Path,
    ops: &mut Ops,
) -> Result<(), SnapshotError> {
    let kept = a.len() <= b.len() && b.iter().zip(a).all(|(e, s)| e.same(s, arena));
    let Some(added) = b.get(a.len()..).filter(|_| kept) else {
        return ops.with_serde(OpKind::Replace, &path.text, b);
    };
    for e in added {
        let at = path.push("-");
        let result = ops.with_serde(OpKind::Add, &path.text, e);
        path.truncate(at);
        result?;
    }
    Ok(())
}

/// An element of a list keyed by one of its fields (`+listType=map`).
trait Keyed {
    fn key(&self) -> &str;
}

/// Lists of elements matched by key (the API's list-map key: `name`, or a
/// volume mount's `mountPath`). The snapshot keeps each element's key.
macro_rules! keyed {
    ($($ty:ty => $field:ident),+ $(,)?) => {$(
        impl Keyed for $ty {
            fn key(&self) -> &str {
                &self.$field
            }
        }

        impl Diff for Vec<$ty> {
            type Snap = Vec<(Span, <$ty as Diff>::Snap)>;
            const COMPOSITE: bool = true;

            fn snap(&self, arena: &mut Arena) -> Self::Snap {
                self.iter().map(|e| (arena.put(e.key()), e.snap(arena))).collect()
            }

            fn same(&self, snap: &Self::Snap, arena: &Arena) -> bool {
                snap.len() == self.len() && self.iter().zip(snap).all(|(e, (_, s))| e.same(s, arena))
            }

            fn diff(&self, snap: &Self::Snap, arena: &Arena, path: &mut Path, ops: &mut Ops) -> Result<(), SnapshotError> {
                diff_keyed(snap, arena, self, path, ops)
            }
        }
    )+};
}
keyed!(
    ContainerView => name,
    EnvVar => name,
    Volume => name,
    VolumeMount => mount_path,
    LocalObjectReference => name,
);

/// Match the elements of `b` with those `a` kept by key (the n-th element of
/// a key with the n-th of the same key, should keys repeat), then: remove the
/// unmatched ones of `a` (from the back, so indices hold), patch the matched
/// ones in place, and add the new ones whole at their index in `b`.
fn diff_keyed<T: Keyed + Diff + Serialize>(
    a: &[(Span, T::Snap)],
    arena: &Arena,
    b: &[T],
    path: &mut Path,
    ops: &mut Ops,
) -> Result<(), SnapshotError> {
    if a.is_empty() {
        if b.is_empty() {
            return Ok(());
        }
        // The list may be missing from the object (the view defaults it):
        // `add` sets it whether or not it is there.
        return ops.with_serde(OpKind::Add, &path.text, b);
    }
    let in_place = |i: usize, x: &T::Snap, y: &T, path: &mut Path, ops: &mut Ops| {
        if !T::COMPOSITE && y.same(x, arena) {
            return Ok(());
        }
        let at = path.push_index(i);
        let result = y.diff(x, arena, path, ops);
        path.truncate(at);
        result
    };
    let key = |(k, _): &(Span, T::Snap)| arena.get(*k);
    // The common case: the same keys in the same order, elements edited.
    if a.len() == b.len() && a.iter().zip(b).all(|(x, y)| key(x) == y.key()) {
        for (i, ((_, x), y)) in a.iter().zip(b).enumerate() {
            in_place(i, x, y, path, ops)?;
        }
        return Ok(());
    }
    let mut used = vec![false; a.len()];
    let mut matched = Vec::with_capacity(b.len());
    let mut last = None;
    for y in b {
        let found = (0..a.len()).find(|&i| !used[i] && key(&a[i]) == y.key());
        if let Some(i) = found {
            if last.is_some_and(|l| l > i) {
                return Err(SnapshotError::Reordered(path.text.clone()));
            }
            used[i] = true;
            last = Some(i);
        }
        matched.push(found);
    }
    for i in (0..a.len()).rev().filter(|&i| !used[i]) {
        let at = path.push_index(i);
        ops.remove(&path.text);
        path.truncate(at);
    }
    // After the removals the list holds the kept elements in order; walking
    // `b`, the elements before `j` are in place when `j` is reached.
    let mut len = used.iter().filter(|&&u| u).count();
    for (j, (y, found)) in b.iter().zip(matched).enumerate() {
        match found {
            Some(i) => in_place(j, &a[i].1, y, path, ops)?,
            None => {
                let at = if j == len {
                    path.push("-")
                } else {
                    path.push_index(j)
                };
                let result = ops.with_serde(OpKind::Add, &path.text, y);
                path.truncate(at);
                result?;
                len += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::{PodSpecView, PodView};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn mk_env(pairs: &[(&str, &str)]) -> Vec<EnvVar> {
        pairs
            .iter()
            .map(|(n, v)| EnvVar {
                name: n.to_string(),
                value: Some(v.to_string()),
                value_from: None,
            })
            .collect()
    }

    fn mk_pod(env: Vec<EnvVar>) -> PodView {
        PodView {
            spec: Some(PodSpecView {
                containers: vec![ContainerView {
                    name: "c".into(),
                    env: Some(env),
                    ..ContainerView::default()
                }],
                ..PodSpecView::default()
            }),
            ..PodView::default()
        }
    }

    fn ops(a: &PodView, b: &PodView) -> Result<Value, SnapshotError> {
        let ops = crate::patch::diff_views(a, b)?;
        Ok(serde_json::from_slice(ops.as_json())?)
    }

    const ENV: &str = "/spec/containers/0/env";

    #[test]
    fn keyed_lists_insert_remove_and_edit_by_key() {
        let a = mk_pod(mk_env(&[("A", "1"), ("B", "2"), ("C", "3")]));
        let b = mk_pod(mk_env(&[("N", "0"), ("A", "1"), ("C", "4"), ("M", "5")]));
        assert_eq!(
            ops(&a, &b).ok(),
            Some(json!([
                {"op": "remove", "path": format!("{ENV}/1")},
                {"op": "add", "path": format!("{ENV}/0"), "value": {"name": "N", "value": "0"}},
                {"op": "replace", "path": format!("{ENV}/2/value"), "value": "4"},
                {"op": "add", "path": format!("{ENV}/-"), "value": {"name": "M", "value": "5"}},
            ]))
        );
    }

    #[test]
    fn repeated_keys_match_in_order_and_reordering_is_refused() {
        let a = mk_pod(mk_env(&[("A", "1"), ("A", "2")]));
        let b = mk_pod(mk_env(&[("A", "1"), ("B", "0"), ("A", "3")]));
        assert_eq!(
            ops(&a, &b).ok(),
            Some(json!([
                {"op": "add", "path": format!("{ENV}/1"), "value": {"name": "B", "value": "0"}},
                {"op": "replace", "path": format!("{ENV}/2/value"), "value": "3"},
            ]))
        );
        let swapped = mk_pod(mk_env(&[("B", "2"), ("A", "1")]));
        let ab = mk_pod(mk_env(&[("A", "1"), ("B", "2")]));
        assert!(matches!(
            ops(&ab, &swapped),
            Err(SnapshotError::Reordered(p)) if p == ENV
        ));
    }

    #[test]
    fn a_list_the_object_may_lack_is_added_whole() {
        let mut a = mk_pod(Vec::new());
        if let Some(s) = a.spec.as_mut() {
            s.containers.clear();
        }
        let mut b = a.clone();
        if let Some(s) = b.spec.as_mut() {
            s.containers.push(ContainerView {
                name: "x".into(),
                ..ContainerView::default()
            });
        }
        assert_eq!(
            ops(&a, &b).ok(),
            Some(json!([{"op": "add", "path": "/spec/containers", "value": [{"name": "x"}]}]))
        );
    }

    fn mk_tolerations(keys: &[&str]) -> Option<Vec<Toleration>> {
        Some(
            keys.iter()
                .map(|k| Toleration {
                    key: Some(k.to_string()),
                    operator: Some("Exists".into()),
                    ..Toleration::default()
                })
                .collect(),
        )
    }

    fn mk_tolerating(keys: &[&str]) -> PodView {
        let mut pod = mk_pod(Vec::new());
        if let Some(s) = pod.spec.as_mut() {
            s.tolerations = mk_tolerations(keys);
        }
        pod
    }

    #[test]
    fn appended_lists_add_at_the_end_and_replace_on_any_other_change() {
        const T: &str = "/spec/tolerations";
        let (a, ab, b) = (
            mk_tolerating(&["a"]),
            mk_tolerating(&["a", "b"]),
            mk_tolerating(&["b"]),
        );
        assert_eq!(
            ops(&a, &ab).ok(),
            Some(json!([{"op": "add", "path": format!("{T}/-"),
                         "value": {"key": "b", "operator": "Exists"}}]))
        );
        assert_eq!(
            ops(&mk_tolerating(&[]), &a).ok(),
            Some(json!([{"op": "add", "path": format!("{T}/-"),
                         "value": {"key": "a", "operator": "Exists"}}]))
        );
        for (from, to) in [(&ab, &b), (&a, &b), (&ab, &a)] {
            assert_eq!(
                ops(from, to).ok(),
                Some(json!([{"op": "replace", "path": T,
                             "value": serde_json::to_value(to.spec.as_ref().map(|s| &s.tolerations)).unwrap_or_default()}]))
            );
        }
        let mut none = a.clone();
        if let Some(s) = none.spec.as_mut() {
            s.tolerations = None;
        }
        assert_eq!(
            ops(&none, &a).ok(),
            Some(json!([{"op": "add", "path": T, "value": [{"key": "a", "operator": "Exists"}]}]))
        );
        assert_eq!(ops(&ab, &ab).ok(), Some(json!([])));
    }

    /// An env list, each variable's value from `[a-c]`, keys unique.
    fn arb_env() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::btree_map("[A-F]", "[a-c]", 0..6)
            .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        /// Any edit of a keyed list (elements removed, changed, added at any
        /// index) patches the original into the result, and the elements
        /// kept keep a field the view does not model.
        #[test]
        fn keyed_list_patches_apply_and_keep_unmodelled_fields(
            before in arb_env(),
            keep in proptest::collection::vec(any::<bool>(), 6),
            values in proptest::collection::vec("[a-c]", 6),
            inserts in proptest::collection::vec((0usize..8, "[a-c]"), 0..4),
        ) {
            let env = |pairs: &[(String, String, Option<usize>)]| {
                pairs.iter().map(|(n, v, _)| EnvVar {
                    name: n.clone(), value: Some(v.clone()), value_from: None,
                }).collect::<Vec<_>>()
            };
            let original: Vec<_> = before.iter().enumerate()
                .map(|(i, (n, v))| (n.clone(), v.clone(), Some(i))).collect();
            let mut after: Vec<_> = original.iter().enumerate()
                .filter(|(i, _)| keep[*i])
                .map(|(i, (n, _, o))| (n.clone(), values[i].clone(), *o))
                .collect();
            for (k, (at, v)) in inserts.iter().enumerate() {
                let at = (*at).min(after.len());
                after.insert(at, (format!("NEW{k}"), v.clone(), None));
            }
            let (a, b) = (mk_pod(env(&original)), mk_pod(env(&after)));
            let patch = crate::patch::diff_views(&a, &b)
                .and_then(|o| o.to_patch())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            // The object as sent: each variable with a field of its own.
            let mut object = serde_json::to_value(&a).unwrap_or_default();
            for (i, e) in object["spec"]["containers"][0]["env"]
                .as_array_mut().into_iter().flatten().enumerate()
            {
                e["unmodelled"] = json!(i);
            }
            json_patch::patch(&mut object, &patch)
                .map_err(|e| TestCaseError::fail(format!("{e}: {patch:?}")))?;
            let mut expected = serde_json::to_value(&b).unwrap_or_default();
            for (e, (_, _, from)) in expected["spec"]["containers"][0]["env"]
                .as_array_mut().into_iter().flatten().zip(&after)
            {
                if let Some(i) = from {
                    e["unmodelled"] = json!(i);
                }
            }
            prop_assert_eq!(object, expected);
            // Unchanged lists give no operations.
            prop_assert!(crate::patch::diff_views(&b, &b).map(|o| o.is_empty()).unwrap_or(false));
        }
    }
}
