//! Shared state of a running origin (handlers of extensions read it too: readiness, ROOT, node).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use bytes::Bytes;

use crate::compress::Coding;
use crate::config::Config;
use crate::error::OriginError;
use crate::extension::SharedLimit;
use crate::limits::Limiter;
use crate::telemetry::Metrics;

/// Cached whole files (hot segments) and compressed manifests, bounded by bytes.
pub type ByteCache = moka::sync::Cache<(PathBuf, String, Option<Coding>), Bytes>;

/// Everything handlers share.
pub struct State {
    /// Configuration.
    pub config: Config,
    /// ROOT (canonical path and the directory handle requests are resolved under).
    pub root: crate::files::Root,
    /// Recently opened package files.
    pub open_files: crate::files::OpenCache,
    /// `Cache-Control` of manifests and of segments (from the config, made once).
    pub cache_control: CacheControl,
    /// CORS headers of every response (`cors_origins`).
    pub cors: crate::cors::Cors,
    /// False once shutdown began (/readyz answers 503).
    pub ready: AtomicBool,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Rate limiter, when enabled (the node's own buckets).
    pub limiter: Option<Limiter>,
    /// The cluster's rate limit, when an [`crate::extension::Extension`] gave one.
    pub shared_limit: Option<Arc<dyn SharedLimit>>,
    /// Path prefixes of extension routes (requests under them go through the router).
    pub extension_prefixes: Vec<&'static str>,
    /// Exact paths of extension routes.
    pub extension_paths: Vec<&'static str>,
    /// Hot-file cache (None when `cache_bytes` is 0).
    pub cache: Option<ByteCache>,
    /// Compressed manifests (always on; small).
    pub compressed: ByteCache,
    /// Signing key, when signed URLs are required.
    pub signing_key: Option<Vec<u8>>,
    /// Node name.
    pub node: String,
}

/// `Cache-Control` values by file kind (and the manifests' `CDN-Cache-Control`), made once.
pub struct CacheControl {
    /// Manifests (VOD: short by default, with stale windows for edges).
    pub manifest: HeaderValue,
    /// Segments and init files (long-lived and immutable).
    pub segment: HeaderValue,
    /// `CDN-Cache-Control` of manifests (RFC 9213: CDNs use it instead of `Cache-Control`, so
    /// an edge can keep a manifest longer than browsers do); none when its max-age is 0.
    pub manifest_cdn: Option<HeaderValue>,
    manifest_ages: Ages,
    segment_ages: Ages,
    cdn_ages: Option<Ages>,
}

/// A max-age and the RFC 5861 stale windows after it, in seconds (0 = left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ages {
    /// `max-age`.
    pub max_age: u64,
    /// `stale-while-revalidate`.
    pub swr: u64,
    /// `stale-if-error`.
    pub sie: u64,
}

impl Ages {
    /// `max-age`, then `extra` (e.g. `immutable`), then the stale windows that are not 0.
    pub fn directives(&self, extra: &[&str]) -> String {
        let mut d = vec![format!("max-age={}", self.max_age)];
        d.extend(extra.iter().map(|e| e.to_string()));
        if self.swr > 0 {
            d.push(format!("stale-while-revalidate={}", self.swr));
        }
        if self.sie > 0 {
            d.push(format!("stale-if-error={}", self.sie));
        }
        d.join(", ")
    }

    /// These ages for a response valid `left` more seconds (a signed URL's token): neither fresh
    /// nor served stale-while-revalidate past that; `stale-if-error` is kept, so an outage still
    /// favours playback.
    pub fn until(&self, left: u64) -> Ages {
        let max_age = self.max_age.min(left);
        Ages {
            max_age,
            swr: self.swr.min(left - max_age),
            sie: self.sie,
        }
    }
}

fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("no-cache"))
}

fn manifest_value(a: Ages) -> HeaderValue {
    header(&format!("public, {}", a.directives(&[])))
}

fn segment_value(a: Ages) -> HeaderValue {
    header(&format!("public, {}", a.directives(&["immutable"])))
}

impl CacheControl {
    /// The header values of `config`'s caching settings.
    pub fn new(config: &Config) -> Self {
        let c = config;
        let manifest_ages = Ages {
            max_age: c.manifest_max_age_s,
            swr: c.manifest_stale_while_revalidate_s,
            sie: c.manifest_stale_if_error_s,
        };
        let segment_ages = Ages {
            max_age: c.segment_max_age_s,
            swr: c.segment_stale_while_revalidate_s,
            sie: c.segment_stale_if_error_s,
        };
        // CDN-Cache-Control: its own max-age, the manifests' stale windows.
        let cdn_ages = (c.manifest_cdn_max_age_s > 0).then_some(Ages {
            max_age: c.manifest_cdn_max_age_s,
            ..manifest_ages
        });
        CacheControl {
            manifest: manifest_value(manifest_ages),
            segment: segment_value(segment_ages),
            manifest_cdn: cdn_ages.map(|a| header(&a.directives(&[]))),
            manifest_ages,
            segment_ages,
            cdn_ages,
        }
    }

    /// `Cache-Control` (and `CDN-Cache-Control` for manifests) of a response to a signed URL
    /// whose token is valid `left` more seconds: never fresh past the expiry, so an edge that
    /// cached it asks the origin again (and gets 403) once the token expired.
    pub fn signed(&self, manifest: bool, left: u64) -> (HeaderValue, Option<HeaderValue>) {
        if manifest {
            (
                manifest_value(self.manifest_ages.until(left)),
                self.cdn_ages
                    .map(|a| header(&a.until(left).directives(&[]))),
            )
        } else {
            (segment_value(self.segment_ages.until(left)), None)
        }
    }
}

fn weigher(_: &(PathBuf, String, Option<Coding>), v: &Bytes) -> u32 {
    u32::try_from(v.len()).unwrap_or(u32::MAX)
}

impl State {
    /// Builds the state from a validated config.
    pub fn new(config: Config) -> Result<Self, OriginError> {
        let root = crate::files::Root::open(&config.root)
            .map_err(|e| OriginError::Config(format!("root {}: {e}", config.root.display())))?;
        let cache = (config.cache_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(config.cache_bytes)
                .weigher(weigher)
                .build()
        });
        let compressed = moka::sync::Cache::builder()
            .max_capacity(64 << 20)
            .weigher(weigher)
            .build();
        let node = config
            .node
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(crate::telemetry::node_name);
        let metrics = Arc::new(Metrics::new(&node));
        Ok(State {
            // Cached descriptors (every worker has its cache) never take more than a quarter
            // of the process's allowance.
            open_files: crate::files::OpenCache::new(
                config.open_file_cache(),
                config
                    .open_file_cache_entries
                    .min(crate::files::raise_fd_limit() / 4 / config.worker_count() as u64),
            ),
            cache_control: CacheControl::new(&config),
            cors: crate::cors::Cors::new(&config.cors_origins),
            root,
            ready: AtomicBool::new(true),
            metrics,
            node,
            limiter: Limiter::new(config.rate_limit_rps, config.rate_limit_burst),
            shared_limit: None,
            extension_prefixes: Vec::new(),
            extension_paths: Vec::new(),
            cache,
            compressed,
            signing_key: config.signing_key.as_deref().map(crate::auth::key_bytes),
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(c: &Config) -> (String, String, Option<String>) {
        let cc = CacheControl::new(c);
        let s = |v: &HeaderValue| v.to_str().unwrap().to_string();
        (
            s(&cc.manifest),
            s(&cc.segment),
            cc.manifest_cdn.as_ref().map(s),
        )
    }

    /// The VOD defaults: manifests short for browsers, longer for CDNs, stale windows on both
    /// kinds (docs/origin.example.toml documents the same values).
    #[test]
    fn default_cache_headers() {
        let (m, seg, cdn) = values(&Config::default());
        assert_eq!(
            m,
            "public, max-age=10, stale-while-revalidate=30, stale-if-error=86400"
        );
        assert_eq!(
            seg,
            "public, max-age=31536000, immutable, stale-while-revalidate=86400, stale-if-error=604800"
        );
        assert_eq!(
            cdn.as_deref(),
            Some("max-age=60, stale-while-revalidate=30, stale-if-error=86400")
        );
    }

    /// Signed URLs: fresh (and stale-while-revalidate) never past the token's expiry.
    #[test]
    fn signed_responses_expire_with_their_token() {
        let cc = CacheControl::new(&Config::default());
        let s = |v: &HeaderValue| v.to_str().unwrap().to_string();
        // Plenty of time left: the usual values.
        let (m, cdn) = cc.signed(true, 100_000);
        assert_eq!(s(&m), s(&cc.manifest));
        assert_eq!(cdn.as_ref().map(s), cc.manifest_cdn.as_ref().map(s));
        // 40 s left: manifests fresh 10 s, revalidated in the background for the other 30; the
        // CDN's 60 s shrink to 40 and leave no stale-while-revalidate.
        let (m, cdn) = cc.signed(true, 40);
        assert_eq!(
            s(&m),
            "public, max-age=10, stale-while-revalidate=30, stale-if-error=86400"
        );
        assert_eq!(
            cdn.as_ref().map(s).as_deref(),
            Some("max-age=40, stale-if-error=86400")
        );
        let (m, _) = cc.signed(true, 25);
        assert_eq!(
            s(&m),
            "public, max-age=10, stale-while-revalidate=15, stale-if-error=86400"
        );
        let (seg, none) = cc.signed(false, 3_600);
        assert_eq!(
            s(&seg),
            "public, max-age=3600, immutable, stale-if-error=604800"
        );
        assert!(none.is_none());
        let (seg, _) = cc.signed(false, 1);
        assert_eq!(
            s(&seg),
            "public, max-age=1, immutable, stale-if-error=604800"
        );
    }

    /// Every setting reaches its header; 0 leaves a stale window (or CDN-Cache-Control) out.
    #[test]
    fn cache_headers_follow_the_settings() {
        let c = Config {
            manifest_max_age_s: 2,
            manifest_stale_while_revalidate_s: 0,
            manifest_stale_if_error_s: 7,
            manifest_cdn_max_age_s: 0,
            segment_max_age_s: 100,
            segment_stale_while_revalidate_s: 3,
            segment_stale_if_error_s: 0,
            ..Default::default()
        };
        let (m, seg, cdn) = values(&c);
        assert_eq!(m, "public, max-age=2, stale-if-error=7");
        assert_eq!(
            seg,
            "public, max-age=100, immutable, stale-while-revalidate=3"
        );
        assert_eq!(cdn, None);
        let c = Config {
            manifest_cdn_max_age_s: 600,
            manifest_stale_while_revalidate_s: 5,
            manifest_stale_if_error_s: 0,
            ..Default::default()
        };
        assert_eq!(
            values(&c).2.as_deref(),
            Some("max-age=600, stale-while-revalidate=5")
        );
    }
}
