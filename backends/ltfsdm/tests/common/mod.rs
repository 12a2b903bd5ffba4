//! The `ltfsdm` test double (`double/ltfsdm`, Python 3) behind a backend for the tests: its state in a
//! directory of the test's own, reached through `command_prefix = ["env", "LTFSDM_DOUBLE_STATE=..."]`
//! (the same argv prefix mechanism a real installation uses for `sudo -n`).
#![allow(dead_code, unreachable_pub)]

use archive_ltfsdm::{LtfsdmBackend, LtfsdmConfig};
use std::path::{Path, PathBuf};

/// The double's path; fails loudly when it or Python 3 is missing.
pub fn double() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("double/ltfsdm");
    assert!(
        path.is_file(),
        "the ltfsdm test double is missing at {}",
        path.display()
    );
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output();
    assert!(
        python.is_ok_and(|o| o.status.success()),
        "python3 is needed to run the ltfsdm test double ({}): apt-get install python3",
        path.display()
    );
    path
}

/// A backend over a fresh prefix with the double; `tweak` adjusts the configuration.
pub struct Setup {
    pub backend: LtfsdmBackend,
    pub prefix: PathBuf,
    pub state: PathBuf,
    pub lists: PathBuf,
    pub scratch: PathBuf,
    pub dir: tempfile::TempDir,
}

pub fn config_for(state: &Path, lists: &Path) -> LtfsdmConfig {
    LtfsdmConfig {
        binary: double(),
        pools: vec!["pool1".into()],
        command_prefix: vec![
            "env".into(),
            format!("LTFSDM_DOUBLE_STATE={}", state.display()),
        ],
        timeout_secs: 60,
        batch_files: 1000,
        recall_to_resident: false,
        drives: 2,
        list_dir: Some(lists.to_path_buf()),
    }
}

pub fn setup(tweak: impl FnOnce(&mut LtfsdmConfig)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, state, lists, scratch) = (
        dir.path().join("managed fs"),
        dir.path().join("double-state"),
        dir.path().join("lists"),
        dir.path().join("scratch"),
    );
    for d in [&state, &lists, &scratch] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut config = config_for(&state, &lists);
    tweak(&mut config);
    let backend = LtfsdmBackend::open(prefix.clone(), config).expect("open the ltfsdm backend");
    Setup {
        backend,
        prefix,
        state,
        lists,
        scratch,
        dir,
    }
}

impl Setup {
    /// Writes the double's `config.json` (pools, unreachable, slow_secs, fail, tape_rules).
    pub fn double_config(&self, json: serde_json::Value) {
        std::fs::write(self.state.join("config.json"), json.to_string()).unwrap();
    }

    /// Every call the double received: (argv, files).
    pub fn calls(&self) -> Vec<(Vec<String>, Vec<String>)> {
        calls_in(&self.state)
    }
}

pub fn calls_in(state: &Path) -> Vec<(Vec<String>, Vec<String>)> {
    std::fs::read_to_string(state.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let strings = |k: &str| -> Vec<String> {
                v[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect()
            };
            (strings("argv"), strings("files"))
        })
        .collect()
}
