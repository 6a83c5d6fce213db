//! A time-limited cache of resolved values, keyed by path, key and version:
//! for `env` injection, where the webhook resolves at admission. In process
//! memory only, never shared (never Redis).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nemutator_core::secret::{ExposeSecret, ResolveFuture, SecretRef, SecretResolver, SecretValue};

/// `inner` behind a cache of `ttl`. Errors are not cached.
pub struct CachedResolver<R> {
    inner: R,
    ttl: Duration,
    entries: Mutex<HashMap<SecretRef, (Instant, SecretValue)>>,
}

impl<R: std::fmt::Debug> std::fmt::Debug for CachedResolver<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedResolver")
            .field("inner", &self.inner)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<R> CachedResolver<R> {
    /// Values from `inner` kept for `ttl`.
    pub fn new(inner: R, ttl: Duration) -> Self {
        CachedResolver {
            inner,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, reference: &SecretRef) -> Option<SecretValue> {
        let entries = self.entries.lock().ok()?;
        let (at, value) = entries.get(reference)?;
        (at.elapsed() < self.ttl).then(|| SecretValue::from(value.expose_secret().to_owned()))
    }
}

impl<R: SecretResolver> SecretResolver for CachedResolver<R> {
    fn resolve<'a>(&'a self, reference: &'a SecretRef) -> ResolveFuture<'a> {
        Box::pin(async move {
            if let Some(v) = self.cached(reference) {
                return Ok(v);
            }
            let value = self.inner.resolve(reference).await?;
            if let Ok(mut entries) = self.entries.lock() {
                entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
                entries.insert(
                    reference.clone(),
                    (
                        Instant::now(),
                        SecretValue::from(value.expose_secret().to_owned()),
                    ),
                );
            }
            Ok(value)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use nemutator_core::secret::SecretError;

    use super::*;

    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl SecretResolver for Counting {
        fn resolve<'a>(&'a self, r: &'a SecretRef) -> ResolveFuture<'a> {
            Box::pin(async move {
                let n = self.0.fetch_add(1, Ordering::SeqCst);
                if r.key == "fail" {
                    return Err(SecretError::Unavailable("down".into()));
                }
                Ok(SecretValue::from(format!("v{n}")))
            })
        }
    }

    fn r(text: &str) -> SecretRef {
        SecretRef::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    async fn get(c: &CachedResolver<Counting>, r: &SecretRef) -> Option<String> {
        c.resolve(r)
            .await
            .ok()
            .map(|v| v.expose_secret().to_owned())
    }

    #[tokio::test]
    async fn values_are_kept_for_the_ttl_per_path_and_version() {
        let c = CachedResolver::new(Counting::default(), Duration::from_millis(200));
        let a = r("vault:kv/data/a#k");
        let a2 = r("vault:kv/data/a#k#2");
        let fail = r("vault:kv/data/a#fail");
        assert_eq!(get(&c, &a).await.as_deref(), Some("v0"));
        assert_eq!(get(&c, &a).await.as_deref(), Some("v0"), "cached");
        assert_eq!(get(&c, &a2).await.as_deref(), Some("v1"), "another version");
        assert!(get(&c, &fail).await.is_none());
        assert!(get(&c, &fail).await.is_none(), "errors are not cached");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(get(&c, &a).await.as_deref(), Some("v4"), "expired");
        assert!(!format!("{c:?}").contains("v0"));
    }
}
