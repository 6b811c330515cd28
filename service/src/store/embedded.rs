//! In-process backend: the single-box default, no extra service. Positions live in a bounded
//! cache with the position TTL; events go to this node's broadcast only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::gcra::{self, Verdict};
use super::{now_ms, Event, Position, StoreSettings};

/// Most positions kept (oldest evicted first).
const MAX_POSITIONS: u64 = 1_000_000;

/// In-process state.
pub struct EmbeddedStore {
    settings: StoreSettings,
    positions: moka::sync::Cache<(String, String), Position>,
    /// package → viewer → last seen.
    viewers: Mutex<HashMap<String, HashMap<String, Instant>>>,
    /// bucket → TAT (µs).
    buckets: Mutex<HashMap<String, u64>>,
    events: tokio::sync::broadcast::Sender<String>,
}

fn micros_now() -> u64 {
    now_ms() * 1000
}

impl EmbeddedStore {
    /// A fresh store publishing events on `events`.
    pub fn new(settings: StoreSettings, events: tokio::sync::broadcast::Sender<String>) -> Self {
        EmbeddedStore {
            positions: moka::sync::Cache::builder()
                .max_capacity(MAX_POSITIONS)
                .time_to_live(settings.position_ttl)
                .build(),
            settings,
            viewers: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            events,
        }
    }

    fn live(&self, m: &mut HashMap<String, Instant>) -> u64 {
        let window = self.settings.viewer_window;
        m.retain(|_, seen| seen.elapsed() < window);
        m.len() as u64
    }

    pub(super) fn save(&self, viewer: &str, p: Position) -> Event {
        self.positions
            .insert((viewer.to_string(), p.package.clone()), p.clone());
        let viewers = {
            let mut all = self.viewers.lock().unwrap_or_else(|e| e.into_inner());
            let m = all.entry(p.package.clone()).or_default();
            m.insert(viewer.to_string(), Instant::now());
            self.live(m)
        };
        let e = Event {
            viewer: viewer.to_string(),
            viewers,
            position: p,
        };
        if let Ok(json) = serde_json::to_string(&e) {
            // No receiver is fine.
            let _ = self.events.send(json);
        }
        e
    }

    pub(super) fn load(&self, viewer: &str, package: &str) -> Option<Position> {
        self.positions
            .get(&(viewer.to_string(), package.to_string()))
    }

    pub(super) fn viewers(&self, package: &str) -> u64 {
        let mut all = self.viewers.lock().unwrap_or_else(|e| e.into_inner());
        all.get_mut(package).map_or(0, |m| self.live(m))
    }

    pub(super) fn acquire(&self, key: &str, rps: u32, burst: u32) -> Result<(), Duration> {
        let now = micros_now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match gcra::check(now, b.get(key).copied(), rps, burst) {
            Verdict::Allow { tat } => {
                b.insert(key.to_string(), tat);
                Ok(())
            }
            Verdict::Deny(wait) => Err(wait),
        }
    }

    pub(super) fn housekeeping(&self) {
        let now = micros_now();
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, tat| *tat > now);
        self.viewers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, m| self.live(m) > 0);
        self.positions.run_pending_tasks();
    }
}
