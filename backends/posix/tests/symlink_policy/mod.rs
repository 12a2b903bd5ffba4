//! The symlink policy, checked the same way for both ways of resolving paths: symlinks are never
//! followed inside the archive, whether they lead out of the prefix or stay inside it. Reads, status,
//! stage and delete through one answer `NotFound`; writes (and PATCH sources) through one are refused
//! with `InvalidArgument`; listings neither show nor enter them.

use archive_core::conformance::body_of;
use archive_core::{ArchiveBackend, Error, Key, PutOptions, ReadRange};
use archive_posix::PosixBackend;
use std::os::unix::fs::symlink;
use std::path::Path;

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

async fn put(b: &PosixBackend, k: &str, data: &[u8]) -> archive_core::Result<()> {
    b.put(&key(k), body_of(vec![data.to_vec()]), PutOptions::default())
        .await
        .map(drop)
}

/// Every regular file under `dir`, relative, sorted (what the outside tree must still hold).
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.symlink_metadata().unwrap().is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

pub(crate) async fn check() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    std::fs::write(outside.join("sub/deep"), b"deep").unwrap();
    let b = PosixBackend::new(dir.path().join("archive")).unwrap();
    let root = b.root().to_path_buf();
    put(&b, "real", b"inside").await.unwrap();
    put(&b, "d/kept", b"kept").await.unwrap();
    // File level and directory level, leading out; and one staying inside the prefix.
    symlink(outside.join("secret"), root.join("leak")).unwrap();
    symlink(&outside, root.join("dirlink")).unwrap();
    symlink(&outside, root.join("d/link")).unwrap();
    symlink(root.join("real"), root.join("inner")).unwrap();
    symlink(root.join("d"), root.join("innerdir")).unwrap();

    for k in [
        "leak",
        "dirlink/secret",
        "dirlink/sub/deep",
        "d/link/secret",
        "inner",
        "innerdir/kept",
    ] {
        let not_found = |what: &str, r: Result<(), Error>| {
            assert!(
                matches!(r, Err(Error::NotFound { .. })),
                "{what} {k}: expected NotFound, got {r:?}"
            )
        };
        not_found("get", b.get(&key(k), ReadRange::All).await.map(drop));
        not_found("status", b.status(&key(k)).await.map(drop));
        not_found("stage", b.stage(&key(k)).await);
        not_found("delete", b.delete(&key(k)).await);
    }

    for k in [
        "dirlink/new",
        "dirlink/sub/new",
        "dirlink/x/y/new",
        "d/link/new",
        "innerdir/new",
    ] {
        match put(&b, k, b"written").await {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains("symlink"), "put {k}: {message}")
            }
            other => panic!("put {k}: expected InvalidArgument, got {other:?}"),
        }
    }
    // The link's own name is taken (write-once); nothing is written through it.
    assert!(matches!(
        put(&b, "leak", b"written").await,
        Err(Error::AlreadyExists { .. })
    ));

    let listed = |prefix: &'static str| {
        let b = b.clone();
        async move {
            b.list(prefix)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.key.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("").await, ["d/kept", "real"]);
    assert!(listed("dirlink/").await.is_empty());
    assert!(listed("d/link/").await.is_empty());
    assert!(listed("innerdir/").await.is_empty());
    // Pages walk the tree through the same handles: the same entries, and nothing through a link.
    let paged = |prefix: &'static str, after: Option<&'static str>| {
        let b = b.clone();
        async move {
            b.list_page(prefix, after, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.key.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(paged("", None).await, ["d/kept", "real"]);
    assert_eq!(paged("", Some("d/kept")).await, ["real"]);
    assert!(paged("dirlink/", None).await.is_empty());
    assert!(paged("d/link/", None).await.is_empty());
    assert!(paged("innerdir/", None).await.is_empty());

    // Nothing outside was read into, written, created or removed; the links are still there.
    assert_eq!(files_under(&outside), ["secret", "sub/deep"]);
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
    for link in ["leak", "dirlink", "d/link", "inner", "innerdir"] {
        assert!(root.join(link).symlink_metadata().unwrap().is_symlink());
    }
    // PATCH: neither a source path nor a target key goes through a symlink.
    let incoming = dir.path().join("incoming");
    std::fs::create_dir(&incoming).unwrap();
    symlink(&outside, incoming.join("linkdir")).unwrap();
    std::fs::write(incoming.join("upload"), b"upload").unwrap();
    for (k, source) in [
        ("moved", incoming.join("linkdir/secret")),
        ("dirlink/moved", incoming.join("upload")),
    ] {
        match b.adopt(&key(k), &source, false).await {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains("symlink"), "adopt {k}: {message}")
            }
            other => panic!("adopt {k} from {source:?}: expected InvalidArgument, got {other:?}"),
        }
    }
    assert!(!outside.join("moved").exists());
    b.adopt(&key("d/moved"), &incoming.join("upload"), false)
        .await
        .unwrap();
    assert_eq!(std::fs::read(root.join("d/moved")).unwrap(), b"upload");

    // Real files keep working.
    let got = b.get(&key("d/kept"), ReadRange::All).await.unwrap();
    assert_eq!(got.status.size, 4);
    b.delete(&key("real")).await.unwrap();
}
