//! abr control plane: the viewer-state API (signed viewer sessions, playback positions, live
//! viewers, playback events) on an in-process or Redis [`store`] shared by a cluster, `abr
//! monitor`, the durable job [`queue`] (embedded SQLite backend), and resumable [`uploads`]
//! (tus 1.0) that enqueue a packaging [`jobs::VideoJob`] when complete, and the [`videos`] API
//! over them (state, cancel, retry, delete).
//!
//! It runs inside `abr serve` as an [`origin::Extension`]: routes under `/api/`, and the
//! cluster-wide rate limit of package files when Redis is configured. The origin never imports
//! this crate; the binary wires the two with [`extension`].

pub mod config;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod monitor;
pub mod queue;
pub mod session;
pub mod store;
pub mod uploads;
pub mod videos;
pub mod viewer;

use std::sync::Arc;

use actix_web::web;

pub use config::Config;
pub use error::ServiceError;

/// The routes and the shared rate limit `abr serve` adds to `origin`, with their background
/// tasks started (call on the server's runtime: [`origin::run`] calls its `extend` there).
pub fn extension(
    config: Config,
    origin: &origin::State,
) -> Result<origin::Extension, ServiceError> {
    let uploads = if config.ingest {
        let u = uploads::Uploads::open(&config, origin)?;
        u.spawn_tasks();
        let v = Arc::new(videos::Videos::new(u.clone()));
        Some((web::Data::from(u), web::Data::from(v)))
    } else {
        None
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
    Ok(origin::Extension {
        prefixes: vec!["/api/"],
        configure: Some(Arc::new(move |cfg| {
            // The uploads' scope first: it is more specific than the viewer API's `/api/v1`.
            if let Some((u, v)) = &uploads {
                uploads::configure(cfg, u.clone());
                videos::configure(cfg, v.clone());
            }
            viewer::configure(cfg, data.clone())
        })),
        shared_limit,
    })
}
