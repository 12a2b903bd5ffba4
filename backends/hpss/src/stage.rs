//! Recall: bring migrated files back to level 0, in the order the recall scheduler gives (grouped
//! per cartridge, in position order). With the batch stage API (HPSS 9.3+) the files go in batches;
//! otherwise each gets an asynchronous stage with a request id derived from its path, checked with
//! `hpss_GetAsyncStatus` first so that a file already staging never gets a second request; a
//! synchronous stage is the last fallback, for a client without asynchronous stages. Runs on the
//! blocking pool: it waits for tape.

use crate::backend::Inner;
use crate::error::Error;
use crate::ffi::{STAGE_DONE, STAGE_UNKNOWN};
use archive_core::{Key, KeyOutcome};
use std::ffi::CString;
use std::time::{Duration, Instant};

/// A file that still has to come back.
struct Pending {
    index: usize,
    path: String,
    cpath: CString,
    size: u64,
    /// Requests submitted for it so far (a stage that ended without the data is tried again).
    submitted: u32,
}

const MAX_SUBMISSIONS: u32 = 3;

/// Deterministic request id of a file's stage: FNV-1a of its path.
fn request_seed(path: &str) -> u64 {
    path.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn recall(inner: &Inner, keys: &[Key]) -> Vec<KeyOutcome<()>> {
    let mut outcomes: Vec<Option<Result<(), Error>>> = keys.iter().map(|_| None).collect();
    let finish = |outcomes: Vec<Option<Result<(), Error>>>| {
        keys.iter()
            .zip(outcomes)
            .map(|(k, o)| {
                let o = o.unwrap_or_else(|| {
                    Err(Error::Other {
                        path: k.to_string(),
                        why: "stage not finished".into(),
                    })
                });
                (k.clone(), o.map_err(|e| e.into_core(k.as_str())))
            })
            .collect()
    };
    if let Err(e) = inner.client.check_latency() {
        // The core server is too slow: no stage is submitted; every key may be retried later.
        let message = e.to_string();
        return keys
            .iter()
            .map(|k| {
                let unavailable = archive_core::Error::Unavailable {
                    message: message.clone(),
                    retry_after: Some(Duration::from_secs(30)),
                };
                (k.clone(), Err(unavailable))
            })
            .collect();
    }
    let mut pending = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let path = inner.path_of(key);
        match inner.on_disk(&path) {
            Ok((true, _)) => outcomes[index] = Some(Ok(())),
            Ok((false, size)) => match crate::client::cstring(&path) {
                Ok(cpath) => pending.push(Pending {
                    index,
                    path,
                    cpath,
                    size,
                    submitted: 0,
                }),
                Err(e) => outcomes[index] = Some(Err(e)),
            },
            Err(e) => outcomes[index] = Some(Err(e)),
        }
    }
    if inner.client.lib.has_batch() {
        for chunk in pending.chunks(inner.config.stage_batch) {
            stage_batch(inner, chunk, &mut outcomes);
        }
    } else {
        stage_async(inner, pending, &mut outcomes);
    }
    finish(outcomes)
}

fn poll_interval(inner: &Inner) -> Duration {
    Duration::from_millis(inner.config.stage_poll_ms)
}

fn deadline(inner: &Inner) -> Instant {
    Instant::now() + Duration::from_secs(inner.config.stage_timeout_secs)
}

fn timed_out(path: &str) -> Error {
    Error::Other {
        path: path.into(),
        why: "the stage did not finish within hpss.stage_timeout_secs".into(),
    }
}

/// One batch stage request for `files`, polled until each file is back (or failed).
fn stage_batch(inner: &Inner, files: &[Pending], outcomes: &mut [Option<Result<(), Error>>]) {
    let client = &inner.client;
    let paths: Vec<&std::ffi::CStr> = files.iter().map(|p| p.cpath.as_c_str()).collect();
    let lengths: Vec<u64> = files.iter().map(|p| p.size).collect();
    let mut rcs = vec![0i32; files.len()];
    let batch = client.lib.batch_submit(&paths, &lengths, &mut rcs);
    let mut open: Vec<usize> = Vec::new();
    for (i, file) in files.iter().enumerate() {
        match client.check("hpss_StageBatchCallBack", &file.path, rcs[i].into()) {
            Ok(_) if batch.is_some() => open.push(i),
            Ok(_) => {}
            Err(e) => outcomes[file.index] = Some(Err(e)),
        }
    }
    let Some(batch) = batch else { return };
    let until = deadline(inner);
    let mut states = vec![0i32; files.len()];
    while !open.is_empty() {
        std::thread::sleep(poll_interval(inner));
        let rc = batch.poll(&mut states);
        if let Err(e) = client.check("hpss_GetBatchAsynchStatus", &files[open[0]].path, rc.into()) {
            let message = e.to_string();
            for &i in &open {
                outcomes[files[i].index] = Some(Err(Error::Other {
                    path: files[i].path.clone(),
                    why: message.clone(),
                }));
            }
            return;
        }
        open.retain(|&i| {
            let file = &files[i];
            let state = states[i];
            if state == STAGE_DONE {
                outcomes[file.index] = Some(confirm(inner, file));
                false
            } else if state < 0 {
                outcomes[file.index] = Some(
                    client
                        .check("hpss_GetBatchAsynchStatus", &file.path, state.into())
                        .map(drop),
                );
                false
            } else if Instant::now() > until {
                outcomes[file.index] = Some(Err(timed_out(&file.path)));
                false
            } else {
                true
            }
        });
    }
}

/// After HPSS says a stage is over: the whole file must be on level 0.
fn confirm(inner: &Inner, file: &Pending) -> Result<(), Error> {
    match inner.on_disk(&file.path)? {
        (true, _) => Ok(()),
        (false, _) => Err(Error::Other {
            path: file.path.clone(),
            why: "the stage ended but the file is not on disk".into(),
        }),
    }
}

/// Asynchronous stages, submitted in order, then polled together.
fn stage_async(inner: &Inner, mut files: Vec<Pending>, outcomes: &mut [Option<Result<(), Error>>]) {
    let client = &inner.client;
    let submit = |file: &mut Pending| -> Result<bool, Error> {
        let seed = request_seed(&file.path);
        let mut state = STAGE_UNKNOWN;
        client.check(
            "hpss_GetAsyncStatus",
            &file.path,
            client
                .lib
                .async_status(&file.cpath, seed, &mut state)
                .into(),
        )?;
        if state != STAGE_UNKNOWN {
            return Ok(true); // already staging under this id: never a second request
        }
        file.submitted += 1;
        let rc = client.lib.stage_async(&file.cpath, seed, file.size);
        if rc == -libc::ENOSYS || rc == -libc::EOPNOTSUPP {
            // A client without asynchronous stages: the last fallback waits here, off the runtime.
            client.check(
                "hpss_Stage",
                &file.path,
                client.lib.stage_sync(&file.cpath, file.size).into(),
            )?;
            return Ok(false);
        }
        client.check("hpss_StageCallBack", &file.path, rc.into())?;
        Ok(true)
    };
    let mut open = Vec::new();
    for mut file in files.drain(..) {
        match submit(&mut file) {
            Ok(true) => open.push(file),
            Ok(false) => outcomes[file.index] = Some(confirm(inner, &file)),
            Err(e) => outcomes[file.index] = Some(Err(e)),
        }
    }
    let until = deadline(inner);
    while !open.is_empty() {
        std::thread::sleep(poll_interval(inner));
        let mut still = Vec::new();
        for mut file in open {
            let seed = request_seed(&file.path);
            let mut state = STAGE_UNKNOWN;
            let rc = client.lib.async_status(&file.cpath, seed, &mut state);
            if let Err(e) = client.check("hpss_GetAsyncStatus", &file.path, rc.into()) {
                outcomes[file.index] = Some(Err(e));
                continue;
            }
            if state != STAGE_UNKNOWN {
                if Instant::now() > until {
                    outcomes[file.index] = Some(Err(timed_out(&file.path)));
                } else {
                    still.push(file);
                }
                continue;
            }
            // No request any more: the stage is over. Back on disk, or submitted again (bounded).
            match inner.on_disk(&file.path) {
                Ok((true, _)) => outcomes[file.index] = Some(Ok(())),
                Ok((false, _)) if file.submitted < MAX_SUBMISSIONS => match submit(&mut file) {
                    Ok(true) => still.push(file),
                    Ok(false) => outcomes[file.index] = Some(confirm(inner, &file)),
                    Err(e) => outcomes[file.index] = Some(Err(e)),
                },
                Ok((false, _)) => outcomes[file.index] = Some(confirm(inner, &file)),
                Err(e) => outcomes[file.index] = Some(Err(e)),
            }
        }
        open = still;
    }
}
