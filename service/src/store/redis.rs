//! Redis backend: state shared by every node of a cluster.
//!
//! Keys (all with TTLs): `abr:pos:<viewer>:<package>` (JSON [`Position`], position TTL),
//! `abr:viewers:<package>` (sorted set viewer → last seen ms, pruned to the viewer window),
//! `abr:packages` (set of packages with viewers, for `abr monitor`), `abr:rl:<bucket>` (GCRA TAT).
//!
//! Redis is optional at run time: a health task pings it; while it is down every call fails at
//! once with [`StoreError::Unavailable`] (no request waits on a dead server), one log line marks
//! each transition, `abr_redis_up` follows it, and the connection manager reconnects by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::gcra;
use super::{now_ms, Event, Position, StoreError, StoreSettings, EVENTS_CHANNEL};
use crate::metrics::Metrics;

/// Longest a state call may take before it counts as a failure.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// Health-check period while up / while down.
const PING_UP: Duration = Duration::from_secs(1);
const PING_DOWN: Duration = Duration::from_millis(250);

/// Set of packages that have (had) viewers.
pub const PACKAGES_KEY: &str = "abr:packages";

/// Key of a package's live-viewer sorted set.
pub fn viewers_key(package: &str) -> String {
    format!("abr:viewers:{package}")
}

/// Redis-backed state.
pub struct RedisStore {
    settings: StoreSettings,
    client: redis::Client,
    conn: ConnectionManager,
    up: AtomicBool,
    gcra: redis::Script,
    metrics: Arc<Metrics>,
}

impl RedisStore {
    /// Connects lazily to `url` (a bad URL is an error; an unreachable server is not).
    pub fn new(url: &str, settings: StoreSettings, metrics: Arc<Metrics>) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis URL {url}: {e}"))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), cfg)
            .map_err(|e| format!("redis {url}: {e}"))?;
        metrics.redis_up.set(0);
        Ok(RedisStore {
            settings,
            client,
            conn,
            up: AtomicBool::new(false),
            gcra: redis::Script::new(gcra::LUA),
            metrics,
        })
    }

    /// The client (for subscribers).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    fn mark(&self, up: bool, why: &str) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!(target: "service", "redis: connected, shared state available");
            } else {
                tracing::warn!(target: "service", "redis: unavailable ({why}); video is still served, state features answer 503 until it returns");
            }
        }
        self.metrics.redis_up.set(i64::from(up));
    }

    /// Health loop: pings Redis forever and flips availability (run it on the main runtime).
    pub async fn health_loop(self: Arc<Self>) {
        loop {
            let mut c = self.conn.clone();
            let r = tokio::time::timeout(
                CALL_TIMEOUT,
                redis::cmd("PING").query_async::<String>(&mut c),
            )
            .await;
            let ok = match r {
                Ok(Ok(_)) => {
                    self.mark(true, "");
                    true
                }
                Ok(Err(e)) => {
                    self.mark(false, &e.to_string());
                    false
                }
                Err(_) => {
                    self.mark(false, "ping timed out");
                    false
                }
            };
            tokio::time::sleep(if ok { PING_UP } else { PING_DOWN }).await;
        }
    }

    /// Runs one call unless Redis is known down; failures of the link mark it down.
    async fn call<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        if !self.up.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable);
        }
        match tokio::time::timeout(CALL_TIMEOUT, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.metrics.redis_errors.inc();
                if e.is_io_error()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                {
                    self.mark(false, &e.to_string());
                    Err(StoreError::Unavailable)
                } else {
                    Err(StoreError::Backend(e.to_string()))
                }
            }
            Err(_) => {
                self.metrics.redis_errors.inc();
                self.mark(false, "call timed out");
                Err(StoreError::Unavailable)
            }
        }
    }

    pub(super) async fn save(&self, viewer: &str, p: Position) -> Result<Event, StoreError> {
        let now = now_ms();
        let window = self.settings.viewer_window.as_millis() as u64;
        let vk = viewers_key(&p.package);
        let json = serde_json::to_string(&p).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(format!("abr:pos:{viewer}:{}", p.package))
            .arg(json)
            .arg("EX")
            .arg(self.settings.position_ttl.as_secs().max(1))
            .ignore()
            .cmd("ZADD")
            .arg(&vk)
            .arg(now)
            .arg(viewer)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&vk)
            .arg("-inf")
            .arg(format!("({}", now.saturating_sub(window)))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&vk)
            .arg(window * 2)
            .ignore()
            .cmd("SADD")
            .arg(PACKAGES_KEY)
            .arg(&p.package)
            .ignore()
            .cmd("ZCARD")
            .arg(&vk);
        let mut c = self.conn.clone();
        let (viewers,): (u64,) = self.call(pipe.query_async(&mut c)).await?;
        let e = Event {
            viewer: viewer.to_string(),
            viewers,
            position: p,
        };
        let msg = serde_json::to_string(&e).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut c = self.conn.clone();
        self.call(
            redis::cmd("PUBLISH")
                .arg(EVENTS_CHANNEL)
                .arg(msg)
                .query_async::<i64>(&mut c),
        )
        .await?;
        Ok(e)
    }

    pub(super) async fn load(
        &self,
        viewer: &str,
        package: &str,
    ) -> Result<Option<Position>, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<String> = self
            .call(
                redis::cmd("GET")
                    .arg(format!("abr:pos:{viewer}:{package}"))
                    .query_async(&mut c),
            )
            .await?;
        match v {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| StoreError::Backend(format!("stored position: {e}"))),
        }
    }

    pub(super) async fn viewers(&self, package: &str) -> Result<u64, StoreError> {
        let since = now_ms().saturating_sub(self.settings.viewer_window.as_millis() as u64);
        let mut c = self.conn.clone();
        self.call(
            redis::cmd("ZCOUNT")
                .arg(viewers_key(package))
                .arg(format!("({since}"))
                .arg("+inf")
                .query_async(&mut c),
        )
        .await
    }

    pub(super) async fn acquire(
        &self,
        key: &str,
        rps: u32,
        burst: u32,
    ) -> Result<Result<(), Duration>, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = self.gcra.key(format!("abr:rl:{key}"));
        inv.arg(gcra::interval_us(rps)).arg(burst.max(1));
        let wait_us: u64 = self.call(inv.invoke_async(&mut c)).await?;
        Ok(if wait_us == 0 {
            Ok(())
        } else {
            Err(Duration::from_micros(wait_us))
        })
    }

    /// Forwards every event published by any node into `tx` (this node's event stream), and
    /// keeps resubscribing while Redis comes and goes.
    pub async fn forward_events(self: Arc<Self>, tx: tokio::sync::broadcast::Sender<String>) {
        use futures_util::StreamExt;
        loop {
            if let Ok(mut ps) = self.client.get_async_pubsub().await {
                if ps.subscribe(EVENTS_CHANNEL).await.is_ok() {
                    let mut msgs = ps.into_on_message();
                    while let Some(m) = msgs.next().await {
                        if let Ok(s) = m.get_payload::<String>() {
                            let _ = tx.send(s);
                        }
                    }
                }
            }
            tokio::time::sleep(PING_DOWN * 4).await;
        }
    }
}

/// The cluster-wide per-client rate limit of package files: one GCRA bucket per client in
/// Redis for every node; while Redis is unavailable the origin falls back to the node's own.
impl origin::SharedLimit for RedisStore {
    fn acquire(
        &self,
        client: std::net::IpAddr,
        rps: u32,
        burst: u32,
    ) -> origin::extension::Verdict<'_> {
        Box::pin(async move {
            RedisStore::acquire(self, &format!("c:{client}"), rps, burst)
                .await
                .ok()
        })
    }
}
