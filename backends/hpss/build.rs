//! Compiles the C glue (`csrc/aihpss_glue.c`) against `hpss_api.h`: the licensed header of the HPSS
//! installation under `HPSS_ROOT` when that is set, else the project's test header, so a build
//! without HPSS needs nothing from it and a site rebuilds the same glue against its own headers.

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=HPSS_ROOT");
    println!("cargo:rerun-if-env-changed=AIHPSS_NO_BATCH");
    let mut build = cc::Build::new();
    build.file("csrc/aihpss_glue.c").include("csrc");
    match std::env::var_os("HPSS_ROOT") {
        Some(root) => {
            let root = std::path::PathBuf::from(root);
            // The defines and the libtirpc include path HPSS's own C clients build with.
            build
                .include(root.join("include"))
                .include("/usr/include/tirpc")
                .define("LINUX", None)
                .define("LITTLEEND", None);
        }
        None => {
            build.include("csrc/test-include");
        }
    }
    if std::env::var_os("AIHPSS_NO_BATCH").is_some_and(|v| v != "0") {
        // Leave out the batch stage glue (its structures' member names are not public).
        build.define("AIHPSS_NO_BATCH", None);
    }
    build.compile("aihpss_glue");
}
