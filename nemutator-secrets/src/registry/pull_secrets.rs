//! Registry credentials from a pod's `imagePullSecrets`: Secrets of type
//! `kubernetes.io/dockerconfigjson` (`{"auths": {HOST: {...}}}`) or the
//! older `kubernetes.io/dockercfg` (`{HOST: {...}}`), read with kube-rs in
//! the pod's namespace. An entry gives `username` and `password`, or `auth`
//! (base64 of `user:password`). Values stay wrapped ([`SecretValue`]) until
//! they are handed to the registry client.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use nemutator_core::image::ImageError;
use nemutator_core::secret::{ExposeSecret, SecretValue};
use serde::Deserialize;

/// A user and password for one registry.
pub(super) struct Credentials {
    pub username: String,
    pub password: SecretValue,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

/// `https://index.docker.io/v1/` -> `index.docker.io`; Docker Hub's names
/// are one registry.
fn host_of(key: &str) -> String {
    let key = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = key
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "registry-1.docker.io" | "index.docker.io" => "index.docker.io".to_owned(),
        _ => host,
    }
}

/// The credentials for `registry` in one docker config (the JSON of a
/// pull secret), `Ok(None)` when it has none for it. An error says what is
/// wrong with the file, never its contents.
pub(super) fn credentials_for(
    docker_config: &[u8],
    legacy: bool,
    registry: &str,
) -> Result<Option<Credentials>, String> {
    let entries: std::collections::BTreeMap<String, Entry> = if legacy {
        serde_json::from_slice(docker_config)
            .map_err(|_| "not a .dockercfg JSON object".to_owned())?
    } else {
        #[derive(Deserialize)]
        struct Config {
            #[serde(default)]
            auths: std::collections::BTreeMap<String, Entry>,
        }
        serde_json::from_slice::<Config>(docker_config)
            .map_err(|_| "not a .dockerconfigjson object with auths".to_owned())?
            .auths
    };
    let want = host_of(registry);
    let Some(entry) = entries
        .into_iter()
        .find(|(k, _)| host_of(k) == want)
        .map(|(_, e)| e)
    else {
        return Ok(None);
    };
    if let (Some(username), Some(password)) = (entry.username, entry.password) {
        return Ok(Some(Credentials {
            username,
            password: SecretValue::from(password),
        }));
    }
    let Some(auth) = entry.auth else {
        return Ok(None);
    };
    let decoded = base64_simd::STANDARD
        .decode_to_vec(auth.trim())
        .map_err(|_| format!("the auth of {want} is not base64"))?;
    let decoded = SecretValue::from(
        String::from_utf8(decoded).map_err(|_| format!("the auth of {want} is not UTF-8"))?,
    );
    let Some((user, password)) = decoded.expose_secret().split_once(':') else {
        return Err(format!("the auth of {want} is not user:password"));
    };
    Ok(Some(Credentials {
        username: user.to_owned(),
        password: SecretValue::from(password.to_owned()),
    }))
}

/// The first credentials for `registry` among the pull secrets `names` in
/// `namespace`. A missing Secret is skipped (as the kubelet skips it).
pub(super) async fn lookup(
    client: &kube::Client,
    namespace: &str,
    names: &[String],
    registry: &str,
    image: &str,
) -> Result<Option<Credentials>, ImageError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for name in names {
        let bad = |why: String| ImageError::PullSecret {
            namespace: namespace.to_owned(),
            name: name.clone(),
            why,
        };
        let secret =
            match api.get_opt(name).await {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(kube::Error::Api(status)) if status.code == 403 => return Err(bad(
                    "nemutator may not read it (get secrets; see secrets.registry.pull_secrets)"
                        .to_owned(),
                )),
                Err(e) => {
                    return Err(ImageError::Unavailable {
                        image: image.to_owned(),
                        why: format!("reading pull secret {namespace}/{name}: {e}"),
                    })
                }
            };
        let data = secret.data.unwrap_or_default();
        let (bytes, legacy) = match (data.get(".dockerconfigjson"), data.get(".dockercfg")) {
            (Some(b), _) => (b, false),
            (None, Some(b)) => (b, true),
            (None, None) => return Err(bad("has no .dockerconfigjson or .dockercfg".to_owned())),
        };
        if let Some(c) = credentials_for(&bytes.0, legacy, registry).map_err(bad)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_of(c: Option<Credentials>) -> Option<(String, String)> {
        c.map(|c| (c.username, c.password.expose_secret().to_owned()))
    }

    #[test]
    fn docker_configs_in_both_forms_and_docker_hub_aliases() {
        let auth = base64_simd::STANDARD.encode_to_string("bob:pa:ss");
        let json = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}},
                          "registry.example:5000": {{"username": "u", "password": "p"}}}}}}"#
        );
        let got = credentials_for(json.as_bytes(), false, "index.docker.io")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(user_of(got), Some(("bob".into(), "pa:ss".into())));
        let got = credentials_for(json.as_bytes(), false, "registry.example:5000")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(user_of(got), Some(("u".into(), "p".into())));
        let got = credentials_for(json.as_bytes(), false, "other.example")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(got.is_none());
        let legacy = r#"{"registry.example:5000": {"username": "u", "password": "p"}}"#;
        let got = credentials_for(legacy.as_bytes(), true, "registry.example:5000")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(user_of(got), Some(("u".into(), "p".into())));
    }

    #[test]
    fn broken_configs_are_named_not_quoted() {
        let e = credentials_for(b"[\"hunter2\"]", false, "r")
            .err()
            .unwrap_or_default();
        assert_eq!(e, "not a .dockerconfigjson object with auths");
        let bad = r#"{"auths": {"r": {"auth": "aHVudGVyMg=="}}}"#; // "hunter2", no colon
        let e = credentials_for(bad.as_bytes(), false, "r")
            .err()
            .unwrap_or_default();
        assert_eq!(e, "the auth of r is not user:password");
    }
}
