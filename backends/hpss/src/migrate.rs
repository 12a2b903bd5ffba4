//! Migrate (copy to tape, then purge the disk copy) and premigrate (copy to tape, keep the disk
//! copy) through `hpss_Migrate`, where the file's class of service has a tape level; a disk-only
//! class of service answers "unsupported".

use crate::backend::Inner;
use archive_core::{Key, KeyOutcome};
use std::sync::Arc;

pub(crate) async fn migrate(
    inner: Arc<Inner>,
    keys: &[Key],
    purge_after: bool,
) -> archive_core::Result<Vec<KeyOutcome<()>>> {
    let keys = keys.to_vec();
    inner
        .blocking(move |i| {
            Ok(keys
                .iter()
                .map(|k| {
                    let path = i.path_of(k);
                    let outcome = (|| -> Result<archive_core::Result<()>, crate::error::Error> {
                        i.status_of(&path)?;
                        let x = i.client.xattrs(&path)?;
                        if !crate::status::has_tape_level(&x) {
                            return Ok(Err(archive_core::Error::Unsupported {
                                backend: "hpss",
                                operation: "migration in a class of service without a tape level",
                            }));
                        }
                        let c = crate::client::cstring(&path)?;
                        i.client.check(
                            "hpss_Migrate",
                            &path,
                            i.client.lib.migrate(&c, purge_after).into(),
                        )?;
                        Ok(Ok(()))
                    })();
                    let outcome = match outcome {
                        Ok(r) => r,
                        Err(e) => Err(e.into_core(k.as_str())),
                    };
                    (k.clone(), outcome)
                })
                .collect())
        })
        .await
        .map_err(|e| e.into_core(""))
}
