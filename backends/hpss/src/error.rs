//! The backend's precise errors, and how they become `archive_core::Error`: the errno a C call
//! returned decides what a client can act on (missing, exists, full, busy), the rest is a backend
//! error whose message names the call, the path and the codes.

use crate::ffi::LoadError;

/// What went wrong, precisely.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("Could Not Authenticate, error code is:{rc} ({}) User: {user} Auth: {auth}", errno_name(*rc))]
    Login { rc: i32, user: String, auth: String },
    #[error("{call}({path}) failed with {rc} ({}){}", errno_name(*rc), hpss_errno_text(*hpss_errno, *rc))]
    Call {
        call: &'static str,
        path: String,
        rc: i32,
        hpss_errno: i32,
    },
    #[error("The archive core server is slow to respond Latency is: {secs} second(s)")]
    Latency { secs: f64 },
    #[error("Short write for hpss file {path}: {written} of {len} bytes")]
    ShortWrite {
        path: String,
        written: i64,
        len: usize,
    },
    #[error("{path}: {why}")]
    Other { path: String, why: String },
}

fn hpss_errno_text(hpss_errno: i32, rc: i32) -> String {
    if hpss_errno != 0 && hpss_errno != rc {
        format!(", HPSS errno {hpss_errno}")
    } else {
        String::new()
    }
}

/// `-ENOENT` as `ENOENT: No such file or directory`.
fn errno_name(rc: i32) -> String {
    let code = rc.checked_neg().unwrap_or(rc);
    if code <= 0 || code > 4095 {
        return "HPSS-specific code".into();
    }
    std::io::Error::from_raw_os_error(code).to_string()
}

impl Error {
    /// The negative errno of a failed call.
    pub(crate) fn rc(&self) -> Option<i32> {
        match self {
            Error::Call { rc, .. } => Some(*rc),
            _ => None,
        }
    }

    /// Into the public error; `key` names the file for the kinds that carry it.
    pub(crate) fn into_core(self, key: &str) -> archive_core::Error {
        use archive_core::Error as E;
        match self.rc().map(|rc| -rc) {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => E::NotFound { key: key.into() },
            Some(libc::EEXIST) => E::AlreadyExists { key: key.into() },
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => E::InsufficientStorage(self.to_string()),
            Some(libc::ENAMETOOLONG) => E::InvalidArgument(self.to_string()),
            Some(libc::EBUSY)
            | Some(libc::EAGAIN)
            | Some(libc::ETIMEDOUT)
            | Some(libc::ECONNREFUSED) => E::Unavailable {
                message: self.to_string(),
                retry_after: Some(std::time::Duration::from_secs(30)),
            },
            _ => match self {
                Error::Latency { .. } => E::Unavailable {
                    message: self.to_string(),
                    retry_after: Some(std::time::Duration::from_secs(30)),
                },
                other => E::backend("hpss", other),
            },
        }
    }
}
