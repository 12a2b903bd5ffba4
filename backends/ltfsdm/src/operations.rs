//! Migrate, premigrate and recall: one `ltfsdm` command per `batch_files` keys, with a per-key
//! outcome. Exit codes as LTFS DM defines them: 0 every file done; 1 some failed; 2 all failed or
//! another error. After anything but a clean 0 (or a timeout) the files' real state is asked of
//! `info files`, so each key is answered by what LTFS DM did, not by what the command said. The
//! unreachable-server message (printed with exit 0) fails every key as unavailable: nothing happened.

use crate::command::Output;
use crate::error::{LtfsdmError, RETRY_AFTER};
use crate::observe::for_each_key;
use crate::{listable, Inner};
use archive_core::{Error, HsmState, Key, KeyOutcome, Result};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// An HSM operation on a list of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Migrate,
    Premigrate,
    Recall,
}

impl Operation {
    /// The verb for messages.
    fn verb(self) -> &'static str {
        match self {
            Operation::Migrate => "migrate",
            Operation::Premigrate => "premigrate",
            Operation::Recall => "recall",
        }
    }

    /// The `ltfsdm` arguments before `-f <list>`.
    fn args(self, inner: &Inner) -> Vec<String> {
        let mut args = Vec::new();
        match self {
            Operation::Migrate | Operation::Premigrate => {
                args.push("migrate".to_string());
                if self == Operation::Premigrate {
                    args.push("-p".into());
                }
                // Without pools, ltfsdm can still stub premigrated files; a resident file then fails
                // with its own message ("at least one tape storage pool needs to be specified").
                if let Some(pools) = inner.config.pool_list() {
                    args.extend(["-P".to_string(), pools]);
                }
            }
            Operation::Recall => {
                args.push("recall".into());
                if inner.config.recall_to_resident {
                    args.push("-r".into());
                }
            }
        }
        args
    }

    /// Whether a file in `state` has what the operation was for.
    fn reached(self, state: HsmState, to_resident: bool) -> bool {
        match self {
            Operation::Migrate => state == HsmState::Migrated,
            Operation::Premigrate => matches!(state, HsmState::Premigrated | HsmState::Migrated),
            Operation::Recall if to_resident => state == HsmState::Resident,
            Operation::Recall => matches!(state, HsmState::Premigrated | HsmState::Resident),
        }
    }
}

impl Inner {
    /// Runs `op` on every key, `batch_files` keys per command; one outcome per key, in order.
    pub(crate) async fn apply(
        self: &Arc<Self>,
        op: Operation,
        keys: &[Key],
    ) -> Vec<KeyOutcome<()>> {
        let mut out = Vec::with_capacity(keys.len());
        for batch in keys.chunks(self.config.batch_files) {
            out.extend(self.apply_batch(op, batch).await);
        }
        out
    }

    async fn apply_batch(self: &Arc<Self>, op: Operation, keys: &[Key]) -> Vec<KeyOutcome<()>> {
        let mut answers: Vec<Option<Result<()>>> = Vec::with_capacity(keys.len());
        let mut asked = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match listable(key) {
                Ok(()) => {
                    asked.push(i);
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e.into_core()))),
            }
        }
        if !asked.is_empty() {
            let args = op.args(self);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let paths = asked.iter().map(|i| self.path_of(&keys[*i])).collect();
            let ran = self.cli.run(&args, Some(paths)).await;
            let check = match ran {
                Ok(output) if output.unreachable() => {
                    let e = output.unreachable_error().into_core();
                    for i in &asked {
                        answers[*i] = Some(Err(for_each_key(&e)));
                    }
                    None
                }
                Ok(output) if output.code == Some(0) => {
                    for i in &asked {
                        answers[*i] = Some(Ok(()));
                    }
                    None
                }
                Ok(output) => Some(Ran::Finished(output)),
                // Stopped, but ltfsdmd may have done some (or all) of the work: ask.
                Err(e @ LtfsdmError::Timeout { .. }) => Some(Ran::TimedOut(e.to_string())),
                Err(e) => {
                    let e = e.into_core();
                    for i in &asked {
                        answers[*i] = Some(Err(for_each_key(&e)));
                    }
                    None
                }
            };
            if let Some(ran) = check {
                let asked_keys: Vec<Key> = asked.iter().map(|i| keys[*i].clone()).collect();
                let observed = self.observe(&asked_keys).await;
                for (i, (key, now)) in asked.into_iter().zip(observed) {
                    answers[i] = Some(self.judge(op, &key, now, &ran));
                }
            }
        }
        keys.iter()
            .cloned()
            .zip(answers.into_iter().map(|a| a.expect("every key answered")))
            .collect()
    }

    /// One key's outcome from its state after a command that did not succeed as a whole.
    fn judge(
        &self,
        op: Operation,
        key: &Key,
        now: Result<crate::observe::Observed>,
        ran: &Ran,
    ) -> Result<()> {
        let observed = now?;
        let state = observed.status.state;
        if op.reached(state, self.config.recall_to_resident) {
            return Ok(());
        }
        let path = self.path_of(key);
        let error = LtfsdmError::NotDone {
            operation: op.verb(),
            path: path.display().to_string(),
            state: state.as_str(),
            ran: format!(
                "`{}` ({}): {}",
                ran.command(),
                ran.outcome(),
                ran.about(path.as_os_str().as_bytes())
            ),
        };
        Err(match ran {
            Ran::TimedOut(_) => Error::Unavailable {
                message: error.to_string(),
                retry_after: Some(RETRY_AFTER),
            },
            Ran::Finished(_) => error.into_core(),
        })
    }
}

/// How a command that needs a per-file check ended.
enum Ran {
    Finished(Output),
    TimedOut(String),
}

impl Ran {
    fn command(&self) -> String {
        match self {
            Ran::Finished(o) => o.command.clone(),
            Ran::TimedOut(_) => "ltfsdm".into(),
        }
    }

    fn outcome(&self) -> String {
        match self {
            Ran::Finished(o) => format!("exit code {}", o.code_text()),
            Ran::TimedOut(why) => why.clone(),
        }
    }

    /// What the command printed about this file (the lines naming it), else the end of its output.
    fn about(&self, path: &[u8]) -> String {
        let Ran::Finished(output) = self else {
            return "no output (stopped)".into();
        };
        let mut lines: Vec<String> = Vec::new();
        for stream in [&output.stderr, &output.stdout] {
            for line in stream.split(|b| *b == b'\n' || *b == b'\r') {
                if line.windows(path.len()).any(|w| w == path) && lines.len() < 3 {
                    lines.push(String::from_utf8_lossy(line).trim().to_string());
                }
            }
        }
        if lines.is_empty() {
            let excerpt = output.excerpt();
            let tail: String = excerpt
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            tail
        } else {
            lines.join("; ")
        }
    }
}
