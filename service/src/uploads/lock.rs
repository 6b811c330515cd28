//! One writer per upload: a PATCH (or DELETE) holds its upload's lock while it runs; a second
//! one gets 423 Locked. Behind [`Locker`]: [`InProcess`] on one node, [`RedisLocker`] when the
//! PATCHes of one upload may reach different nodes (a cluster behind nginx).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Why a lock could not be asked for (a shared backend is down); the request answers 503.
#[derive(Debug, thiserror::Error)]
#[error("upload lock: {0}")]
pub struct LockError(pub String);

/// The answer of [`Locker::try_lock`]: held, or `None` when someone else holds it.
pub type TryLock<'a> = Pin<Box<dyn Future<Output = Result<Option<Held>, LockError>> + 'a>>;

/// A lock on uploads by id.
pub trait Locker: Send + Sync {
    /// Takes `id`'s lock if it is free.
    fn try_lock<'a>(&'a self, id: &'a str) -> TryLock<'a>;
}

/// A held lock, released on drop.
pub struct Held {
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Held {
    /// A lock whose release runs `release` (once, on drop).
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> Held {
        Held {
            release: Some(Box::new(release)),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(f) = self.release.take() {
            f();
        }
    }
}

/// Locks of this process.
#[derive(Debug, Default, Clone)]
pub struct InProcess(Arc<Mutex<HashSet<String>>>);

impl InProcess {
    fn take(&self, id: &str) -> Option<Held> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !held.insert(id.to_string()) {
            return None;
        }
        let set = self.0.clone();
        let id = id.to_string();
        Some(Held::new(move || {
            set.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        }))
    }
}

impl Locker for InProcess {
    fn try_lock<'a>(&'a self, id: &'a str) -> TryLock<'a> {
        let r = self.take(id);
        Box::pin(async move { Ok(r) })
    }
}

/// Key prefix of the Redis locks (`abr:lock:upload:<id>`).
pub const REDIS_PREFIX: &str = "abr:lock:upload:";
/// How long a Redis lock outlives a holder that stopped renewing it (a crashed node).
const REDIS_TTL: Duration = Duration::from_secs(10);
/// Longest a lock call may take before it counts as Redis being unavailable.
const REDIS_CALL: Duration = Duration::from_millis(500);

/// A holder's release runs after its request answered (its drop hands it to the renewal task,
/// a round trip later): a taken lock is asked for again for this long before the answer is
/// "held" (a client's next request right after a response must not get 423).
const RELEASE_WAIT: Duration = Duration::from_millis(250);
/// Between two of those asks.
const RELEASE_POLL: Duration = Duration::from_millis(10);

/// Moves the lock's expiry if the token still holds it.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// Deletes the lock if the token still holds it.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) else return 0 end";

/// Locks in Redis, shared by the nodes of a cluster: `SET key token NX PX ttl`, renewed every
/// third of the ttl while held (a PATCH of many MiB outlasts it), released by a
/// compare-and-delete script (a lock that expired and was taken by another is left alone).
pub struct RedisLocker {
    conn: ConnectionManager,
    renew: Arc<redis::Script>,
    release: Arc<redis::Script>,
}

impl RedisLocker {
    /// Locks in the Redis at `url` (connected lazily: an unreachable server fails the calls).
    pub fn new(url: &str) -> Result<RedisLocker, LockError> {
        let client = redis::Client::open(url).map_err(|e| LockError(format!("redis URL: {e}")))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_CALL))
            .set_response_timeout(Some(REDIS_CALL))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, cfg)
            .map_err(|e| LockError(format!("redis: {e}")))?;
        Ok(RedisLocker {
            conn,
            renew: Arc::new(redis::Script::new(RENEW)),
            release: Arc::new(redis::Script::new(RELEASE)),
        })
    }

    async fn take(&self, id: &str) -> Result<Option<Held>, LockError> {
        let key = format!("{REDIS_PREFIX}{id}");
        let token = format!("{:032x}", rand::random::<u128>());
        let ttl = u64::try_from(REDIS_TTL.as_millis()).unwrap_or(u64::MAX);
        let mut c = self.conn.clone();
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(&token).arg("NX").arg("PX").arg(ttl);
        let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
        loop {
            let got =
                match tokio::time::timeout(REDIS_CALL, set.query_async::<Option<String>>(&mut c))
                    .await
                {
                    Ok(Ok(v)) => v.is_some(),
                    Ok(Err(e)) => return Err(LockError(format!("upload {id}: redis: {e}"))),
                    Err(_) => return Err(LockError(format!("upload {id}: redis timed out"))),
                };
            if got {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(RELEASE_POLL).await;
        }
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (renew, release) = (self.renew.clone(), self.release.clone());
        let id = id.to_string();
        actix_web::rt::spawn(async move {
            let mut every = tokio::time::interval(REDIS_TTL / 3);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = every.tick() => {
                        let mut inv = renew.prepare_invoke();
                        inv.key(&key).arg(&token).arg(ttl);
                        let r = inv.invoke_async::<i64>(&mut c);
                        match tokio::time::timeout(REDIS_CALL, r).await {
                            Ok(Ok(1)) => {}
                            Ok(Ok(_)) => {
                                tracing::warn!(target: "service", upload = %id, "upload lock lost (expired and taken)");
                                return;
                            }
                            Ok(Err(e)) => tracing::warn!(target: "service", upload = %id, error = %e, "cannot renew the upload lock"),
                            Err(_) => tracing::warn!(target: "service", upload = %id, "renewing the upload lock timed out"),
                        }
                    }
                }
            }
            let mut inv = release.prepare_invoke();
            inv.key(&key).arg(&token);
            let r = inv.invoke_async::<i64>(&mut c);
            match tokio::time::timeout(REDIS_CALL, r).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(target: "service", upload = %id, error = %e, "cannot release the upload lock; it expires by itself")
                }
                Err(_) => {
                    tracing::warn!(target: "service", upload = %id, "releasing the upload lock timed out; it expires by itself")
                }
            }
        });
        Ok(Some(Held::new(move || {
            let _ = stop.send(());
        })))
    }
}

impl Locker for RedisLocker {
    fn try_lock<'a>(&'a self, id: &'a str) -> TryLock<'a> {
        Box::pin(self.take(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn one_holder_at_a_time_per_id() {
        let l = InProcess::default();
        let a = l.try_lock("a").await.unwrap().expect("free");
        assert!(l.try_lock("a").await.unwrap().is_none());
        let b = l.try_lock("b").await.unwrap();
        assert!(b.is_some());
        drop(a);
        assert!(l.try_lock("a").await.unwrap().is_some());
    }
}
