//! Test support: the HPSS test double (a libhpss.so built by `double/build.sh`) and a backend
//! logged in through it. The double's state directory is per process (`HPSS_DOUBLE_DIR`).

#![allow(dead_code)]

use archive_hpss::HpssConfig;
use std::path::PathBuf;
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
        let dir = tempfile::tempdir().expect("tempdir").keep();
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
