//! What another crate adds to a running origin, without the origin knowing it: routes under
//! path prefixes it owns, and a rate limit shared with other nodes. The binary builds the
//! [`Extension`] (from the control plane) and hands it to [`crate::server::run`].

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

/// The answer of a [`SharedLimit`]: `Some(Ok)` allowed, `Some(Err(wait))` refused for `wait`,
/// `None` when the shared backend cannot answer (the node's own bucket decides).
pub type Verdict<'a> = Pin<Box<dyn Future<Output = Option<Result<(), Duration>>> + 'a>>;

/// A per-client rate limit shared by every node (e.g. a bucket in Redis).
pub trait SharedLimit: Send + Sync {
    /// One request of `client` against its bucket of `rps` per second with `burst`.
    fn acquire(&self, client: IpAddr, rps: u32, burst: u32) -> Verdict<'_>;
}

/// Registers routes on each worker's App.
pub type Configure = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// Routes and limits another crate adds to the origin.
#[derive(Default, Clone)]
pub struct Extension {
    /// Path prefixes (e.g. `/api/`) whose requests go through the router to [`Self::configure`]'s
    /// routes; every other path that is not an origin route is a package file.
    pub prefixes: Vec<&'static str>,
    /// Exact paths (e.g. `/`) routed to [`Self::configure`]'s routes like the prefixes.
    pub paths: Vec<&'static str>,
    /// Registers the routes under those prefixes and paths (called once per worker).
    pub configure: Option<Configure>,
    /// The cluster's per-client rate limit for package files (else each node's own bucket).
    pub shared_limit: Option<Arc<dyn SharedLimit>>,
}
