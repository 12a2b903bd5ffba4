//! Test support: the HPSS test double (a libhpss.so built by `double/build.sh`) and a backend
//! logged in through it. The double's state directory is per process (`HPSS_DOUBLE_DIR`).

#![allow(dead_code)]

use archive_hpss::HpssConfig;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The built double, or a panic saying how to build it.
pub(crate) fn double_library(variant: &str) -> PathBuf {
    let dir = std::env::var_os("HPSS_DOUBLE_LIB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/hpss-double")
        });
    let lib = dir.join(variant);
    assert!(
        lib.is_file(),
        "the HPSS test double {} is missing: build it with backends/hpss/double/build.sh \
         (scripts/test.sh does), or point HPSS_DOUBLE_LIB_DIR at where it was built",
        lib.display()
    );
    lib
}

/// This process's double state directory (set once, before the library is first loaded).
pub(crate) fn double_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // One directory per test process under the system's temporary directory; those of test
        // processes that are gone are removed here, so runs do not pile them up.
        let parent = std::env::temp_dir().join("archive-hpss-double-tests");
        std::fs::create_dir_all(&parent).unwrap();
        for entry in std::fs::read_dir(&parent).unwrap().flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !Path::new("/proc").join(&pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = parent.join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("keytab"), b"test keytab").unwrap();
        std::env::set_var("HPSS_DOUBLE_DIR", &dir);
        dir
    })
    .clone()
}

/// `[hpss]` for the double.
pub(crate) fn double_config(variant: &str) -> HpssConfig {
    let dir = double_dir();
    HpssConfig {
        library: double_library(variant),
        user: "hpss.unix".into(),
        auth: dir.join("keytab"),
        sitename: "test.site".into(),
        stage_poll_ms: 20,
        ..HpssConfig::default()
    }
}
