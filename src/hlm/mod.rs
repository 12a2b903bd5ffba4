//! The `/hlm/v1` side: SwiftHLM API, the persistent request queue, the dispatcher and the recall
//! scheduler that every recall goes through.
//!
//! - [`router`]: the HTTP API (`migrate`, `premigrate`, `recall`, `status`, `requests`, and the bulk
//!   form for Pacifica ids and object lists).
//! - [`queue`]: requests in SQL (SQLite or PostgreSQL) with leases and retries.
//! - [`dispatcher`]: claims requests and executes them against the backend.
//! - [`recall_scheduler`]: tape-order recalls across requests.
//! - [`service`]: the queue handle shared by router and dispatcher.

pub mod dispatcher;
pub mod queue;
pub mod recall_scheduler;
pub mod router;
pub mod service;

pub use service::HlmService;
