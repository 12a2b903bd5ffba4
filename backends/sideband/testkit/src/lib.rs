//! Test support for the Oracle HSM sideband backend, shared by the backend's tests and the server's.
//!
//! - [`database`]: a fresh sideband catalog (the spec's tables) on the MariaDB server, one database per
//!   test with a unique name, dropped afterwards; a test that cannot reach MariaDB fails saying how to
//!   start it.
//! - [`sam`]: writes the catalog the way Oracle HSM's `sam-dbupd` does (directory rows, entries, inodes,
//!   archive copies), for the command double and for tests that set up states by hand.
//! - [`double`]: where the `samqfs-double` executable is (the stand-in for `stage`, `archive` and
//!   `release`) and the argv that configures it.
//! - [`proxy`]: a TCP proxy the test switches, to take the database away in the middle of requests.

pub mod database;
pub mod double;
pub mod proxy;
pub mod sam;
