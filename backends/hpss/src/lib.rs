//! `archive-hpss`: IBM HPSS through its client library, loaded at run time.

#![warn(missing_docs)]
