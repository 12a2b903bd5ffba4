//! Copying one local file to a remote store: streamed with bounded memory (one request for files up
//! to a part, multipart above), the expected ETag computed on the way (MD5 of the body, or S3's MD5
//! of the part MD5s with the part count), verified against what the store answers. Nothing is ever
//! visible under the remote key but a whole upload: a failed multipart upload is aborted.
//!
//! A first copy of a file that fits in one request is a conditional create (`If-None-Match: *`): of
//! two instances copying the same file at once, one stores it and the other learns that it lost.

use crate::error::Error;
use crate::remote::{self, MTIME_METADATA};
use crate::store::RemoteStore;
use archive_core::{ArchiveBackend, FileStatus, Key, ReadRange};
use futures::StreamExt;
use md5::{Digest, Md5};
use object_store::{
    Attribute, Attributes, PutMode, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};

/// Parts uploaded at once: memory stays at about this many parts per copy.
const PARTS_IN_FLIGHT: usize = 2;

/// What a copy sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Bytes uploaded.
    pub bytes: u64,
    /// The ETag the body must have on an S3-style store.
    pub expected_e_tag: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Running MD5s of the whole body and of each `part_size` part, for both ETag forms.
struct EtagHasher {
    part_size: usize,
    whole: Md5,
    part: Md5,
    in_part: usize,
    part_digests: Vec<u8>,
    parts: usize,
}

impl EtagHasher {
    fn new(part_size: usize) -> Self {
        EtagHasher {
            part_size,
            whole: Md5::new(),
            part: Md5::new(),
            in_part: 0,
            part_digests: Vec::new(),
            parts: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.whole.update(data);
        while !data.is_empty() {
            let take = (self.part_size - self.in_part).min(data.len());
            self.part.update(&data[..take]);
            self.in_part += take;
            data = &data[take..];
            if self.in_part == self.part_size {
                self.close_part();
            }
        }
    }

    fn close_part(&mut self) {
        let digest = std::mem::replace(&mut self.part, Md5::new()).finalize();
        self.part_digests.extend_from_slice(&digest);
        self.parts += 1;
        self.in_part = 0;
    }

    fn single(self) -> String {
        hex(&self.whole.finalize())
    }

    fn multipart(mut self) -> String {
        if self.in_part > 0 || self.parts == 0 {
            self.close_part();
        }
        format!("{}-{}", hex(&Md5::digest(&self.part_digests)), self.parts)
    }
}

/// Whether `e_tag` has S3's form (hex MD5, optionally `-<parts>`), so that it can be compared.
fn is_s3_style(e_tag: &str) -> bool {
    let (digest, parts) = match e_tag.split_once('-') {
        Some((d, p)) => (d, Some(p)),
        None => (e_tag, None),
    };
    digest.len() == 32
        && digest.bytes().all(|b| b.is_ascii_hexdigit())
        && parts.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Copies `key` (whose status is `status`) from `local` to `store` and verifies the copy.
/// `replace`: an (outdated) object is there already; otherwise the store creates the object only if
/// it is still absent, and `Ok(None)` says another writer created it first.
pub async fn copy_file(
    local: &dyn ArchiveBackend,
    store: &RemoteStore,
    key: &Key,
    status: &FileStatus,
    keeps_metadata: bool,
    replace: bool,
) -> Result<Option<Copied>, Error> {
    let path = store.path_of(key.as_str());
    let mut attributes = Attributes::new();
    if keeps_metadata {
        attributes.insert(
            Attribute::Metadata(MTIME_METADATA.into()),
            remote::mtime_value(status.mtime).into(),
        );
    }
    let changed = || Error::ChangedDuringCopy {
        store: store.name.clone(),
        key: key.to_string(),
    };
    let mut body = match local.get(key, ReadRange::All).await {
        Ok(got) if got.status.size == status.size && got.status.mtime == status.mtime => got.stream,
        Ok(_) => return Err(changed()),
        Err(e) => {
            return Err(Error::LocalRead {
                store: store.name.clone(),
                key: key.to_string(),
                source: std::io::Error::other(e.to_string()),
            })
        }
    };
    let read_error = |source| Error::LocalRead {
        store: store.name.clone(),
        key: key.to_string(),
        source,
    };
    let store_error = remote::error_for(store, "PUT", key.as_str());
    let mut hasher = EtagHasher::new(store.part_size);
    let mut bytes = 0u64;
    let (put, expected) = if status.size <= store.part_size as u64 {
        // At most one part in memory.
        let mut buffer = Vec::with_capacity(status.size as usize);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(read_error)?;
            bytes += chunk.len() as u64;
            if bytes > status.size {
                return Err(changed());
            }
            hasher.update(&chunk);
            buffer.extend_from_slice(&chunk);
        }
        if bytes != status.size {
            return Err(changed());
        }
        let options = PutOptions {
            attributes,
            mode: if replace {
                PutMode::Overwrite
            } else {
                PutMode::Create
            },
            ..PutOptions::default()
        };
        let put = match store
            .store
            .put_opts(&path, PutPayload::from(buffer), options)
            .await
        {
            Ok(put) => put,
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        (put, hasher.single())
    } else {
        let options = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let upload = store
            .store
            .put_multipart_opts(&path, options)
            .await
            .map_err(&store_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, store.part_size);
        let outcome: Result<(), Error> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(read_error)?;
                bytes += chunk.len() as u64;
                if bytes > status.size {
                    return Err(changed());
                }
                hasher.update(&chunk);
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(&store_error)?;
                writer.write(&chunk);
            }
            if bytes != status.size {
                return Err(changed());
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(store = %store.name, %key, error = %abort, "cannot abort a failed multipart upload");
            }
            return Err(e);
        }
        let put = writer.finish().await.map_err(&store_error)?;
        (put, hasher.multipart())
    };
    let verify = |problem: String| Error::Verify {
        store: store.name.clone(),
        key: key.to_string(),
        problem,
    };
    if let Some(answered) = put.e_tag.as_deref().map(|t| t.trim_matches('"')) {
        if is_s3_style(answered) && answered != expected {
            return Err(verify(format!(
                "the store answered ETag {answered}, the data sent has {expected}"
            )));
        }
    }
    match remote::head(store, key.as_str()).await? {
        Some(object) if object.size == bytes => {}
        Some(object) => {
            return Err(verify(format!(
                "{} bytes stored, {bytes} sent",
                object.size
            )))
        }
        None => return Err(verify("the object is missing after its upload".into())),
    }
    Ok(Some(Copied {
        bytes,
        expected_e_tag: expected,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_have_the_s3_forms() {
        let mut h = EtagHasher::new(4);
        h.update(b"abcdefghij");
        assert_eq!(h.single(), hex(&Md5::digest(b"abcdefghij")));
        let mut h = EtagHasher::new(4);
        h.update(b"abc");
        h.update(b"defghij");
        let parts: Vec<u8> = [&b"abcd"[..], b"efgh", b"ij"]
            .iter()
            .flat_map(|p| Md5::digest(p).to_vec())
            .collect();
        assert_eq!(h.multipart(), format!("{}-3", hex(&Md5::digest(&parts))));
        assert!(is_s3_style("0123456789abcdef0123456789abcdef"));
        assert!(is_s3_style("0123456789abcdef0123456789abcdef-12"));
        assert!(!is_s3_style("1a2b-3c"));
        assert!(!is_s3_style("0123456789abcdef0123456789abcdef-"));
    }
}
