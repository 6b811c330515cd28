//! abr origin: serves packages written by `abr package` over HTTP with full Range semantics,
//! conditional requests, caching headers, CORS, signed URLs, limits, graceful shutdown, health,
//! metrics and JSON access logs. The data plane only: the control plane (viewer state, sessions,
//! the service API) lives in the `service` crate and reaches the origin through an
//! [`extension::Extension`] the binary hands to [`run`]; this crate never imports it.
//!
//! Pure HTTP semantics live in [`range`] and [`conditional`] (table-tested and fuzzed) apart from
//! the server ([`server`], [`routes`]).

pub mod auth;
pub mod body;
pub mod compress;
pub mod conditional;
pub mod config;
pub mod cors;
pub mod error;
pub mod extension;
pub mod files;
pub mod head_deadline;
pub mod limits;
pub mod listen;
pub mod range;
pub mod routes;
pub mod sendfile;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tls;

pub use config::Config;
pub use error::OriginError;
pub use extension::{Extension, SharedLimit};
pub use server::run;
pub use state::State;
