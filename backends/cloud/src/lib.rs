//! `archive-cloud`: the cloud tier. Copies files to S3, GCS, Azure or a local directory store
//! (`object_store`), drops the local copy after a set time, and reads remote-only files through.

#![warn(missing_docs)]
