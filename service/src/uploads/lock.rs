//! One writer per upload: a PATCH (or DELETE) holds its upload's lock while it runs; a second
//! one gets 423 Locked. Behind [`Locker`] so a cluster can share the lock (e.g. in Redis: a
//! node's PATCHes of one upload may reach different nodes); only the in-process lock exists now.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

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
