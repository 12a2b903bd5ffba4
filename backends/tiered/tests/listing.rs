//! Listing on the tiered backend: disk files and migrated files (found in the catalog's ordered index)
//! together, with exact prefix boundaries, and paged with `after` and `limit`.

mod common;

use archive_core::ArchiveBackend;
use common::*;

fn names(entries: &[archive_core::ListEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.key.as_str()).collect()
}

/// Keys around the prefix boundaries of `a/`: `a-b` and `a0` (which sort just before and after `a/`),
/// `a/` children and grandchildren, `0` and `b` outside; about half of them migrated.
async fn archive(dir: &std::path::Path) -> archive_tiered::TieredBackend {
    let b = open(dir, small_library());
    let all = ["0", "a-b", "a/1", "a/2/x", "a/3", "a/4", "a0", "b"];
    for k in all {
        put(&b, k, k.as_bytes()).await;
    }
    let migrated = [key("a-b"), key("a/1"), key("a/3"), key("a0"), key("b")];
    for (k, r) in b.migrate(&migrated).await.unwrap() {
        r.unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    b
}

#[tokio::test]
async fn list_merges_disk_and_tape_within_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let b = archive(dir.path()).await;
    assert_eq!(
        names(&b.list("").await.unwrap()),
        ["0", "a-b", "a/1", "a/2/x", "a/3", "a/4", "a0", "b"]
    );
    assert_eq!(
        names(&b.list("a/").await.unwrap()),
        ["a/1", "a/2/x", "a/3", "a/4"]
    );
    assert_eq!(
        names(&b.list("a").await.unwrap()),
        ["a-b", "a/1", "a/2/x", "a/3", "a/4", "a0"]
    );
    assert_eq!(names(&b.list("a/3").await.unwrap()), ["a/3"]);
    assert!(b.list("c").await.unwrap().is_empty());
    assert!(b.list("a/9").await.unwrap().is_empty());
    // Sizes of migrated files come from the catalog.
    let a1 = b.list("a/1").await.unwrap();
    assert_eq!(a1[0].size, 3);
}

#[tokio::test]
async fn list_page_follows_after_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let b = archive(dir.path()).await;
    let page = |prefix: &'static str, after: Option<&'static str>, limit| {
        let b = b.clone();
        async move { names(&b.list_page(prefix, after, limit).await.unwrap()).join(",") }
    };
    assert_eq!(page("a/", None, 2).await, "a/1,a/2/x");
    assert_eq!(page("a/", Some("a/2/x"), 2).await, "a/3,a/4");
    assert_eq!(page("a/", Some("a/4"), 2).await, "");
    // `after` before the prefix starts at the prefix; `after` past it gives nothing.
    assert_eq!(page("a/", Some("a-b"), 10).await, "a/1,a/2/x,a/3,a/4");
    assert_eq!(page("a/", Some("a0"), 10).await, "");
    assert_eq!(page("", Some("a/4"), 2).await, "a0,b");
    assert_eq!(page("", None, 0).await, "");
    // Paging through everything gives the full listing, once each.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let got = b.list_page("", after.as_deref(), 3).await.unwrap();
        if got.is_empty() {
            break;
        }
        assert!(got.len() <= 3);
        after = Some(got.last().unwrap().key.to_string());
        seen.extend(got.into_iter().map(|e| e.key.to_string()));
    }
    let full: Vec<String> = b
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(seen, full);
}
