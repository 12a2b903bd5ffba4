//! The configuration file through the real binary: the reference's INI service file named by `-c` or
//! `ARCHIVEINTERFACE_CONFIG` works as it is, and a file that is neither INI nor TOML stops start-up.

mod common;

use common::server::{binary, refuse_to_start, ServerProcess};
use std::process::Command;
use std::time::Duration;

/// The service file of the reference's documentation, with id2filename on and a section of its own.
const REFERENCE_INI: &str = "[posix]
; use id2filename method when accessing a posix endpoint
use_id2filename = true
[hpss]
; IBM HPSS HSM settings
auth = /var/hpss/etc/hpss.unix.keytab
sitename = example.com
user = hpss.unix
[hsm_sideband]
; Oracle HSM Sideband database settings (MySQL)
sam_qfs_prefix = /tmp/path
schema = schema_name
host = host
user = user
password = pass
port = 3306
[site]
; not a section the reference reads
owner = lab
";

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("config.ini");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_start_up_line_with_its_ini_file_works() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write_config(dir.path(), REFERENCE_INI);
    let prefix = dir.path().join("archive");
    let server = ServerProcess::start(&prefix, &["-t", "posix", "-c", &ini]);
    let client = reqwest::Client::new();
    let put = client
        .put(format!("{}/12345", server.url))
        .body("ini")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    // `[posix] use_id2filename = true` took effect: 12345 lives under the id2filename tree.
    assert_eq!(std::fs::read(prefix.join("39/3039")).unwrap(), b"ini");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !server.log_text().contains("[site]") {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning about the unknown section; log:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = server.log_text();
    assert!(log.contains("WARN") && log.contains(&ini), "{log}");
}

#[test]
fn archiveinterface_config_names_the_ini_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write_config(dir.path(), REFERENCE_INI);
    let out = Command::new(binary())
        .args(["--prefix", "/srv/archive", "check-config"])
        .env("ARCHIVEINTERFACE_CONFIG", &ini)
        .env_remove("PAI_BACKEND_TYPE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("use_id2filename = true"), "{text}");
    // The backends to come find their settings where the reference kept them.
    let merged: toml::Table = text.parse().unwrap();
    assert_eq!(merged["hpss"]["sitename"].as_str(), Some("example.com"));
    assert_eq!(merged["hsm_sideband"]["port"].as_integer(), Some(3306));
    assert_eq!(merged["hsm_sideband"]["password"].as_str(), Some("pass"));
}

#[test]
fn a_file_that_is_neither_toml_nor_ini_stops_start_up_naming_both_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "port = 8080\nthis is not a setting\n");
    let err = refuse_to_start(&["-c", &file], &[]);
    assert!(
        err.contains(&file) && err.contains("as TOML: line 2") && err.contains("as INI: line 1"),
        "{err}"
    );
}

#[test]
fn backends_not_available_yet_are_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write_config(dir.path(), REFERENCE_INI);
    // HPSS is available: the reference's file starts it, and without a client library installed
    // start-up stops naming the library.
    let err = refuse_to_start(
        &["-t", "hpss", "-c", &ini],
        &[(
            "ARCHIVEINTERFACE_HLM__QUEUE_URL",
            "sqlite:///nonexistent/queue.db",
        )],
    );
    assert!(err.contains("/opt/hpss/lib/libhpss.so"), "{err}");
    // So is the Oracle HSM sideband backend: its settings are taken from the file, and a prefix that
    // is not there (no SAM-QFS mounted) stops start-up.
    let err = refuse_to_start(&["-t", "hsmsideband", "-c", &ini], &[]);
    assert!(
        err.contains("hsm_sideband") && err.contains("is the SAM-QFS file system mounted"),
        "{err}"
    );
}
