//! Shared state of a running origin.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use bytes::Bytes;

use crate::compress::Coding;
use crate::config::Config;
use crate::error::OriginError;
use crate::limits::Limiter;
use crate::session::Sessions;
use crate::store::{Store, StoreSettings};
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
    /// False once shutdown began (/readyz answers 503).
    pub ready: AtomicBool,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Rate limiter, when enabled.
    pub limiter: Option<Limiter>,
    /// Hot-file cache (None when `cache_bytes` is 0).
    pub cache: Option<ByteCache>,
    /// Compressed manifests (always on; small).
    pub compressed: ByteCache,
    /// Signing key, when signed URLs are required.
    pub signing_key: Option<Vec<u8>>,
    /// Node name.
    pub node: String,
    /// Viewer state (in-process or Redis).
    pub store: Store,
    /// Viewer session tokens.
    pub sessions: Sessions,
    /// Playback events seen by this node (from every node with Redis), as JSON lines.
    pub events: tokio::sync::broadcast::Sender<String>,
}

/// `Cache-Control` values by file kind.
pub struct CacheControl {
    /// Manifests (VOD: configurable, short by default).
    pub manifest: HeaderValue,
    /// Segments and init files (long-lived and immutable).
    pub segment: HeaderValue,
}

impl CacheControl {
    fn new(config: &Config) -> Self {
        let manifest = format!("public, max-age={}", config.manifest_max_age_s);
        let segment = format!("public, max-age={}, immutable", config.segment_max_age_s);
        CacheControl {
            manifest: HeaderValue::from_str(&manifest)
                .unwrap_or(HeaderValue::from_static("public")),
            segment: HeaderValue::from_str(&segment).unwrap_or(HeaderValue::from_static("public")),
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
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let settings = StoreSettings {
            position_ttl: std::time::Duration::from_secs(config.position_ttl_s.max(1)),
            viewer_window: std::time::Duration::from_secs(config.viewer_window_s.max(1)),
            node: node.clone(),
        };
        let store = match &config.redis {
            Some(url) => Store::Redis(Arc::new(
                crate::store::redis::RedisStore::new(url, settings, metrics.clone())
                    .map_err(OriginError::Config)?,
            )),
            None => Store::Embedded(Box::new(crate::store::embedded::EmbeddedStore::new(
                settings,
                events.clone(),
            ))),
        };
        let session_key = match config
            .session_key
            .as_deref()
            .or(config.signing_key.as_deref())
        {
            Some(k) => crate::auth::key_bytes(k),
            None => {
                if config.redis.is_some() {
                    tracing::warn!(target: "origin", "no session_key: viewer sessions are valid on this node only (give every node the same --session-key)");
                }
                rand::random::<[u8; 32]>().to_vec()
            }
        };
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
            root,
            ready: AtomicBool::new(true),
            metrics,
            node,
            store,
            sessions: Sessions::new(
                session_key,
                std::time::Duration::from_secs(config.session_ttl_s.max(60)),
            ),
            events,
            limiter: Limiter::new(config.rate_limit_rps, config.rate_limit_burst),
            cache,
            compressed,
            signing_key: config.signing_key.as_deref().map(crate::auth::key_bytes),
            config,
        })
    }
}
