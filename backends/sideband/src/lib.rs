//! `archive-sideband`: Oracle HSM (SAM-QFS). File data lives on the SAM-QFS mount (the prefix, written
//! through the posix backend); status and placement come from the sideband MySQL catalog; stage,
//! archive and release run the site's commands.

#![warn(missing_docs)]
