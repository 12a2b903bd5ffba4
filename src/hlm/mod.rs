//! The `/hlm/v1` side: SwiftHLM API, the persistent request queue and the dispatcher (recalls go
//! through the recall scheduler in [`crate::hsm`]).
//!
//! - [`router`]: the HTTP API (`migrate`, `premigrate`, `recall`, `status`, `requests`, and the bulk
//!   form for Pacifica ids and object lists).
//! - [`queue`]: requests in SQL (SQLite or PostgreSQL) with leases and retries.
//! - [`dispatcher`]: claims requests and executes them against the backend.
//! - [`service`]: the queue handle shared by router and dispatcher.

pub mod dispatcher;
pub mod queue;
pub mod router;
pub mod service;

pub use service::HlmService;
