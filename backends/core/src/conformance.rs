//! The conformance suite every backend runs against itself: the contracts of [`ArchiveBackend`] written
//! down as checks. A backend crate runs it with
//! `archive_core::conformance_tests!(async_fn_returning_a_Fixture);`.
//!
//! The suite sees the backend's raw storage too ([`Fixture::raw_files`]): a failed operation must leave
//! it exactly as it was, so a leaked temporary file or a half-written one fails the suite even where
//! the backend's own listing hides it. Failures are injected after more data than any internal buffer
//! holds has been written ([`CUT_AFTER`]).

use crate::{ArchiveBackend, ByteStream, Error, HsmState, Key, PutOptions, ReadRange};
use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lists every file a backend keeps in its storage: data, partial and hidden files, journals,
/// metadata records; whatever a failed operation could leave behind. Blocking.
pub type RawFiles = Arc<dyn Fn() -> BTreeSet<String> + Send + Sync>;

/// A fresh, empty backend for one check, with a scratch directory outside it (for `adopt` sources) and
/// whatever must stay alive while the check runs (temporary directories, servers).
pub struct Fixture {
    /// The backend under test; empty.
    pub backend: Arc<dyn ArchiveBackend>,
    /// A writable directory outside the backend, on the same filesystem when that matters.
    pub scratch: PathBuf,
    /// The raw storage under the backend (for file-system backends: [`files_under`] its directories).
    pub raw_files: RawFiles,
    /// Dropped after the check.
    pub guard: Box<dyn std::any::Any + Send>,
}

/// [`RawFiles`] of backends that keep everything in directories: every entry that is not a directory
/// (hidden ones included) below `dirs`, as full paths.
pub fn files_under(dirs: Vec<PathBuf>) -> RawFiles {
    Arc::new(move || {
        let mut out = BTreeSet::new();
        let mut stack = dirs.clone();
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                match entry.file_type() {
                    Ok(t) if t.is_dir() => stack.push(entry.path()),
                    _ => {
                        out.insert(entry.path().display().to_string());
                    }
                }
            }
        }
        out
    })
}

/// Bytes a failing upload delivers before it fails: more than any backend buffers in memory, so the
/// backend has written to its storage by then.
pub const CUT_AFTER: usize = 9 * 1024 * 1024;

async fn raw(f: &Fixture) -> BTreeSet<String> {
    let list = Arc::clone(&f.raw_files);
    tokio::task::spawn_blocking(move || list())
        .await
        .expect("raw listing")
}

/// Asserts that the raw storage is back to `before` after a failed operation.
async fn assert_raw_unchanged(f: &Fixture, before: &BTreeSet<String>, after_what: &str) {
    let after = raw(f).await;
    let left: Vec<_> = after.difference(before).collect();
    let lost: Vec<_> = before.difference(&after).collect();
    assert!(
        left.is_empty() && lost.is_empty(),
        "{after_what}: raw storage changed; left behind {left:?}, lost {lost:?}"
    );
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("backend", &self.backend)
            .field("scratch", &self.scratch)
            .finish_non_exhaustive()
    }
}

/// Generates one `#[tokio::test]` per conformance check; `$make` is an async fn returning a [`Fixture`].
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make;
            round_trip, empty_file, large_multi_chunk_file, mtime_is_recorded, write_once,
            overwrite_when_asked, failed_body_leaves_nothing, length_mismatch_leaves_nothing,
            concurrent_puts_have_one_winner, longest_file_name, ranges, missing_keys_are_not_found, delete_removes,
            stage_accepts_existing_files, adopt_moves_a_file_in, adopt_refuses_an_existing_key,
            list_is_sorted_and_complete, status_many_reports_per_key, nested_keys);
    };
    (@each $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $make().await;
                $crate::conformance::$case(&fixture).await;
            }
        )*
    };
}

fn key(s: &str) -> Key {
    Key::new(s).expect("valid test key")
}

/// A body made of the given chunks.
pub fn body_of(chunks: Vec<Vec<u8>>) -> ByteStream {
    stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c)))).boxed()
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[2] ^ seed)
        .collect()
}

async fn read_all(backend: &dyn ArchiveBackend, k: &Key, range: ReadRange) -> Vec<u8> {
    let got = backend.get(k, range).await.expect("get");
    let chunks: Vec<Bytes> = got.stream.try_collect().await.expect("read stream");
    chunks.concat()
}

async fn put(backend: &dyn ArchiveBackend, k: &Key, data: &[u8]) {
    let out = backend
        .put(k, body_of(vec![data.to_vec()]), PutOptions::default())
        .await
        .expect("put");
    assert_eq!(out.bytes, data.len() as u64);
}

/// Put then get returns the same bytes; status reports size and a resident or premigrated state.
pub async fn round_trip(f: &Fixture) {
    let b = &*f.backend;
    let k = key("1234");
    put(b, &k, b"Writing content for first file").await;
    assert_eq!(
        read_all(b, &k, ReadRange::All).await,
        b"Writing content for first file"
    );
    let st = b.status(&k).await.expect("status");
    assert_eq!(st.size, 30);
    assert_eq!(st.media(), "disk");
    assert!(matches!(
        st.state,
        HsmState::Resident | HsmState::Premigrated
    ));
    assert!(!st.location.is_empty());
}

/// A zero-byte file is a file.
pub async fn empty_file(f: &Fixture) {
    let b = &*f.backend;
    let k = key("empty");
    put(b, &k, b"").await;
    assert_eq!(b.status(&k).await.unwrap().size, 0);
    assert!(read_all(b, &k, ReadRange::All).await.is_empty());
}

/// A body of many chunks (5 MiB + 17 bytes in uneven pieces) arrives intact.
pub async fn large_multi_chunk_file(f: &Fixture) {
    let b = &*f.backend;
    let k = key("large");
    let data = pattern(5 * 1024 * 1024 + 17, 7);
    let chunks: Vec<Vec<u8>> = data.chunks(65_537).map(|c| c.to_vec()).collect();
    let out = b
        .put(
            &k,
            body_of(chunks),
            PutOptions {
                expected_len: Some(data.len() as u64),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out.bytes, data.len() as u64);
    assert!(
        read_all(b, &k, ReadRange::All).await == data,
        "content differs"
    );
}

/// `PutOptions::mtime` becomes the file's modification time.
pub async fn mtime_is_recorded(f: &Fixture) {
    let b = &*f.backend;
    let k = key("dated");
    let when = UNIX_EPOCH + Duration::from_secs(784_111_777);
    b.put(
        &k,
        body_of(vec![b"x".to_vec()]),
        PutOptions {
            mtime: Some(when),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(b.status(&k).await.unwrap().mtime, when);
}

/// A second put of a key fails with `AlreadyExists` and leaves the first content untouched.
pub async fn write_once(f: &Fixture) {
    let b = &*f.backend;
    let k = key("1239");
    put(b, &k, b"first").await;
    let err = b
        .put(
            &k,
            body_of(vec![b"second!".to_vec()]),
            PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(read_all(b, &k, ReadRange::All).await, b"first");
}

/// With `overwrite`, a put replaces the content.
pub async fn overwrite_when_asked(f: &Fixture) {
    let b = &*f.backend;
    let k = key("again");
    put(b, &k, b"first").await;
    b.put(
        &k,
        body_of(vec![b"second!".to_vec()]),
        PutOptions {
            overwrite: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(read_all(b, &k, ReadRange::All).await, b"second!");
}

/// A body that delivers [`CUT_AFTER`] bytes, waits until the backend has written something to its
/// raw storage (at most 30 s: a backend may buffer), then fails as a vanished client does.
fn cut_body(f: &Fixture, before: BTreeSet<String>) -> ByteStream {
    let list = Arc::clone(&f.raw_files);
    let data = stream::iter(
        (0..CUT_AFTER / (1 << 20)).map(|i| Ok(Bytes::from(pattern(1 << 20, i as u8)))),
    );
    let failure = stream::once(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            let list = Arc::clone(&list);
            if tokio::task::spawn_blocking(move || list())
                .await
                .expect("raw listing")
                != before
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "client went away",
        ))
    });
    data.chain(failure).boxed()
}

/// A body that fails part-way, after data reached the storage, stores nothing, leaves nothing in the
/// raw storage, and does not touch an existing file.
pub async fn failed_body_leaves_nothing(f: &Fixture) {
    let b = &*f.backend;
    let k = key("cut");
    let before = raw(f).await;
    assert!(b
        .put(&k, cut_body(f, before.clone()), PutOptions::default())
        .await
        .is_err());
    assert!(matches!(b.status(&k).await, Err(Error::NotFound { .. })));
    assert!(b.list("").await.unwrap().is_empty(), "debris left behind");
    assert_raw_unchanged(f, &before, "a cut-off upload").await;
    put(b, &k, b"kept").await;
    let before = raw(f).await;
    let res = b
        .put(
            &k,
            cut_body(f, before.clone()),
            PutOptions {
                overwrite: true,
                ..Default::default()
            },
        )
        .await;
    assert!(res.is_err());
    assert_eq!(read_all(b, &k, ReadRange::All).await, b"kept");
    assert_eq!(b.list("").await.unwrap().len(), 1, "debris left behind");
    assert_raw_unchanged(f, &before, "a cut-off overwrite").await;
}

/// A body shorter or longer than `expected_len` is refused with `InvalidArgument` and stores nothing,
/// for small bodies and for bodies larger than any buffer (found out after data was written).
pub async fn length_mismatch_leaves_nothing(f: &Fixture) {
    let b = &*f.backend;
    let k = key("short");
    let before = raw(f).await;
    for (len, expected) in [
        (10, 11),
        (10, 9),
        (CUT_AFTER, CUT_AFTER as u64 + 1),
        (CUT_AFTER, CUT_AFTER as u64 - 1),
    ] {
        let chunks = pattern(len, 9)
            .chunks(1 << 20)
            .map(|c| c.to_vec())
            .collect();
        let err = b
            .put(
                &k,
                body_of(chunks),
                PutOptions {
                    expected_len: Some(expected),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(matches!(b.status(&k).await, Err(Error::NotFound { .. })));
        assert_raw_unchanged(
            f,
            &before,
            &format!("{len} bytes sent, {expected} announced"),
        )
        .await;
    }
    assert!(b.list("").await.unwrap().is_empty(), "debris left behind");
}

/// A key whose last segment has 255 bytes (the longest name a file system takes) stores and reads:
/// the backend's temporary names must not be longer than the names it stores.
pub async fn longest_file_name(f: &Fixture) {
    let b = &*f.backend;
    let k = key(&format!("dir/{}", "n".repeat(255)));
    let data = pattern(2 * 1024 * 1024 + 3, 5);
    put(b, &k, &data).await;
    assert!(
        read_all(b, &k, ReadRange::All).await == data,
        "content differs"
    );
    assert_eq!(b.list("dir/").await.unwrap().len(), 1);
}

/// Eight concurrent puts of one key: exactly one wins, the rest get `AlreadyExists`, content is whole;
/// once the winner is deleted, the raw storage holds nothing more than before (no loser's debris).
pub async fn concurrent_puts_have_one_winner(f: &Fixture) {
    let k = key("race");
    let before = raw(f).await;
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let backend = Arc::clone(&f.backend);
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            let data = vec![i; 256 * 1024];
            let chunks = data.chunks(8192).map(|c| c.to_vec()).collect();
            backend
                .put(&k, body_of(chunks), PutOptions::default())
                .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(wins, 1);
    let data = read_all(&*f.backend, &k, ReadRange::All).await;
    assert_eq!(data.len(), 256 * 1024);
    assert!(data.iter().all(|&x| x == data[0]), "mixed content");
    f.backend.delete(&k).await.expect("delete the winner");
    assert_raw_unchanged(f, &before, "a race of puts, then a delete").await;
}

/// Ranges are served exactly and clamped to the file.
pub async fn ranges(f: &Fixture) {
    let b = &*f.backend;
    let k = key("abc");
    put(b, &k, b"xyz").await;
    let from = |start, end| ReadRange::From { start, end };
    assert_eq!(read_all(b, &k, from(1, Some(3))).await, b"yz");
    assert_eq!(read_all(b, &k, from(0, Some(100))).await, b"xyz");
    assert_eq!(read_all(b, &k, from(2, Some(1))).await, b"");
    assert_eq!(read_all(b, &k, ReadRange::Last(2)).await, b"yz");
    let big = key("big");
    let data = pattern(3 * 1024 * 1024 + 5, 3);
    put(b, &big, &data).await;
    let got = b.get(&big, from(1_048_576, Some(2_097_153))).await.unwrap();
    assert_eq!(got.range, 1_048_576..2_097_153);
    assert_eq!(got.status.size, data.len() as u64);
    let chunks: Vec<Bytes> = got.stream.try_collect().await.unwrap();
    assert!(chunks.concat() == data[1_048_576..2_097_153]);
}

/// Every per-file operation on a missing key says `NotFound` and changes nothing in the raw storage.
pub async fn missing_keys_are_not_found(f: &Fixture) {
    let b = &*f.backend;
    let k = key("99999");
    let before = raw(f).await;
    assert!(matches!(
        b.get(&k, ReadRange::All).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(b.status(&k).await, Err(Error::NotFound { .. })));
    assert!(matches!(b.stage(&k).await, Err(Error::NotFound { .. })));
    assert!(matches!(b.delete(&k).await, Err(Error::NotFound { .. })));
    let adopt = b.adopt(&k, &f.scratch.join("does-not-exist"), false).await;
    assert!(matches!(adopt, Err(Error::NotFound { .. })), "{adopt:?}");
    assert_raw_unchanged(f, &before, "operations on a missing key").await;
}

/// Delete removes the file; the key can be written again.
pub async fn delete_removes(f: &Fixture) {
    let b = &*f.backend;
    let k = key("1238");
    put(b, &k, b"bye").await;
    b.delete(&k).await.unwrap();
    assert!(matches!(b.status(&k).await, Err(Error::NotFound { .. })));
    put(b, &k, b"again").await;
}

/// Stage of an existing file is accepted.
pub async fn stage_accepts_existing_files(f: &Fixture) {
    let b = &*f.backend;
    let k = key("1236");
    put(b, &k, b"stage me").await;
    b.stage(&k).await.unwrap();
    assert_eq!(read_all(b, &k, ReadRange::All).await, b"stage me");
}

/// `adopt` moves a server-side file in under the key; the source is gone afterwards.
pub async fn adopt_moves_a_file_in(f: &Fixture) {
    let b = &*f.backend;
    let src = f.scratch.join("incoming.dat");
    std::fs::write(&src, b"moved in").unwrap();
    let k = key("15/cd/5b/75bcd15");
    b.adopt(&k, &src, false).await.unwrap();
    assert!(!src.exists(), "source still there");
    assert_eq!(read_all(b, &k, ReadRange::All).await, b"moved in");
}

/// `adopt` onto an existing key is refused without `overwrite` and leaves both files (and the raw
/// storage) alone.
pub async fn adopt_refuses_an_existing_key(f: &Fixture) {
    let b = &*f.backend;
    let k = key("taken");
    put(b, &k, b"original").await;
    let src = f.scratch.join("other.dat");
    std::fs::write(&src, b"intruder").unwrap();
    let before = raw(f).await;
    let err = b.adopt(&k, &src, false).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert!(src.exists());
    assert_eq!(read_all(b, &k, ReadRange::All).await, b"original");
    assert_raw_unchanged(f, &before, "a refused adopt").await;
}

/// `list` returns every stored key under a prefix, sorted, with sizes.
pub async fn list_is_sorted_and_complete(f: &Fixture) {
    let b = &*f.backend;
    for name in ["c/2", "a", "c/1", "b/x/y", "cc"] {
        put(b, &key(name), name.as_bytes()).await;
    }
    let all: Vec<String> = b
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(all, ["a", "b/x/y", "c/1", "c/2", "cc"]);
    let under_c = b.list("c/").await.unwrap();
    assert_eq!(
        under_c.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["c/1", "c/2"]
    );
    assert_eq!(under_c[0].size, 3);
    let c_prefix: Vec<String> = b
        .list("c")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(c_prefix, ["c/1", "c/2", "cc"]);
    assert!(b.list("zzz").await.unwrap().is_empty());
}

/// `status_many` answers for every key, failing only the missing ones.
pub async fn status_many_reports_per_key(f: &Fixture) {
    let b = &*f.backend;
    put(b, &key("one"), b"1").await;
    put(b, &key("two"), b"22").await;
    let keys = [key("one"), key("missing"), key("two")];
    let out = b.status_many(&keys).await;
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].1.as_ref().unwrap().size, 1);
    assert!(matches!(out[1].1, Err(Error::NotFound { .. })));
    assert_eq!(out[2].1.as_ref().unwrap().size, 2);
}

/// Keys with directories (id2filename paths) work and do not collide with their parents.
pub async fn nested_keys(f: &Fixture) {
    let b = &*f.backend;
    put(b, &key("39/3039"), b"12345").await;
    put(b, &key("file.0"), b"0").await;
    assert_eq!(read_all(b, &key("39/3039"), ReadRange::All).await, b"12345");
    assert!(matches!(
        b.status(&key("39")).await,
        Err(Error::NotFound { .. })
    ));
    let now = SystemTime::now();
    let st = b.status(&key("39/3039")).await.unwrap();
    assert!(st.mtime <= now + Duration::from_secs(5));
}
