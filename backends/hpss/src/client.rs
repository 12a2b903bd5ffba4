//! A logged-in HPSS client: the library's calls with paths as strings and results as
//! `Result`, every non-zero return turned into an error naming the call, its code and HPSS's own
//! errno. Blocking, like the calls it makes: the backend runs it on the blocking pool.

use crate::config::HpssConfig;
use crate::error::Error;
use crate::ffi::{HpssLibrary, RawStat, RawXattrs};
use std::ffi::CString;

/// The logged-in client; logs out and resets the client when dropped.
#[derive(Debug)]
pub(crate) struct HpssClient {
    pub(crate) lib: HpssLibrary,
    sitename: CString,
    accept_latency_secs: u64,
}

pub(crate) fn cstring(path: &str) -> Result<CString, Error> {
    CString::new(path).map_err(|_| Error::Other {
        path: path.replace('\0', "\\0"),
        why: "a path must not contain NUL".into(),
    })
}

impl HpssClient {
    /// Loads the library, resolves every entry point and logs in with the keytab (first: anything
    /// else the client does before the login hangs).
    pub(crate) fn connect(config: &HpssConfig) -> Result<Self, Error> {
        let lib = HpssLibrary::load(&config.library)?;
        let auth = config.auth.display().to_string();
        let rc = lib.login(&cstring(&config.user)?, &cstring(&auth)?);
        if rc < 0 {
            return Err(Error::Login {
                rc,
                user: config.user.clone(),
                auth,
            });
        }
        Ok(HpssClient {
            lib,
            sitename: cstring(&config.sitename)?,
            accept_latency_secs: config.accept_latency_secs,
        })
    }

    /// `rc` as a result: negative codes become an error naming `call` and `path`.
    pub(crate) fn check(&self, call: &'static str, path: &str, rc: i64) -> Result<i64, Error> {
        if rc >= 0 {
            return Ok(rc);
        }
        Err(Error::Call {
            call,
            path: path.to_string(),
            rc: i32::try_from(rc).unwrap_or(i32::MIN),
            hpss_errno: self.lib.last_errno(),
        })
    }

    /// The reference's core-server check: ping the site's root core server and refuse when its clock
    /// is further ahead than `accept_latency`.
    pub(crate) fn check_latency(&self) -> Result<(), Error> {
        let mut usecs = 0i64;
        let site = self.sitename.to_string_lossy().into_owned();
        self.check(
            "hpss_LookupRootCS/hpss_PingCore",
            &site,
            self.lib.ping(&self.sitename, &mut usecs).into(),
        )?;
        let secs = usecs as f64 / 1e6;
        if secs > self.accept_latency_secs as f64 {
            return Err(Error::Latency { secs });
        }
        Ok(())
    }

    pub(crate) fn lstat(&self, path: &str) -> Result<RawStat, Error> {
        let mut out = RawStat::default();
        self.check(
            "hpss_Lstat",
            path,
            self.lib.lstat(&cstring(path)?, &mut out).into(),
        )?;
        Ok(out)
    }

    pub(crate) fn xattrs(&self, path: &str) -> Result<RawXattrs, Error> {
        match self.lib.xattrs(&cstring(path)?) {
            Ok(x) => Ok(x),
            Err(rc) => Err(self
                .check("hpss_FileGetXAttributes", path, rc.min(-1).into())
                .expect_err("a negative code is an error")),
        }
    }

    pub(crate) fn open(&self, path: &str, oflag: i32, mode: u32) -> Result<i32, Error> {
        let fd = self.check(
            "hpss_Open",
            path,
            self.lib.open(&cstring(path)?, oflag, mode).into(),
        )?;
        Ok(fd as i32)
    }

    pub(crate) fn close(&self, fd: i32, path: &str) -> Result<(), Error> {
        self.check("hpss_Close", path, self.lib.close(fd).into())
            .map(drop)
    }

    pub(crate) fn read(&self, fd: i32, path: &str, buf: &mut [u8]) -> Result<usize, Error> {
        Ok(self.check("hpss_Read", path, self.lib.read(fd, buf))? as usize)
    }

    /// Writes all of `buf` (HPSS may write less than asked).
    pub(crate) fn write_all(&self, fd: i32, path: &str, mut buf: &[u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            let n = self.check("hpss_Write", path, self.lib.write(fd, buf))?;
            if n == 0 {
                return Err(Error::ShortWrite {
                    path: path.into(),
                    written: n,
                    len: buf.len(),
                });
            }
            buf = &buf[n as usize..];
        }
        Ok(())
    }

    pub(crate) fn seek(&self, fd: i32, path: &str, offset: u64) -> Result<(), Error> {
        let at = self.check("hpss_Lseek", path, self.lib.seek(fd, offset))?;
        if at as u64 != offset {
            return Err(Error::Other {
                path: path.into(),
                why: format!("hpss_Lseek to {offset} landed at {at}"),
            });
        }
        Ok(())
    }

    pub(crate) fn fsync(&self, fd: i32, path: &str) -> Result<(), Error> {
        self.check("hpss_Fsync", path, self.lib.fsync(fd).into())
            .map(drop)
    }

    pub(crate) fn utime(&self, path: &str, mtime: i64) -> Result<(), Error> {
        self.check(
            "hpss_Utime",
            path,
            self.lib.utime(&cstring(path)?, mtime).into(),
        )
        .map(drop)
    }

    pub(crate) fn chmod(&self, path: &str, mode: u32) -> Result<(), Error> {
        self.check(
            "hpss_Chmod",
            path,
            self.lib.chmod(&cstring(path)?, mode).into(),
        )
        .map(drop)
    }

    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        let rc = self.lib.rename(&cstring(from)?, &cstring(to)?);
        self.check("hpss_Rename", &format!("{from} -> {to}"), rc.into())
            .map(drop)
    }

    pub(crate) fn unlink(&self, path: &str) -> Result<(), Error> {
        self.check("hpss_Unlink", path, self.lib.unlink(&cstring(path)?).into())
            .map(drop)
    }

    /// `mkdir -p`: each missing directory of `dir` is made (0755); an existing one must be a directory.
    pub(crate) fn make_dirs(&self, dir: &str) -> Result<(), Error> {
        let mut at = String::new();
        for part in dir.split('/') {
            if part.is_empty() {
                at.push('/');
                continue;
            }
            if !at.is_empty() && !at.ends_with('/') {
                at.push('/');
            }
            at.push_str(part);
            let rc = self.lib.mkdir(&cstring(&at)?, 0o755);
            if rc == -libc::EEXIST {
                if self.lstat(&at)?.is_dir == 0 {
                    return Err(Error::Other {
                        path: at,
                        why: "File is not a directory.".into(),
                    });
                }
            } else {
                self.check("hpss_Mkdir", &at, rc.into())?;
            }
        }
        Ok(())
    }

    /// Names in `dir` (without `.` and `..`).
    pub(crate) fn read_dir(&self, dir: &str) -> Result<Vec<String>, Error> {
        let handle =
            self.check("hpss_Opendir", dir, self.lib.opendir(&cstring(dir)?).into())? as i32;
        let mut names = Vec::new();
        let mut buf = vec![0u8; 4096];
        let result = loop {
            let n = self.lib.readdir(handle, &mut buf);
            match self.check("hpss_Readdir", dir, n.into()) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    let name = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
                    if name != "." && name != ".." {
                        names.push(name);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        let closed = self.check("hpss_Closedir", dir, self.lib.closedir(handle).into());
        result?;
        closed?;
        Ok(names)
    }
}

impl Drop for HpssClient {
    fn drop(&mut self) {
        self.lib.logout();
    }
}
