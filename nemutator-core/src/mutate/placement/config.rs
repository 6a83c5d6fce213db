//! `placement:`: the configuration of [`super::PlacementLayer`]
//! (docs/CONFIGURATION.md, docs/PLACEMENT.md).
//!
//! Every value is checked as it is read, so that a configuration the API
//! server would refuse in a pod (a weight of 0, a toleration with a value and
//! `Exists`) fails at load with its place in the file, not at admission.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use serde::{Deserialize, Deserializer, Serialize};

/// `placement:`: scheduling rules that keep noisy and precious pods apart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementConfig {
    /// Off unless set: the rules change where pods may be scheduled, and the
    /// webhook then watches pods cluster-wide (list and watch on pods, which
    /// `nemutator install` grants only when this is on).
    #[serde(default)]
    pub enabled: bool,
    /// `preferred` (the default: the scheduler avoids the other kind where
    /// it can) or `required` (it never co-locates them; pods stay Pending
    /// when there is nowhere else to go).
    #[serde(default)]
    pub strength: Strength,
    /// Weight of a `preferred` term, 1 to 100.
    #[serde(default = "default_weight", deserialize_with = "weight")]
    pub weight: i32,
    /// The domain the pods are kept apart in: a node label key.
    #[serde(default = "default_topology_key", deserialize_with = "topology_key")]
    pub topology_key: String,
    /// Where noisy pods go: a dedicated pool, say.
    #[serde(default, skip_serializing_if = "Pool::is_empty")]
    pub noisy: Pool,
    /// Where precious pods go.
    #[serde(default, skip_serializing_if = "Pool::is_empty")]
    pub precious: Pool,
}

/// How hard pods are kept apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strength {
    /// `preferredDuringSchedulingIgnoredDuringExecution`, with `weight`.
    #[default]
    Preferred,
    /// `requiredDuringSchedulingIgnoredDuringExecution`.
    Required,
}

impl Strength {
    /// As the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Strength::Preferred => "preferred",
            Strength::Required => "required",
        }
    }
}

/// `placement.noisy` / `placement.precious`: nodes for one kind of pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Labels the nodes must have, added to the pod's `nodeSelector` (a key
    /// the pod already sets keeps the pod's value).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "node_selector"
    )]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations added to the pod (for the taints of the pool's nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<TolerationConfig>,
}

impl Pool {
    fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.tolerations.is_empty()
    }
}

/// A toleration as a pod spec writes it (`key`, `operator`, `value`,
/// `effect`, `tolerationSeconds`), checked as the API server checks it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TolerationFields", into = "TolerationFields")]
pub struct TolerationConfig(TolerationFields);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TolerationFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default)]
    operator: Operator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    effect: Option<Effect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    toleration_seconds: Option<i64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Operator {
    #[default]
    Equal,
    Exists,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Effect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl Operator {
    fn as_str(self) -> &'static str {
        match self {
            Operator::Equal => "Equal",
            Operator::Exists => "Exists",
        }
    }
}

impl Effect {
    fn as_str(self) -> &'static str {
        match self {
            Effect::NoSchedule => "NoSchedule",
            Effect::PreferNoSchedule => "PreferNoSchedule",
            Effect::NoExecute => "NoExecute",
        }
    }
}

impl TryFrom<TolerationFields> for TolerationConfig {
    type Error = String;

    fn try_from(t: TolerationFields) -> Result<Self, String> {
        let key = t.key.as_deref().unwrap_or_default();
        if !key.is_empty() {
            check_label_key(key)?;
        } else if t.operator != Operator::Exists {
            return Err("a toleration without a key needs operator Exists".into());
        }
        match (t.operator, t.value.as_deref().unwrap_or_default()) {
            (Operator::Exists, v) if !v.is_empty() => {
                return Err(format!("toleration {key}: operator Exists takes no value"));
            }
            (_, v) => check_label_value(v)?,
        }
        if t.toleration_seconds.is_some() && t.effect != Some(Effect::NoExecute) {
            return Err(format!(
                "toleration {key}: tolerationSeconds needs effect NoExecute"
            ));
        }
        Ok(TolerationConfig(t))
    }
}

impl From<TolerationConfig> for TolerationFields {
    fn from(t: TolerationConfig) -> Self {
        t.0
    }
}

/// The toleration in a pod (every field listed: a field k8s-openapi adds
/// fails to compile here).
impl From<&TolerationConfig> for Toleration {
    fn from(t: &TolerationConfig) -> Self {
        let TolerationFields {
            key,
            operator,
            value,
            effect,
            toleration_seconds,
        } = &t.0;
        Toleration {
            effect: effect.map(|e| e.as_str().to_owned()),
            key: key.clone(),
            operator: Some(operator.as_str().to_owned()),
            toleration_seconds: *toleration_seconds,
            value: value.clone(),
        }
    }
}

fn default_weight() -> i32 {
    100
}

fn default_topology_key() -> String {
    "kubernetes.io/hostname".into()
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig {
            enabled: false,
            strength: Strength::default(),
            weight: default_weight(),
            topology_key: default_topology_key(),
            noisy: Pool::default(),
            precious: Pool::default(),
        }
    }
}

impl PlacementConfig {
    /// Whether this is the default (left out when the configuration is
    /// written out).
    pub fn is_default(&self) -> bool {
        *self == PlacementConfig::default()
    }
}

fn weight<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let w = i32::deserialize(d)?;
    if (1..=100).contains(&w) {
        Ok(w)
    } else {
        Err(serde::de::Error::custom(format!(
            "weight {w}: expected 1 to 100"
        )))
    }
}

fn topology_key<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let key = String::deserialize(d)?;
    check_label_key(&key).map_err(serde::de::Error::custom)?;
    Ok(key)
}

fn node_selector<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, String>::deserialize(d)?;
    for (k, v) in &map {
        check_label_key(k)
            .and_then(|()| check_label_value(v))
            .map_err(serde::de::Error::custom)?;
    }
    Ok(map)
}

/// A label name: 1 to 63 alphanumerics, `-`, `_`, `.`, alphanumeric at
/// both ends (also the form of a label value, which may be empty).
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A label key: `[PREFIX/]NAME`, the prefix a DNS subdomain.
fn check_label_key(key: &str) -> Result<(), String> {
    let ok = match key.split_once('/') {
        Some((prefix, name)) => crate::k8s::is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(key),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{key:?} is not a label key"))
    }
}

fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!("{value:?} is not a label value"))
    }
}
