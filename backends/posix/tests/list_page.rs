//! `list_page` walks the tree in key order: its pages are the slices of `list` (with names that sort
//! around `/`, nested directories, prefixes, `after` inside and between subtrees), and paging with the
//! last key of each page visits every key once.

use archive_core::conformance::body_of;
use archive_core::{ArchiveBackend, Key, PutOptions};
use archive_posix::PosixBackend;

const KEYS: &[&str] = &[
    "a", "a-b", "a.b", "ab/c", "ab/c.d", "ab/c0", "ab/c/d", "ab/c/e/f", "ab0", "b/x/y/z", "b/x0",
    "c",
];

async fn archive() -> (tempfile::TempDir, PosixBackend) {
    let dir = tempfile::tempdir().unwrap();
    let b = PosixBackend::new(dir.path().join("archive")).unwrap();
    for key in KEYS {
        // "ab/c" and "ab/c/d" cannot both be files: skip the file that would be a directory.
        if KEYS.iter().any(|k| k.starts_with(&format!("{key}/"))) {
            continue;
        }
        b.put(
            &Key::new(*key).unwrap(),
            body_of(vec![key.as_bytes().to_vec()]),
            PutOptions::default(),
        )
        .await
        .unwrap();
    }
    (dir, b)
}

fn keys(entries: &[archive_core::ListEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.key.as_str()).collect()
}

#[tokio::test]
async fn pages_are_slices_of_the_sorted_listing() {
    let (_dir, b) = archive().await;
    for prefix in ["", "a", "ab", "ab/", "ab/c", "b/", "b/x", "zz"] {
        let all = b.list(prefix).await.unwrap();
        let mut afters: Vec<Option<&str>> =
            vec![None, Some(""), Some("ab/"), Some("ab/c/"), Some("b")];
        afters.extend(KEYS.iter().map(|k| Some(*k)));
        for after in afters {
            let expected: Vec<&str> = keys(&all)
                .into_iter()
                .filter(|k| after.is_none_or(|a| *k > a))
                .collect();
            for limit in [0, 1, 2, 3, 100] {
                let page = b.list_page(prefix, after, limit).await.unwrap();
                let want: Vec<&str> = expected.iter().copied().take(limit).collect();
                assert_eq!(
                    keys(&page),
                    want,
                    "prefix {prefix:?} after {after:?} limit {limit}"
                );
                for entry in &page {
                    assert_eq!(entry.size, entry.key.as_str().len() as u64);
                }
            }
        }
    }
}

#[tokio::test]
async fn paging_with_the_last_key_visits_every_key_once() {
    let (_dir, b) = archive().await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = b.list_page("", after.as_deref(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.key.as_str().to_string());
        seen.extend(page.iter().map(|e| e.key.as_str().to_string()));
    }
    let all: Vec<String> = keys(&b.list("").await.unwrap())
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(seen, all);
    assert!(seen.iter().any(|k| k == "a.b") && seen.iter().any(|k| k == "ab/c/e/f"));
}
