//! Running the `ltfsdm` client: argv built from the configured prefix and binary (never a shell), the
//! file list written to a private temporary file passed with `-f` and removed afterwards, a timeout per
//! command, and its exit code and output kept for the caller and its error messages.

use crate::error::LtfsdmError;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The message every server command prints, exiting 0, when `ltfsdmd` cannot be reached.
pub(crate) const UNREACHABLE: &str = "Unable to connect to the LTFS Data Management server.";

/// How long `ltfsdm help` may take at start-up (it needs no server: longer means a broken install or
/// a sudo rule waiting for a password).
const START_UP_CHECK_LIMIT: Duration = Duration::from_secs(60);

/// How to start `ltfsdm`.
#[derive(Debug, Clone)]
pub(crate) struct Ltfsdm {
    /// `command_prefix` then the binary: the argv every command starts with.
    head: Vec<OsString>,
    timeout: Duration,
    list_dir: PathBuf,
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub(crate) struct Output {
    /// The command line, for messages.
    pub(crate) command: String,
    /// The exit code; `None` when a signal ended it.
    pub(crate) code: Option<i32>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl Output {
    /// Whether the command said the server is unreachable (whatever its exit code: it is 0).
    pub(crate) fn unreachable(&self) -> bool {
        contains(&self.stdout, UNREACHABLE) || contains(&self.stderr, UNREACHABLE)
    }

    /// The exit code as text (`signal` when there is none).
    pub(crate) fn code_text(&self) -> String {
        self.code
            .map_or_else(|| "none (killed by a signal)".into(), |c| c.to_string())
    }

    /// The last lines of stderr and stdout (the progress table ends stdout; messages go to either),
    /// bounded so that an error stays readable.
    pub(crate) fn excerpt(&self) -> String {
        const MAX: usize = 2000;
        let mut text = String::new();
        for (name, bytes) in [("stderr", &self.stderr), ("stdout", &self.stdout)] {
            let lossy = String::from_utf8_lossy(bytes).replace('\r', "\n");
            let trimmed = lossy.trim();
            if trimmed.is_empty() {
                continue;
            }
            let tail = if trimmed.len() > MAX {
                let mut start = trimmed.len() - MAX;
                while !trimmed.is_char_boundary(start) {
                    start += 1;
                }
                format!("...{}", &trimmed[start..])
            } else {
                trimmed.to_string()
            };
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(&format!("{name}: {tail}"));
        }
        if text.is_empty() {
            "no output".into()
        } else {
            text
        }
    }

    /// The error for a server that could not be reached.
    pub(crate) fn unreachable_error(&self) -> LtfsdmError {
        LtfsdmError::Unreachable {
            command: self.command.clone(),
            output: self.excerpt(),
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

impl Ltfsdm {
    pub(crate) fn new(
        command_prefix: &[String],
        binary: &Path,
        timeout: Duration,
        list_dir: PathBuf,
    ) -> Self {
        let mut head: Vec<OsString> = command_prefix.iter().map(OsString::from).collect();
        head.push(binary.as_os_str().to_owned());
        Ltfsdm {
            head,
            timeout,
            list_dir,
        }
    }

    /// The command line for messages (the file list shown as `-f <list>`).
    pub(crate) fn display(&self, args: &[&str], with_list: bool) -> String {
        let mut parts: Vec<String> = self
            .head
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        parts.extend(args.iter().map(|a| a.to_string()));
        if with_list {
            parts.push("-f <list>".into());
        }
        parts.join(" ")
    }

    /// Runs `ltfsdm <args> [-f <list of paths>]` and waits for it (at most the configured timeout;
    /// then it is killed). Paths must not hold a newline (callers refuse those keys first).
    pub(crate) async fn run(
        &self,
        args: &[&str],
        paths: Option<Vec<PathBuf>>,
    ) -> Result<Output, LtfsdmError> {
        let command = self.display(args, paths.is_some());
        let list = match paths {
            Some(paths) => Some(self.write_list(&command, paths).await?),
            None => None,
        };
        let mut argv = self.head.iter().map(OsString::as_os_str);
        let program = argv.next().expect("the binary is always in the argv");
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(argv).args(args);
        if let Some(list) = &list {
            cmd.arg("-f").arg(list.as_os_str());
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A command abandoned by its caller or its timeout must not run on unobserved.
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| LtfsdmError::Spawn {
            command: command.clone(),
            source,
        })?;
        let started = std::time::Instant::now();
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(source)) => return Err(LtfsdmError::Spawn { command, source }),
            Err(_) => {
                return Err(LtfsdmError::Timeout {
                    command,
                    secs: self.timeout.as_secs(),
                })
            }
        };
        // The list stays until the command has ended: ltfsdm reads it while it runs.
        drop(list);
        tracing::debug!(%command, code = ?output.status.code(), elapsed = ?started.elapsed(), "ltfsdm ran");
        Ok(Output {
            command,
            code: output.status.code(),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }

    /// Writes the paths one per line to a new private file (mode 0600) in the list directory; the
    /// returned handle removes it when dropped.
    async fn write_list(
        &self,
        command: &str,
        paths: Vec<PathBuf>,
    ) -> Result<tempfile::TempPath, LtfsdmError> {
        let dir = self.list_dir.clone();
        let fail = {
            let (command, dir) = (command.to_string(), dir.display().to_string());
            move |source| LtfsdmError::ListFile {
                command,
                dir,
                source,
            }
        };
        let written =
            tokio::task::spawn_blocking(move || -> std::io::Result<tempfile::TempPath> {
                let file = tempfile::Builder::new()
                    .prefix("archiveinterface-ltfsdm-")
                    .suffix(".list")
                    .tempfile_in(&dir)?;
                let mut out = std::io::BufWriter::new(file);
                for path in &paths {
                    debug_assert!(!path.as_os_str().as_bytes().contains(&b'\n'));
                    out.write_all(path.as_os_str().as_bytes())?;
                    out.write_all(b"\n")?;
                }
                let file = out.into_inner().map_err(|e| e.into_error())?;
                Ok(file.into_temp_path())
            })
            .await;
        match written {
            Ok(Ok(path)) => Ok(path),
            Ok(Err(e)) => Err(fail(e)),
            Err(join) => Err(fail(std::io::Error::other(join.to_string()))),
        }
    }

    /// The start-up check: `ltfsdm help` must run and exit 0 (it needs no server). Blocking, bounded
    /// by [`START_UP_CHECK_LIMIT`]; the error names the command and says what it printed.
    pub(crate) fn check_runs(&self) -> Result<(), LtfsdmError> {
        let command = self.display(&["help"], false);
        let mut argv = self.head.iter();
        let program: &OsStr = argv.next().expect("the binary is always in the argv");
        let mut child = std::process::Command::new(program)
            .args(argv)
            .arg("help")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LtfsdmError::Spawn {
                command: command.clone(),
                source,
            })?;
        let deadline = std::time::Instant::now() + START_UP_CHECK_LIMIT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(LtfsdmError::Timeout {
                        command,
                        secs: START_UP_CHECK_LIMIT.as_secs(),
                    });
                }
                Err(source) => return Err(LtfsdmError::Spawn { command, source }),
            }
        };
        if status.success() {
            return Ok(());
        }
        let mut stderr = Vec::new();
        if let Some(mut pipe) = child.stderr.take() {
            use std::io::Read;
            let _ = pipe.read_to_end(&mut stderr);
        }
        let output = Output {
            command: command.clone(),
            code: status.code(),
            stdout: Vec::new(),
            stderr,
        };
        Err(LtfsdmError::Failed {
            command,
            code: output.code_text(),
            output: output.excerpt(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(stdout: &str, stderr: &str) -> Output {
        Output {
            command: "ltfsdm recall -f <list>".into(),
            code: Some(0),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_unreachable_message_counts_on_either_stream_with_its_message_id() {
        let said = format!("LTFSDMC0026E(0070): {UNREACHABLE}\n");
        assert!(output(&said, "").unreachable());
        assert!(output("", &said).unreachable());
        assert!(!output("3 file name(s) sent", "").unreachable());
    }

    #[test]
    fn excerpts_keep_the_end_of_long_output_and_name_the_stream() {
        let long = format!("{}the end", "x".repeat(5000));
        let text = output(&long, "").excerpt();
        assert!(
            text.starts_with("stdout: ...") && text.ends_with("the end"),
            "{text}"
        );
        assert!(text.len() < 2100);
        assert_eq!(output("", "").excerpt(), "no output");
        let progress = output("\r2 file name(s) sent\r--- done ---", "oops").excerpt();
        assert_eq!(
            progress,
            "stderr: oops; stdout: 2 file name(s) sent\n--- done ---"
        );
    }
}
