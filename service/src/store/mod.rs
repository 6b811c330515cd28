//! Shared viewer state: playback positions, live viewer counts, playback events and the
//! cluster-wide rate limit. Two backends with the same behaviour: [`embedded`] (in-process, the
//! single-box default) and [`redis`] (shared by every node of a cluster; optional at run time —
//! when Redis is unreachable, state calls fail fast with [`StoreError::Unavailable`] and video
//! keeps being served).

pub mod embedded;
pub mod gcra;
pub mod redis;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Redis pub/sub channel (and the embedded broadcast) carrying [`Event`]s as JSON.
pub const EVENTS_CHANNEL: &str = "abr:events";

/// A viewer's last known playback state in one package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Package name.
    pub package: String,
    /// Media time in seconds.
    pub position_s: f64,
    /// Whether playback was paused.
    pub paused: bool,
    /// Rendition being played (player-defined label, e.g. `720p`).
    pub rendition: Option<String>,
    /// When it was saved (Unix milliseconds).
    pub updated_ms: u64,
    /// Node that saved it.
    pub node: String,
}

/// A playback event, published to every node and to `abr monitor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Viewer id.
    pub viewer: String,
    /// Live viewers of the package right after this event (on the backend that stored it).
    pub viewers: u64,
    /// The saved state.
    #[serde(flatten)]
    pub position: Position,
}

/// Why a state call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The shared backend is unreachable (state features degrade; video is unaffected).
    #[error("state backend unavailable")]
    Unavailable,
    /// The backend answered with an error.
    #[error("state backend error: {0}")]
    Backend(String),
}

/// Settings shared by both backends.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// How long a saved position is kept.
    pub position_ttl: Duration,
    /// A viewer counts as live for this long after its last event.
    pub viewer_window: Duration,
    /// Node name (recorded in positions and events).
    pub node: String,
}

/// The configured backend.
pub enum Store {
    /// In-process (single node).
    Embedded(Box<embedded::EmbeddedStore>),
    /// Redis (shared by a cluster).
    Redis(std::sync::Arc<redis::RedisStore>),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Store {
    /// Saves `viewer`'s position, marks the viewer live, publishes an [`Event`]; returns it.
    pub async fn save(&self, viewer: &str, p: Position) -> Result<Event, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.save(viewer, p)),
            Store::Redis(s) => s.save(viewer, p).await,
        }
    }

    /// `viewer`'s last position in `package`.
    pub async fn load(&self, viewer: &str, package: &str) -> Result<Option<Position>, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.load(viewer, package)),
            Store::Redis(s) => s.load(viewer, package).await,
        }
    }

    /// Viewers of `package` seen within the viewer window.
    pub async fn viewers(&self, package: &str) -> Result<u64, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.viewers(package)),
            Store::Redis(s) => s.viewers(package).await,
        }
    }

    /// One request against the token bucket `key` (`rps` per second, `burst`): Ok(Ok) when
    /// allowed, Ok(Err(wait)) when refused. Shared by every node on the Redis backend.
    pub async fn acquire(
        &self,
        key: &str,
        rps: u32,
        burst: u32,
    ) -> Result<Result<(), Duration>, StoreError> {
        match self {
            Store::Embedded(s) => Ok(s.acquire(key, rps, burst)),
            Store::Redis(s) => s.acquire(key, rps, burst).await,
        }
    }

    /// Whether this is the shared (Redis) backend.
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Redis(_))
    }

    /// Drops expired entries (embedded backend; Redis expires keys itself).
    pub fn housekeeping(&self) {
        if let Store::Embedded(s) = self {
            s.housekeeping();
        }
    }
}
