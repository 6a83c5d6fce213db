//! Rules that change without a redeploy: [`SharedRules`] holds the rules in
//! force (swapped atomically, read without a lock by every review), and
//! [`ConfigWatch`] polls the configuration file's content and swaps them
//! when its `metadata:` section changed.
//!
//! The content is compared, not the modification time: a ConfigMap mounted
//! as a volume changes by an atomic swap of the `..data` symlink, which
//! leaves the file's own path (a symlink) untouched, and reading through the
//! symlinks gives either the old or the new content, never a half-written
//! one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::MetadataConfig;
use crate::config::Config;
use crate::error::Chain;

/// The metadata rules in force, shared by the admission layer and the
/// controller's patcher.
#[derive(Debug)]
pub struct SharedRules {
    current: ArcSwap<MetadataConfig>,
    generation: watch::Sender<u64>,
}

impl Default for SharedRules {
    fn default() -> Self {
        SharedRules::new(MetadataConfig::default())
    }
}

impl SharedRules {
    /// Start with `rules`.
    pub fn new(rules: MetadataConfig) -> Self {
        SharedRules {
            current: ArcSwap::from_pointee(rules),
            generation: watch::Sender::new(0),
        }
    }

    /// The rules in force now.
    pub fn current(&self) -> Arc<MetadataConfig> {
        self.current.load_full()
    }

    /// Put `rules` in force and tell the subscribers.
    pub fn replace(&self, rules: MetadataConfig) {
        self.current.store(Arc::new(rules));
        self.generation.send_modify(|g| *g += 1);
    }

    /// A receiver that sees a change each time the rules are replaced.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

/// What one look at the configuration file found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reload {
    /// Nothing that matters changed (or the same problem as last time).
    Unchanged,
    /// The file changed.
    Changed {
        /// The `metadata:` rules were replaced.
        metadata: bool,
        /// Other sections that differ from those the process runs with
        /// (a restart applies them).
        others: Vec<&'static str>,
    },
    /// The new content is not a valid configuration (one line); the rules
    /// in force stay.
    Invalid(String),
    /// The file cannot be read (one line); the rules in force stay.
    Unreadable(String),
}

/// Watches a configuration file for new `metadata:` rules.
#[derive(Debug)]
pub struct ConfigWatch {
    path: PathBuf,
    /// The content last looked at.
    text: Option<String>,
    /// The configuration the process runs with, `metadata:` as in force.
    running: Config,
    rules: Arc<SharedRules>,
    problem: Option<String>,
}

/// The sections of `new` that differ from `running`, besides `metadata:`.
fn changed_sections(running: &Config, new: &Config) -> Vec<&'static str> {
    // Destructured: a new section is a compile error here until it is
    // compared.
    let Config {
        metrics,
        policies,
        secrets,
        seasons,
        controller,
        placement,
        metadata: _,
    } = new;
    [
        ("metrics", *metrics != running.metrics),
        ("policies", *policies != running.policies),
        ("secrets", *secrets != running.secrets),
        ("seasons", *seasons != running.seasons),
        ("controller", *controller != running.controller),
        ("placement", *placement != running.placement),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

impl ConfigWatch {
    /// Watch `path`, whose content was loaded as `running`; new rules go
    /// into `rules`.
    pub fn new(path: &Path, running: Config, rules: Arc<SharedRules>) -> Self {
        ConfigWatch {
            path: path.to_path_buf(),
            text: None,
            running,
            rules,
            problem: None,
        }
    }

    /// Read the file once; swap the rules if its `metadata:` changed.
    pub fn check(&mut self) -> Reload {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                let line = format!("{}: {e}", self.path.display());
                if self.problem.as_ref() == Some(&line) {
                    return Reload::Unchanged;
                }
                self.problem = Some(line.clone());
                return Reload::Unreadable(line);
            }
        };
        self.problem = None;
        if self.text.as_ref() == Some(&text) {
            return Reload::Unchanged;
        }
        let new = Config::from_yaml(&text, &self.path);
        self.text = Some(text);
        let new = match new {
            Ok(c) => c,
            Err(e) => return Reload::Invalid(Chain(&e).to_string().replace('\n', " ")),
        };
        let others = changed_sections(&self.running, &new);
        let metadata = new.metadata != self.running.metadata;
        if metadata {
            self.rules.replace(new.metadata.clone());
            self.running.metadata = new.metadata;
        }
        if !metadata && others.is_empty() {
            return Reload::Unchanged;
        }
        Reload::Changed { metadata, others }
    }

    /// Look at the file every `every`, forever, logging what changed.
    pub async fn run(mut self, every: Duration) {
        let file = self.path.display().to_string();
        loop {
            tokio::time::sleep(every).await;
            match self.check() {
                Reload::Unchanged => {}
                Reload::Changed { metadata, others } => {
                    if metadata {
                        let rules = self.rules.current().rules.len();
                        tracing::info!(config = %file, rules, "metadata rules reloaded");
                    }
                    if !others.is_empty() {
                        let sections = others.join(", ");
                        tracing::info!(config = %file, sections, "configuration changed outside metadata: a restart applies it");
                    }
                }
                Reload::Invalid(error) | Reload::Unreadable(error) => {
                    tracing::warn!(%error, "configuration not reloaded; the last good metadata rules stay");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nemutator-reload-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    const RULE: &str = "metadata:\n  rules:\n    - { name: team, labels: { team: a } }\n";

    /// A ConfigMap volume: `config.yaml -> ..data/config.yaml`, `..data ->
    /// ..vN`; a new version is written beside it and `..data` swapped by a
    /// rename, as the kubelet does.
    fn configmap_version(dir: &Path, n: u32, text: &str) {
        let version = dir.join(format!("..v{n}"));
        std::fs::create_dir_all(&version).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(version.join("config.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("..v{n}"), &tmp).unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&tmp, dir.join("..data")).unwrap_or_else(|e| panic!("{e}"));
        let link = dir.join("config.yaml");
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("..data/config.yaml", &link)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn a_configmap_swap_replaces_the_rules_and_a_bad_file_keeps_them() {
        let dir = mk_dir("swap");
        configmap_version(&dir, 1, "");
        let path = dir.join("config.yaml");
        let rules = Arc::new(SharedRules::default());
        let mut changes = rules.subscribe();
        let mut watch = ConfigWatch::new(&path, Config::default(), rules.clone());
        assert_eq!(watch.check(), Reload::Unchanged);
        assert_eq!(watch.check(), Reload::Unchanged);

        configmap_version(&dir, 2, RULE);
        assert_eq!(
            watch.check(),
            Reload::Changed {
                metadata: true,
                others: vec![]
            }
        );
        assert_eq!(rules.current().rules[0].name, "team");
        assert!(changes.has_changed().unwrap_or(false));
        changes.mark_unchanged();

        // A reserved key: refused in one line naming the rule, rules kept.
        configmap_version(
            &dir,
            3,
            "metadata:\n  rules:\n    - { name: bad, labels: { nemutator.io/x: a } }\n",
        );
        let Reload::Invalid(e) = watch.check() else {
            panic!("a reserved key was accepted")
        };
        assert!(
            e.contains("metadata rule \"bad\"") && !e.contains('\n'),
            "{e}"
        );
        assert_eq!(rules.current().rules[0].name, "team");
        assert!(!changes.has_changed().unwrap_or(true));
        // The same bad content is not reported twice.
        assert_eq!(watch.check(), Reload::Unchanged);

        // Another section only: said, and the rules stay.
        configmap_version(&dir, 4, &format!("{RULE}seasons: {{ enabled: false }}\n"));
        assert_eq!(
            watch.check(),
            Reload::Changed {
                metadata: false,
                others: vec!["seasons"]
            }
        );
        assert_eq!(rules.current().rules.len(), 1);

        // The section removed: no rules.
        configmap_version(&dir, 5, "");
        assert_eq!(
            watch.check(),
            Reload::Changed {
                metadata: true,
                others: vec![]
            }
        );
        assert!(rules.current().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_file_is_said_once() {
        let dir = mk_dir("missing");
        let path = dir.join("gone.yaml");
        let rules = Arc::new(SharedRules::default());
        let mut watch = ConfigWatch::new(&path, Config::default(), rules);
        assert!(matches!(watch.check(), Reload::Unreadable(e) if e.contains("gone.yaml")));
        assert_eq!(watch.check(), Reload::Unchanged);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
