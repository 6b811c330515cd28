//! Shared state of a running origin.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;

use crate::compress::Coding;
use crate::config::Config;
use crate::error::OriginError;
use crate::limits::Limiter;
use crate::telemetry::Metrics;

/// Cached whole files (hot segments) and compressed manifests, bounded by bytes.
pub type ByteCache = moka::sync::Cache<(PathBuf, String, Option<Coding>), Bytes>;

/// Everything handlers share.
pub struct State {
    /// Configuration.
    pub config: Config,
    /// Canonical ROOT.
    pub root: PathBuf,
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
}

fn weigher(_: &(PathBuf, String, Option<Coding>), v: &Bytes) -> u32 {
    u32::try_from(v.len()).unwrap_or(u32::MAX)
}

impl State {
    /// Builds the state from a validated config.
    pub fn new(config: Config) -> Result<Self, OriginError> {
        let root = config
            .root
            .canonicalize()
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
        Ok(State {
            root,
            ready: AtomicBool::new(true),
            metrics: Arc::new(Metrics::new(&crate::telemetry::node_name())),
            limiter: Limiter::new(config.rate_limit_rps, config.rate_limit_burst),
            cache,
            compressed,
            signing_key: config.signing_key.as_deref().map(crate::auth::key_bytes),
            config,
        })
    }
}
