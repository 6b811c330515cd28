//! abr control plane: the viewer-state API (signed viewer sessions, playback positions, live
//! viewers, playback events) on an in-process or Redis [`store`] shared by a cluster, `abr
//! monitor`, the durable job [`queue`] (embedded SQLite or shared Redis backend), resumable [`uploads`] (tus 1.0)
//! that enqueue a packaging [`jobs::VideoJob`] when complete, the packaging [`worker`]s that run
//! those jobs, and the [`videos`] API over them (state, cancel, retry, delete).
//!
//! It runs inside `abr serve` as an [`origin::Extension`]: routes under `/api/`, and the
//! cluster-wide rate limit of package files when Redis is configured. The origin never imports
//! this crate; the binary wires the two with [`extension`].

pub mod config;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod monitor;
pub mod pages;
pub mod queue;
pub mod session;
pub mod store;
pub mod uploads;
pub mod videos;
pub mod viewer;
pub mod webhooks;
pub mod worker;

use std::sync::Arc;

use actix_web::web;

pub use config::Config;
pub use error::{ServiceError, WorkerError};

/// The routes and the shared rate limit `abr serve` adds to `origin`, with their background
/// tasks started (call on the server's runtime: [`origin::run`] calls its `extend` there).
pub fn extension(
    config: Config,
    origin: &origin::State,
) -> Result<origin::Extension, ServiceError> {
    // With ingest: the uploads and `job_workers` packaging workers on their queue. The pool
    // lives as long as the routes (the configure hook holds it); at exit a running task's lease
    // simply passes and another worker (or this one after a restart) takes it.
    let (uploads, pool) = if config.ingest {
        let u = uploads::Uploads::open(&config, origin)?;
        u.spawn_tasks();
        let pool = worker::spawn_pool(u.queue(), config.job_workers, config.job_settings().1)
            .map_err(|e| {
                ServiceError::Uploads(format!("cannot start the packaging workers: {e}"))
            })?;
        if config.job_workers == 0 {
            tracing::info!(target: "service", "no packaging workers in this process (job_workers = 0): run `abr worker --data-dir` on this data directory");
        } else {
            tracing::info!(target: "service", workers = ?pool.ids(), "packaging workers started");
        }
        // At the server's SIGTERM/SIGINT (it drains meanwhile), running shards are aborted and
        // their attempts failed as "worker stopped", so another worker or the next start takes
        // them at once instead of after the lease.
        let stopper = pool.stopper();
        actix_web::rt::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::warn!(target: "service", "cannot watch signals: packaging workers stop only with the process");
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!(target: "service", "stopping the packaging workers");
            stopper.stop();
        });
        metrics::JobMetrics::new(&origin.metrics)?
            .spawn(u.queue())
            .map_err(|e| ServiceError::Uploads(format!("cannot start the job metrics: {e}")))?;
        let hooks = config
            .webhooks
            .iter()
            .map(|w| webhooks::Endpoint::parse(w))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ServiceError::Config)?;
        let announce_deletions = !hooks.is_empty();
        if announce_deletions {
            webhooks::spawn(u.queue(), &u.data_dir, hooks, config.webhook_attempts).map_err(
                |e| ServiceError::Uploads(format!("cannot start the webhook deliveries: {e}")),
            )?;
        }
        let mut v = videos::Videos::new(u.clone());
        v.announce_deletions = announce_deletions;
        let v = Arc::new(v);
        (
            Some((web::Data::from(u), web::Data::from(v))),
            Some(Arc::new(pool)),
        )
    } else {
        (None, None)
    };
    let viewers = Arc::new(viewer::Viewers::new(config, origin)?);
    viewers.spawn_tasks();
    if let Some((u, _)) = &uploads {
        videos::spawn_job_events(u.clone().into_inner(), viewers.events.clone());
    }
    let shared_limit: Option<Arc<dyn origin::SharedLimit>> = match &viewers.store {
        store::Store::Redis(r) => Some(r.clone()),
        store::Store::Embedded(_) => None,
    };
    let data = web::Data::from(viewers);
    // With ingest, the library page at `/` and its assets.
    let (prefixes, paths) = if uploads.is_some() {
        (vec!["/api/", pages::ASSETS], vec!["/"])
    } else {
        (vec!["/api/"], vec![])
    };
    Ok(origin::Extension {
        prefixes,
        paths,
        configure: Some(Arc::new(move |cfg| {
            let _workers = &pool;
            // The uploads' scope first: it is more specific than the viewer API's `/api/v1`.
            if let Some((u, v)) = &uploads {
                uploads::configure(cfg, u.clone());
                videos::configure(cfg, v.clone());
                pages::configure(cfg);
            }
            viewer::configure(cfg, data.clone())
        })),
        shared_limit,
    })
}
