//! `archive-ltfsdm`: LTFS Data Management. File data lives on the LTFS DM-managed file system (the
//! prefix, written through the posix backend); migrate, premigrate, recall and status go through the
//! `ltfsdm` command.

#![warn(missing_docs)]
