//! MD5 of an upload computed while it streams to the backend, and the client's `ETag` checked at the
//! end: on a mismatch the stream ends with an error instead of its end, so the backend discards the
//! write (nothing is stored, an existing object is untouched).

use archive_core::ByteStream;
use futures::StreamExt;
use md5::{Digest, Md5};
use std::io;
use std::sync::{Arc, Mutex};

/// The MD5 (lower-case hex) of everything the stream yielded, once it has ended.
#[derive(Debug, Clone, Default)]
pub(super) struct Md5Slot(Arc<Mutex<Option<String>>>);

impl Md5Slot {
    /// The digest, if the whole body went through.
    pub(super) fn get(&self) -> Option<String> {
        // No await happens while the lock is held, so a std Mutex is right here.
        self.0.lock().expect("md5 slot poisoned").clone()
    }
}

/// The MD5 (lower-case hex) of a whole stream (data read back to repair a lost record).
pub(super) async fn md5_of_stream(mut stream: ByteStream) -> io::Result<String> {
    let mut hasher = Md5::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk?);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A client `ETag` header as a bare lower-case hex string (quotes removed).
pub(super) fn normalise_etag(raw: &str) -> String {
    raw.trim().trim_matches('"').to_ascii_lowercase()
}

/// Wraps `body`: hashes every chunk; at the end records the digest in the returned slot and, if
/// `expected` is given and differs, yields an error in place of the end of the stream.
pub(super) fn hashing(body: ByteStream, expected: Option<String>) -> (ByteStream, Md5Slot) {
    let slot = Md5Slot::default();
    let out = slot.clone();
    let stream = futures::stream::unfold(
        Some((body, Md5::new(), expected, slot)),
        |state| async move {
            let (mut body, mut hasher, expected, slot) = state?;
            match body.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    Some((Ok(chunk), Some((body, hasher, expected, slot))))
                }
                Some(Err(e)) => Some((Err(e), None)),
                None => {
                    let digest = hex::encode(hasher.finalize());
                    *slot.0.lock().expect("md5 slot poisoned") = Some(digest.clone());
                    match expected {
                        Some(expected) if expected != digest => Some((
                            Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "the body's MD5 is {digest}, the ETag header said {expected}"
                                ),
                            )),
                            None,
                        )),
                        _ => None,
                    }
                }
            }
        },
    )
    .boxed();
    (stream, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn body(parts: &[&'static str]) -> ByteStream {
        let parts: Vec<std::io::Result<Bytes>> = parts
            .iter()
            .map(|p| Ok(Bytes::from_static(p.as_bytes())))
            .collect();
        futures::stream::iter(parts).boxed()
    }

    #[tokio::test]
    async fn digest_and_mismatch() {
        let (s, slot) = hashing(body(&["hel", "lo"]), None);
        let items: Vec<_> = s.collect().await;
        assert!(items.iter().all(Result::is_ok));
        assert_eq!(
            slot.get().as_deref(),
            Some("5d41402abc4b2a76b9719d911017c592")
        );
        let (s, _) = hashing(
            body(&["hello"]),
            Some(normalise_etag("\"5D41402ABC4B2A76B9719D911017C592\"")),
        );
        assert!(s.collect::<Vec<_>>().await.iter().all(Result::is_ok));
        let (s, slot) = hashing(body(&["hello"]), Some("0".repeat(32)));
        let items: Vec<_> = s.collect().await;
        assert!(items.last().unwrap().is_err());
        assert!(slot.get().is_some());
    }
}
