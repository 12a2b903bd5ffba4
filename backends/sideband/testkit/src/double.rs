//! Where the `samqfs-double` executable is, and the argv lists that configure the backend's
//! `stage_command`, `archive_command` and `release_command` to run it.

use std::path::{Path, PathBuf};

/// The built `samqfs-double` next to the test executable (`target/<profile>/`). Panics saying how to
/// build it when it is missing.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .map(|deps| {
            if deps.ends_with("deps") {
                deps.parent().unwrap_or(deps)
            } else {
                deps
            }
        })
        .expect("test executable directory");
    let double = dir.join("samqfs-double");
    assert!(
        double.is_file(),
        "the Oracle HSM command double {} is not built: run `cargo build -p archive-sideband-testkit \
         --bin samqfs-double` (scripts/test.sh builds every target first)",
        double.display()
    );
    double
}

/// How the double is told where things are.
#[derive(Debug, Clone)]
pub struct DoubleSetup {
    /// Catalog database URL.
    pub catalog_url: String,
    /// The SAM-QFS mount point the archive directory is under.
    pub mount: PathBuf,
    /// Where archive copies are kept ("the tapes").
    pub tapes: PathBuf,
    /// The file every invocation is recorded in, one line each: the command, then the files.
    pub log: PathBuf,
}

impl DoubleSetup {
    /// `mount`, `tapes` and `log` under `dir`, for the catalog at `catalog_url`.
    pub fn under(dir: &Path, catalog_url: &str) -> DoubleSetup {
        let setup = DoubleSetup {
            catalog_url: catalog_url.to_string(),
            mount: dir.join("mnt"),
            tapes: dir.join("tapes"),
            log: dir.join("commands.log"),
        };
        std::fs::create_dir_all(&setup.mount).unwrap();
        std::fs::create_dir_all(&setup.tapes).unwrap();
        setup
    }

    /// The argv of one command (`stage`, `archive`, `release`, `dbupd`) with extra options
    /// (`--vsn`, `--media`, `--stage-delay-ms`) before it.
    pub fn argv(&self, command: &str, options: &[&str]) -> Vec<String> {
        let mut argv = vec![
            binary().display().to_string(),
            "--db".into(),
            self.catalog_url.clone(),
            "--mount".into(),
            self.mount.display().to_string(),
            "--tapes".into(),
            self.tapes.display().to_string(),
            "--log".into(),
            self.log.display().to_string(),
        ];
        argv.extend(options.iter().map(|o| o.to_string()));
        argv.push(command.into());
        argv
    }

    /// Every recorded invocation: (command, files).
    pub fn invocations(&self) -> Vec<(String, Vec<String>)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let mut parts = line.split('\t').map(str::to_string);
                let command = parts.next().unwrap_or_default();
                (command, parts.collect())
            })
            .collect()
    }

    /// Runs the double once (for setting up states: `dbupd`, `archive --vsn ...`, `release`).
    pub fn run(&self, command: &str, options: &[&str], files: &[PathBuf]) {
        let argv = self.argv(command, options);
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .args(files)
            .output()
            .expect("run samqfs-double");
        assert!(
            out.status.success(),
            "samqfs-double {command} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
