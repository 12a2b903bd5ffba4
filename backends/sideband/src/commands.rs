//! Running the site's `stage`, `archive` and `release` commands: argv lists, no shell, many files
//! per command, in the order given. Their exit status is the one of SAM-QFS's command family: 0 every
//! file succeeded, 1 some failed, 2 usage error. Which files failed is not in the status, so after a 1
//! the files of that command are asked for once more one by one (stage, archive and release are all
//! idempotent), which names the failed ones.

use crate::error::SidebandError;
use std::path::PathBuf;
use std::process::Stdio;

/// Keeps this much of a command's error output for the error message.
const STDERR_KEPT: usize = 4096;

/// One configured command (`stage_command`, ...).
#[derive(Debug, Clone)]
pub(crate) struct HsmCommand {
    argv: Vec<String>,
    files_per_command: usize,
}

/// How one run of a command ended.
enum Run {
    AllDone,
    SomeFailed(SidebandError),
    Failed(SidebandError),
}

impl HsmCommand {
    pub(crate) fn new(argv: Vec<String>, files_per_command: usize) -> Self {
        HsmCommand {
            argv,
            files_per_command,
        }
    }

    /// Runs the command over `files` (in this order, `files_per_command` at a time) and returns
    /// each file's outcome, in the same order.
    pub(crate) async fn run(&self, files: &[PathBuf]) -> Vec<Result<(), SidebandError>> {
        let mut out = Vec::with_capacity(files.len());
        for chunk in files.chunks(self.files_per_command) {
            match self.run_once(chunk).await {
                Run::AllDone => out.extend(chunk.iter().map(|_| Ok(()))),
                Run::Failed(e) => out.extend(chunk.iter().map(|_| Err(e.clone()))),
                Run::SomeFailed(e) if chunk.len() == 1 => out.push(Err(e)),
                Run::SomeFailed(_) => {
                    for file in chunk {
                        out.push(match self.run_once(std::slice::from_ref(file)).await {
                            Run::AllDone => Ok(()),
                            Run::SomeFailed(e) | Run::Failed(e) => Err(e),
                        });
                    }
                }
            }
        }
        out
    }

    async fn run_once(&self, files: &[PathBuf]) -> Run {
        let program = self.argv[0].clone();
        let spawned = tokio::process::Command::new(&program)
            .args(&self.argv[1..])
            .args(files)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await;
        let output = match spawned {
            Ok(output) => output,
            Err(source) => return Run::Failed(SidebandError::Spawn { program, source }),
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = match stderr.char_indices().nth(STDERR_KEPT) {
            Some((cut, _)) => format!("{}...", &stderr[..cut]),
            None => stderr.trim().to_string(),
        };
        let failed = |outcome: String| SidebandError::Command {
            program: program.clone(),
            outcome,
            stderr: stderr.clone(),
        };
        match output.status.code() {
            Some(0) => Run::AllDone,
            Some(1) => Run::SomeFailed(failed(format!(
                "failed for {}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ))),
            Some(2) => Run::Failed(failed("refused its arguments (usage error, exit 2)".into())),
            Some(code) => Run::Failed(failed(format!("exited with status {code}"))),
            None => Run::Failed(failed(format!("was killed ({})", output.status))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> HsmCommand {
        // The script sees the files as "$@".
        HsmCommand::new(
            vec!["sh".into(), "-c".into(), script.into(), "sh".into()],
            2,
        )
    }

    fn files(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    #[tokio::test]
    async fn exit_codes_decide_per_file_outcomes() {
        let all = sh("exit 0").run(&files(&["a", "b", "c"])).await;
        assert!(all.iter().all(Result::is_ok));

        // Exit 1 when "bad" is among the files: only that file fails, found by asking one by one.
        let some = sh("for f in \"$@\"; do [ \"$f\" = bad ] && { echo \"$f: no archive copy\" >&2; exit 1; }; done; exit 0")
            .run(&files(&["a", "bad", "c"]))
            .await;
        assert!(some[0].is_ok() && some[2].is_ok(), "{some:?}");
        let err = some[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("bad: no archive copy"), "{err}");

        let usage = sh("echo 'usage: stage [-w] file' >&2; exit 2")
            .run(&files(&["a"]))
            .await;
        let err = usage[0].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("usage error") && err.contains("usage: stage"),
            "{err}"
        );

        let missing = HsmCommand::new(vec!["/nonexistent/stage".into()], 10)
            .run(&files(&["a"]))
            .await;
        let err = missing[0].as_ref().unwrap_err().to_string();
        assert!(err.contains("can't run `/nonexistent/stage`"), "{err}");
    }

    #[tokio::test]
    async fn files_go_in_order_and_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = format!("echo \"$*\" >> {}", log.display());
        let outcomes = sh(&script).run(&files(&["3", "1", "2", "5", "4"])).await;
        assert_eq!(outcomes.len(), 5);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "3 1\n2 5\n4\n",
            "two files per command, in the order given"
        );
    }
}
