//! Label and annotation rules: the `metadata:` section of the configuration
//! (docs/CONFIGURATION.md), applied at admission by
//! [`crate::mutate::MetadataLayer`] and to running pods by the controller's
//! patcher ([`crate::controller::labels`]).
//!
//! What a rule does to a pod is the pure function [`MetadataConfig::apply`]
//! of (namespace, labels, annotations, rules, stage); both places call it, so
//! a running pod converges to what admission would give it now.
//!
//! Ownership: nemutator records the keys it set, with their values, in the
//! annotation `nemutator.io/metadata-applied`. A key recorded there that no
//! matching rule sets any more is removed, unless its value changed since
//! (someone else set it then, and it is theirs). Selectors see the pod's
//! labels without those nemutator set, so that a rule cannot switch itself
//! (or another rule) on and off.
//!
//! ```
//! use std::collections::BTreeMap;
//! use nemutator_core::metadata::{MetadataConfig, Stage};
//!
//! let rules: MetadataConfig = serde_yaml::from_str(r#"
//! rules:
//!   - name: team
//!     namespaces: ["shop-*"]
//!     selector: { matchLabels: { app: web } }
//!     labels: { team: payments }
//! "#).unwrap();
//! let mut labels = Some(BTreeMap::from([("app".to_string(), "web".to_string())]));
//! let mut annotations = None;
//! let applied = rules.apply("shop-eu", &mut labels, &mut annotations, Stage::Admission);
//! assert_eq!(applied.rules, ["team"]);
//! assert_eq!(labels.unwrap()["team"], "payments");
//! ```

mod reload;
mod selector;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use reload::{ConfigWatch, Reload, SharedRules};
pub use selector::{check_key, check_label_value, Operator, Requirement, Selector};

use crate::annotations::METADATA_APPLIED;
use crate::policy::glob_match;

/// The prefix of the keys nemutator writes itself: refused in rules.
pub const RESERVED_DOMAIN: &str = "nemutator.io";

/// The namespace rules reach only when they name it (no glob covers it).
pub const SYSTEM_NAMESPACE: &str = "kube-system";

/// `metadata:`: label and annotation rules, applied in order (a later rule
/// wins where two change the same key).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawMetadataConfig")]
pub struct MetadataConfig {
    /// The rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<MetadataRule>,
}

/// `metadata:` as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadataConfig {
    #[serde(default)]
    rules: Vec<MetadataRule>,
}

impl TryFrom<RawMetadataConfig> for MetadataConfig {
    type Error = MetadataError;

    fn try_from(raw: RawMetadataConfig) -> Result<Self, MetadataError> {
        let config = MetadataConfig { rules: raw.rules };
        config.validate()?;
        Ok(config)
    }
}

fn all_namespaces() -> Vec<String> {
    vec!["*".to_owned()]
}

fn yes() -> bool {
    true
}

/// One rule under `metadata.rules`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataRule {
    /// Name, shown in errors, logs and the audit annotations.
    pub name: String,
    /// Namespaces covered (globs with `*`; `kube-system` only when named).
    #[serde(default = "all_namespaces")]
    pub namespaces: Vec<String>,
    /// Namespaces never covered (globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_namespaces: Vec<String>,
    /// Which pods, by their labels (none: every pod of the namespaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    /// Labels to set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations to set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Label keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_labels: Vec<String>,
    /// Annotation keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_annotations: Vec<String>,
    /// Also applied to running pods by the controller (default); `false`:
    /// at admission only.
    #[serde(default = "yes")]
    pub running_pods: bool,
}

/// Why `metadata:` is not valid: one line, naming the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata rule {rule:?}: {message}")]
pub struct MetadataError {
    /// Rule name.
    pub rule: String,
    /// One-line reason.
    pub message: String,
}

/// Where rules are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// At admission: every matching rule.
    Admission,
    /// To a running pod: the matching rules with `running_pods`; the keys of
    /// matching admission-only rules are left as they are.
    Running,
}

/// What [`MetadataConfig::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The rules that matched, in order.
    pub rules: Vec<String>,
    /// What changed, e.g. `label team=payments`, `annotation -old`.
    pub changes: Vec<String>,
}

fn is_reserved(key: &str) -> bool {
    key.split_once('/').is_some_and(|(prefix, _)| {
        prefix == RESERVED_DOMAIN
            || prefix
                .strip_suffix(RESERVED_DOMAIN)
                .is_some_and(|p| p.ends_with('.'))
    })
}

impl MetadataRule {
    /// Does this rule cover `namespace`? `kube-system` only when a
    /// `namespaces` entry is exactly that name.
    pub fn covers(&self, namespace: &str) -> bool {
        let glob = |g: &String| glob_match(g, namespace);
        self.namespaces.iter().any(glob)
            && !self.exclude_namespaces.iter().any(glob)
            && (namespace != SYSTEM_NAMESPACE || self.namespaces.iter().any(|n| n == namespace))
    }

    /// Check what YAML types cannot: names, keys, values, a rule that does
    /// something.
    pub fn validate(&self) -> Result<(), MetadataError> {
        self.check().map_err(|message| MetadataError {
            rule: self.name.clone(),
            message,
        })
    }

    fn check(&self) -> Result<(), String> {
        let MetadataRule {
            name,
            namespaces,
            exclude_namespaces: _,
            selector,
            labels,
            annotations,
            remove_labels,
            remove_annotations,
            running_pods: _,
        } = self;
        if name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        if namespaces.is_empty() {
            return Err("namespaces must not be empty (\"*\" is every namespace)".into());
        }
        if let Some(s) = selector {
            s.validate()?;
        }
        if labels.is_empty()
            && annotations.is_empty()
            && remove_labels.is_empty()
            && remove_annotations.is_empty()
        {
            return Err(
                "does nothing: give labels, annotations, remove_labels or remove_annotations"
                    .into(),
            );
        }
        let keys = [
            ("label", labels.keys().collect::<Vec<_>>()),
            ("annotation", annotations.keys().collect()),
            ("label", remove_labels.iter().collect()),
            ("annotation", remove_annotations.iter().collect()),
        ];
        for (kind, list) in &keys {
            for key in list {
                check_key(key).map_err(|e| format!("{kind} {e}"))?;
                if is_reserved(key) {
                    return Err(format!(
                        "{kind} key {key:?} is under {RESERVED_DOMAIN}/, which nemutator writes itself"
                    ));
                }
            }
        }
        for v in labels.values() {
            check_label_value(v)?;
        }
        if let Some(k) = remove_labels.iter().find(|k| labels.contains_key(*k)) {
            return Err(format!("label {k:?} is both set and removed"));
        }
        if let Some(k) = remove_annotations
            .iter()
            .find(|k| annotations.contains_key(*k))
        {
            return Err(format!("annotation {k:?} is both set and removed"));
        }
        Ok(())
    }
}

/// What one key becomes under the matching rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op<'a> {
    Set(&'a str),
    Remove,
    /// An admission-only rule's key, on a running pod: left as it is.
    Keep,
}

/// The keys nemutator set on a pod, with the values it set
/// (`nemutator.io/metadata-applied`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Owned {
    /// The record in `annotations` (an unreadable one counts as none).
    pub fn read(annotations: Option<&BTreeMap<String, String>>) -> Owned {
        annotations
            .and_then(|a| a.get(METADATA_APPLIED))
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default()
    }
}

impl MetadataConfig {
    /// No rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every rule valid, names unique.
    pub fn validate(&self) -> Result<(), MetadataError> {
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate()?;
            if self.rules[..i].iter().any(|r| r.name == rule.name) {
                return Err(MetadataError {
                    rule: rule.name.clone(),
                    message: "another rule has this name".into(),
                });
            }
        }
        Ok(())
    }

    /// Apply the rules that match a pod of `namespace` to its `labels` and
    /// `annotations` (as a Pod's metadata holds them): sets and removals of
    /// the matching rules in order, the removal of keys nemutator set that
    /// no matching rule sets any more, and the record of what nemutator set.
    pub fn apply(
        &self,
        namespace: &str,
        labels: &mut Option<BTreeMap<String, String>>,
        annotations: &mut Option<BTreeMap<String, String>>,
        stage: Stage,
    ) -> Applied {
        let owned = Owned::read(annotations.as_ref());
        let mut applied = Applied::default();
        if self.rules.is_empty() && owned == Owned::default() {
            return applied;
        }
        let mut label_ops = BTreeMap::new();
        let mut annotation_ops = BTreeMap::new();
        {
            // Selectors see the pod's labels without those nemutator set.
            let current = labels.as_ref();
            let own = |k: &str| {
                let v = current?.get(k)?;
                (owned.labels.get(k) != Some(v)).then_some(v.as_str())
            };
            for rule in &self.rules {
                if !rule.covers(namespace) || !rule.selector.as_ref().is_none_or(|s| s.matches(own))
                {
                    continue;
                }
                applied.rules.push(rule.name.clone());
                let enforce = stage == Stage::Admission || rule.running_pods;
                let (set, remove) = if enforce {
                    (None, Op::Remove)
                } else {
                    (Some(Op::Keep), Op::Keep)
                };
                for k in &rule.remove_labels {
                    label_ops.insert(k.as_str(), remove);
                }
                for (k, v) in &rule.labels {
                    label_ops.insert(k.as_str(), set.unwrap_or(Op::Set(v)));
                }
                for k in &rule.remove_annotations {
                    annotation_ops.insert(k.as_str(), remove);
                }
                for (k, v) in &rule.annotations {
                    annotation_ops.insert(k.as_str(), set.unwrap_or(Op::Set(v)));
                }
            }
        }
        let now_owned = Owned {
            labels: reconcile(labels, &label_ops, &owned.labels, "label", &mut applied),
            annotations: reconcile(
                annotations,
                &annotation_ops,
                &owned.annotations,
                "annotation",
                &mut applied,
            ),
        };
        let was_none = annotations.is_none();
        let map = annotations.get_or_insert_with(BTreeMap::new);
        if now_owned == Owned::default() {
            map.remove(METADATA_APPLIED);
        } else if let Ok(text) = serde_json::to_string(&now_owned) {
            map.insert(METADATA_APPLIED.to_owned(), text);
        }
        if was_none && map.is_empty() {
            *annotations = None;
        }
        applied
    }
}

/// Apply `ops` to `map`, remove the keys of `owned` (still at the value
/// nemutator set) that no op names; returns what nemutator owns now.
fn reconcile(
    map: &mut Option<BTreeMap<String, String>>,
    ops: &BTreeMap<&str, Op<'_>>,
    owned: &BTreeMap<String, String>,
    kind: &str,
    applied: &mut Applied,
) -> BTreeMap<String, String> {
    let was_none = map.is_none();
    let mut m = map.take().unwrap_or_default();
    let mut now_owned = BTreeMap::new();
    for (&k, op) in ops {
        match *op {
            Op::Set(v) => {
                if m.get(k).map(String::as_str) != Some(v) {
                    m.insert(k.to_owned(), v.to_owned());
                    applied.changes.push(if kind == "label" {
                        format!("{kind} {k}={v}")
                    } else {
                        format!("{kind} {k}")
                    });
                    now_owned.insert(k.to_owned(), v.to_owned());
                } else if owned.get(k).map(String::as_str) == Some(v) {
                    now_owned.insert(k.to_owned(), v.to_owned());
                }
                // Else the pod already had this value of its own: not ours.
            }
            Op::Remove => {
                if m.remove(k).is_some() {
                    applied.changes.push(format!("{kind} -{k}"));
                }
            }
            Op::Keep => {
                if let Some(v) = owned.get(k).filter(|v| m.get(k) == Some(*v)) {
                    now_owned.insert(k.to_owned(), v.clone());
                }
            }
        }
    }
    for (k, v) in owned {
        if !ops.contains_key(k.as_str()) && m.get(k) == Some(v) {
            m.remove(k);
            applied
                .changes
                .push(format!("{kind} -{k} (no rule sets it)"));
        }
    }
    *map = if m.is_empty() && was_none {
        None
    } else {
        Some(m)
    };
    now_owned
}
