//! abr origin: serves packages written by `abr package` over HTTP with full Range semantics,
//! conditional requests, caching headers, CORS, signed URLs, limits, graceful shutdown, health,
//! metrics and JSON access logs; and the viewer-state API (playback positions, live viewers,
//! events) on an in-process or Redis [`store`] shared by a cluster.
//!
//! Pure HTTP semantics live in [`range`] and [`conditional`] (table-tested and fuzzed) apart from
//! the server ([`server`], [`routes`]).

pub mod api;
pub mod auth;
pub mod body;
pub mod compress;
pub mod conditional;
pub mod config;
pub mod cors;
pub mod error;
pub mod files;
pub mod head_deadline;
pub mod limits;
pub mod listen;
pub mod monitor;
pub mod range;
pub mod routes;
pub mod sendfile;
pub mod server;
pub mod session;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;

pub use config::Config;
pub use error::OriginError;
pub use server::run;
