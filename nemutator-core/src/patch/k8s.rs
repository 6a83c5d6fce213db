//! [`Diff`] of the k8s-openapi types found in the view: structs member by
//! member (`k8s_struct!`), and the few with many variants as JSON (`whole!`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, EnvVarSource, LocalObjectReference, NodeAffinity, PodAffinity,
    PodAffinityTerm, PodAntiAffinity, ResourceClaim, ResourceRequirements, Toleration, Volume,
    VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::diff::{plain_key, Arena, Diff};
use super::{walk, OpKind, Ops, Path, SnapshotError};

/// A bool: `replace` (optional bools are `Option<bool>`).
impl Diff for bool {
    type Snap = bool;

    fn snap(&self, _: &mut Arena) -> bool {
        *self
    }

    fn same(&self, snap: &bool, _: &Arena) -> bool {
        self == snap
    }

    fn diff(
        &self,
        snap: &bool,
        _: &Arena,
        path: &mut Path,
        ops: &mut Ops,
    ) -> Result<(), SnapshotError> {
        if self != snap {
            ops.with_serde(OpKind::Replace, &path.text, self)?;
        }
        Ok(())
    }
}

/// [`Diff`] of a struct of k8s-openapi, member by member, its strings kept
/// in the arena rather than cloned. Each is destructured whole, so a field
/// a new k8s-openapi adds fails to compile here until it is listed. A type
/// written `Name(Box)` keeps its snapshot boxed: for large structs most
/// pods lack (an affinity), whose inline snapshot would grow every review
/// in flight.
macro_rules! k8s_struct {
    ($($ty:ident $(($wrap:ident))? { $($field:ident: $fty:ty = $key:literal),+ $(,)? })+) => {$(
        const _: () = {$(assert!(plain_key($key), "a JSON field name to escape");)+};

        impl Diff for $ty {
            // Small: compared whole first, member by member only when changed.
            type Snap = snap_type!($($wrap)?; ($(<$fty as Diff>::Snap,)+));

            fn snap(&self, arena: &mut Arena) -> Self::Snap {
                let $ty { $($field,)+ } = self;
                snap_new!($($wrap)?; ($($field.snap(arena),)+))
            }

            fn same(&self, snap: &Self::Snap, arena: &Arena) -> bool {
                let ($($field,)+): &($(<$fty as Diff>::Snap,)+) = std::borrow::Borrow::borrow(snap);
                true $(&& self.$field.same($field, arena))+
            }

            fn diff(
                &self,
                snap: &Self::Snap,
                arena: &Arena,
                path: &mut Path,
                ops: &mut Ops,
            ) -> Result<(), SnapshotError> {
                let ($($field,)+): &($(<$fty as Diff>::Snap,)+) = std::borrow::Borrow::borrow(snap);
                $(self.$field.diff_member($field, arena, $key, path, ops)?;)+
                Ok(())
            }
        }
    )+};
}

/// The snapshot type of a `k8s_struct!`: the tuple, or the tuple boxed.
macro_rules! snap_type {
    (; $t:ty) => { $t };
    (Box; $t:ty) => { Box<$t> };
}

/// A snapshot of a `k8s_struct!`: the tuple, or the tuple boxed.
macro_rules! snap_new {
    (; $e:expr) => {
        $e
    };
    (Box; $e:expr) => {
        Box::new($e)
    };
}

k8s_struct! {
    ResourceRequirements {
        claims: Option<Vec<ResourceClaim>> = "claims",
        limits: Option<BTreeMap<String, Quantity>> = "limits",
        requests: Option<BTreeMap<String, Quantity>> = "requests",
    }
    ResourceClaim {
        name: String = "name",
        request: Option<String> = "request",
    }
    EnvVar {
        name: String = "name",
        value: Option<String> = "value",
        value_from: Option<EnvVarSource> = "valueFrom",
    }
    VolumeMount {
        mount_path: String = "mountPath",
        mount_propagation: Option<String> = "mountPropagation",
        name: String = "name",
        read_only: Option<bool> = "readOnly",
        recursive_read_only: Option<String> = "recursiveReadOnly",
        sub_path: Option<String> = "subPath",
        sub_path_expr: Option<String> = "subPathExpr",
    }
    OwnerReference {
        api_version: String = "apiVersion",
        block_owner_deletion: Option<bool> = "blockOwnerDeletion",
        controller: Option<bool> = "controller",
        kind: String = "kind",
        name: String = "name",
        uid: String = "uid",
    }
    LocalObjectReference {
        name: String = "name",
    }
    Affinity(Box) {
        node_affinity: Option<NodeAffinity> = "nodeAffinity",
        pod_affinity: Option<PodAffinity> = "podAffinity",
        pod_anti_affinity: Option<PodAntiAffinity> = "podAntiAffinity",
    }
    PodAffinity {
        preferred_during_scheduling_ignored_during_execution: Option<Vec<WeightedPodAffinityTerm>>
            = "preferredDuringSchedulingIgnoredDuringExecution",
        required_during_scheduling_ignored_during_execution: Option<Vec<PodAffinityTerm>>
            = "requiredDuringSchedulingIgnoredDuringExecution",
    }
    PodAntiAffinity {
        preferred_during_scheduling_ignored_during_execution: Option<Vec<WeightedPodAffinityTerm>>
            = "preferredDuringSchedulingIgnoredDuringExecution",
        required_during_scheduling_ignored_during_execution: Option<Vec<PodAffinityTerm>>
            = "requiredDuringSchedulingIgnoredDuringExecution",
    }
}

/// Types kept as clones and diffed as JSON values: every field of theirs is
/// modelled (they are k8s-openapi's), so walking them never drops one. For
/// the ones with many variants (a volume's sources), where a struct-by-struct
/// [`Diff`] would be long for little gain, and the elements of the lists
/// layers only append to (affinity terms, tolerations: `appended!` in
/// `lists.rs`), which are compared, not patched, member by member.
macro_rules! whole {
    ($($ty:ty),+ $(,)?) => {$(
        impl Diff for $ty {
            type Snap = $ty;

            fn snap(&self, _: &mut Arena) -> $ty {
                self.clone()
            }

            fn same(&self, snap: &$ty, _: &Arena) -> bool {
                self == snap
            }

            fn diff(&self, snap: &$ty, _: &Arena, path: &mut Path, ops: &mut Ops) -> Result<(), SnapshotError> {
                walk(&serde_json::to_value(snap)?, &serde_json::to_value(self)?, path, ops);
                Ok(())
            }
        }
    )+};
}
whole!(
    Volume,
    EnvVarSource,
    NodeAffinity,
    PodAffinityTerm,
    WeightedPodAffinityTerm,
    Toleration,
);
