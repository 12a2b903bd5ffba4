//! Recall, migrate and premigrate through the site's commands, each confirmed by the catalog: a stage
//! command returns once the stages are queued, and archive and release take effect in the catalog only
//! when it catches up, so every step waits (polling, bounded by `wait_timeout_secs`) until the catalog
//! shows the new state before the file is reported done.

use crate::commands::HsmCommand;
use crate::error::SidebandError;
use crate::observe::Observed;
use crate::SidebandBackend;
use archive_core::{Error, Key, KeyOutcome, Result};
use std::time::Instant;

/// What a step waits for.
#[derive(Debug, Clone, Copy)]
enum Goal {
    /// Online after a stage.
    Online,
    /// A non-stale archive copy after an archive.
    Archived,
    /// Offline after a release (an empty file has no blocks to release and counts as done).
    Released,
}

impl Goal {
    fn reached(self, o: &Observed) -> bool {
        match self {
            Goal::Online => o.online(),
            Goal::Archived => o.copy().is_some(),
            Goal::Released => o.catalogued() && (!o.online() || o.status().size == 0),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Goal::Online => "online after the stage command",
            Goal::Archived => "archived after the archive command",
            Goal::Released => "released after the release command",
        }
    }
}

/// Per-key outcomes being filled in, step by step.
struct Progress<'a> {
    keys: &'a [Key],
    outcomes: Vec<Option<Result<()>>>,
}

impl<'a> Progress<'a> {
    fn new(keys: &'a [Key]) -> Self {
        Progress {
            keys,
            outcomes: keys.iter().map(|_| None).collect(),
        }
    }

    fn finish(self) -> Vec<KeyOutcome<()>> {
        self.keys
            .iter()
            .cloned()
            .zip(self.outcomes)
            .map(|(key, outcome)| (key, outcome.unwrap_or(Ok(()))))
            .collect()
    }
}

impl SidebandBackend {
    /// Stages the migrated files among `keys` with one stage command per batch, in the order given
    /// (the scheduler's tape order), then waits until each is online.
    pub(crate) async fn recall_files(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        let mut progress = Progress::new(keys);
        let observed = self.observe(keys).await.map_err(SidebandError::into_core)?;
        let mut offline = Vec::new();
        for (i, o) in observed.into_iter().enumerate() {
            match o {
                Ok(o) if o.online() => progress.outcomes[i] = Some(Ok(())),
                Ok(o) => offline.push((i, o)),
                Err(e) => progress.outcomes[i] = Some(Err(e)),
            }
        }
        let staged = self.command(&self.stage, offline, &mut progress).await;
        self.wait_for(Goal::Online, staged, &mut progress).await;
        Ok(progress.finish())
    }

    /// Archives the files that have no archive copy yet and waits for their copies; with `release`,
    /// then releases every archived file that is still online and waits until it is offline.
    pub(crate) async fn archive_files(
        &self,
        keys: &[Key],
        release: bool,
    ) -> Result<Vec<KeyOutcome<()>>> {
        let mut progress = Progress::new(keys);
        let observed = self.observe(keys).await.map_err(SidebandError::into_core)?;
        let (mut archived, mut unarchived) = (Vec::new(), Vec::new());
        for (i, o) in observed.into_iter().enumerate() {
            match o {
                Ok(o) if !o.online() => progress.outcomes[i] = Some(Ok(())),
                Ok(o) if o.copy().is_some() => archived.push(i),
                Ok(o) => unarchived.push((i, o)),
                Err(e) => progress.outcomes[i] = Some(Err(e)),
            }
        }
        let commanded = self.command(&self.archive, unarchived, &mut progress).await;
        archived.extend(
            self.wait_for(Goal::Archived, commanded, &mut progress)
                .await,
        );
        if !release {
            return Ok(progress.finish());
        }
        archived.sort_unstable();
        // Observed again: the release is asked only for files still online.
        let again: Vec<Key> = archived.iter().map(|&i| keys[i].clone()).collect();
        let observed = match self.observe(&again).await {
            Ok(observed) => observed,
            Err(e) => {
                let e = e.into_core();
                for &i in &archived {
                    progress.outcomes[i] = Some(Err(copy_error(&e)));
                }
                return Ok(progress.finish());
            }
        };
        let mut to_release = Vec::new();
        for (&i, o) in archived.iter().zip(observed) {
            match o {
                Ok(o) if Goal::Released.reached(&o) => progress.outcomes[i] = Some(Ok(())),
                Ok(o) => to_release.push((i, o)),
                Err(e) => progress.outcomes[i] = Some(Err(e)),
            }
        }
        let released = self.command(&self.release, to_release, &mut progress).await;
        self.wait_for(Goal::Released, released, &mut progress).await;
        Ok(progress.finish())
    }

    /// Runs `command` over the files; records the failures and returns the indices it accepted.
    async fn command(
        &self,
        command: &HsmCommand,
        files: Vec<(usize, Observed)>,
        progress: &mut Progress<'_>,
    ) -> Vec<usize> {
        if files.is_empty() {
            return Vec::new();
        }
        let paths: Vec<_> = files.iter().map(|(_, o)| o.path.clone()).collect();
        let results = command.run(&paths).await;
        let mut accepted = Vec::new();
        for ((i, _), result) in files.into_iter().zip(results) {
            match result {
                Ok(()) => accepted.push(i),
                Err(e) => progress.outcomes[i] = Some(Err(e.into_core())),
            }
        }
        accepted
    }

    /// Polls the catalog until each file reaches `goal`; a file that does not within
    /// `wait_timeout_secs` (or vanishes) is failed. An unreachable catalog only delays the answer.
    /// Returns the indices that reached it.
    async fn wait_for(
        &self,
        goal: Goal,
        mut pending: Vec<usize>,
        progress: &mut Progress<'_>,
    ) -> Vec<usize> {
        let deadline = Instant::now() + self.wait_timeout;
        let mut reached = Vec::new();
        let mut last_catalog_error = None;
        while !pending.is_empty() {
            let keys: Vec<Key> = pending.iter().map(|&i| progress.keys[i].clone()).collect();
            match self.observe(&keys).await {
                Ok(observed) => {
                    let mut still = Vec::new();
                    for (i, o) in pending.iter().copied().zip(observed) {
                        match o {
                            Ok(o) if goal.reached(&o) => reached.push(i),
                            Ok(_) => still.push(i),
                            Err(e) => progress.outcomes[i] = Some(Err(e)),
                        }
                    }
                    pending = still;
                }
                Err(e) => last_catalog_error = Some(e.to_string()),
            }
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for &i in &pending {
                    let mut message = format!(
                        "{} was not {} within {} s",
                        progress.keys[i],
                        goal.describe(),
                        self.wait_timeout.as_secs()
                    );
                    if let Some(e) = &last_catalog_error {
                        message.push_str(&format!(" (last catalog error: {e})"));
                    }
                    progress.outcomes[i] =
                        Some(Err(SidebandError::Inconsistent(message).into_core()));
                }
                break;
            }
            tokio::time::sleep(self.poll_interval).await;
        }
        reached
    }
}

/// The same error again, for each key of a batch that failed as a whole.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Unavailable {
            message,
            retry_after,
        } => Error::Unavailable {
            message: message.clone(),
            retry_after: *retry_after,
        },
        other => Error::backend(crate::error::BACKEND, other.to_string()),
    }
}
