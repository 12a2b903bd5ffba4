//! The only unsafe code of the backend: loading the HPSS client library at run time, resolving every
//! entry point at start-up, and calling the C glue (`csrc/aihpss_glue.c`, our own small ABI) with
//! the resolved table. Every function here returns the C return code unchanged; `client.rs` turns
//! codes into errors. All of these calls block: callers run them off the async runtime.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;

/// Entry points, in the order of `struct aihpss_fns` (csrc/aihpss.h), and whether start-up needs them.
/// The batch stage calls exist from HPSS 9.3 on; without them stages are asynchronous calls.
const ENTRY_POINTS: [(&str, bool); 35] = [
    ("hpss_SetLoginCred", true),
    ("hpss_PurgeLoginCred", true),
    ("hpss_ClientAPIReset", true),
    ("hpss_Open", true),
    ("hpss_Close", true),
    ("hpss_Read", true),
    ("hpss_Write", true),
    ("hpss_Lseek", true),
    ("hpss_Fsync", true),
    ("hpss_Lstat", true),
    ("hpss_FileGetAttributes", true),
    ("hpss_FileGetXAttributes", true),
    ("hpss_Stage", true),
    ("hpss_StageCallBack", true),
    ("hpss_GetAsyncStatus", true),
    ("hpss_Purge", true),
    ("hpss_Migrate", true),
    ("hpss_Utime", true),
    ("hpss_Chmod", true),
    ("hpss_Mkdir", true),
    ("hpss_Rename", true),
    ("hpss_Unlink", true),
    ("hpss_Rmdir", true),
    ("hpss_Opendir", true),
    ("hpss_Readdir", true),
    ("hpss_Closedir", true),
    ("hpss_LookupRootCS", true),
    ("hpss_PingCore", true),
    ("hpss_GetLastHPSSErrno", true),
    ("API_StageBatchInit", false),
    ("API_StageBatchInsertBFObj", false),
    ("hpss_StageBatchCallBack", false),
    ("hpss_GetBatchAsynchStatus", false),
    ("API_StageBatchFree", false),
    ("API_StageStatusFree", false),
];
const FIRST_BATCH_ENTRY: usize = 29;

/// `struct aihpss_fns`: one pointer per entry point.
#[repr(C)]
struct Fns([*mut c_void; ENTRY_POINTS.len()]);

/// `struct aihpss_stat`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RawStat {
    pub(crate) size: u64,
    pub(crate) mtime: i64,
    pub(crate) ctime: i64,
    pub(crate) mode: u32,
    pub(crate) is_dir: u32,
}

/// Level flags of `struct aihpss_level`.
pub(crate) const LEVEL_DATA: u32 = 0x1;
pub(crate) const LEVEL_DISK: u32 = 0x2;
pub(crate) const LEVEL_TAPE: u32 = 0x4;

/// `struct aihpss_level`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawLevel {
    pub(crate) bytes: u64,
    pub(crate) rel_offset: u64,
    pub(crate) rel_position: i32,
    pub(crate) flags: u32,
    pub(crate) vv_count: u32,
    pub(crate) has_pv: u32,
    pub(crate) pv_name: [c_char; 64],
}

/// `struct aihpss_xattrs`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawXattrs {
    pub(crate) data_length: u64,
    pub(crate) levels: [RawLevel; 5],
}

impl RawLevel {
    /// The cartridge label, when the level returned one.
    pub(crate) fn pv_name(&self) -> Option<String> {
        (self.has_pv != 0).then(|| {
            let bytes: Vec<u8> = self
                .pv_name
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
}

/// Stage request states of the glue.
pub(crate) const STAGE_UNKNOWN: i32 = 0;
pub(crate) const STAGE_DONE: i32 = 3;

extern "C" {
    fn aihpss_abi_version() -> c_int;
    fn aihpss_has_batch() -> c_int;
    fn aihpss_login(f: *const Fns, user: *const c_char, keytab: *const c_char) -> c_int;
    fn aihpss_logout(f: *const Fns);
    fn aihpss_last_errno(f: *const Fns) -> c_int;
    fn aihpss_ping(f: *const Fns, site: *const c_char, latency_usecs: *mut i64) -> c_int;
    fn aihpss_open(f: *const Fns, path: *const c_char, oflag: c_int, mode: u32) -> c_int;
    fn aihpss_close(f: *const Fns, fd: c_int) -> c_int;
    fn aihpss_read(f: *const Fns, fd: c_int, buf: *mut c_void, len: usize) -> i64;
    fn aihpss_write(f: *const Fns, fd: c_int, buf: *const c_void, len: usize) -> i64;
    fn aihpss_seek(f: *const Fns, fd: c_int, offset: u64) -> i64;
    fn aihpss_fsync(f: *const Fns, fd: c_int) -> c_int;
    fn aihpss_lstat(f: *const Fns, path: *const c_char, out: *mut RawStat) -> c_int;
    fn aihpss_xattrs(f: *const Fns, path: *const c_char, out: *mut RawXattrs) -> c_int;
    fn aihpss_stage_sync(f: *const Fns, path: *const c_char, len: u64) -> c_int;
    fn aihpss_stage_async(f: *const Fns, path: *const c_char, seed: u64, len: u64) -> c_int;
    fn aihpss_async_status(f: *const Fns, path: *const c_char, seed: u64, state: *mut i32)
        -> c_int;
    fn aihpss_batch_submit(
        f: *const Fns,
        count: c_int,
        paths: *const *const c_char,
        lengths: *const u64,
        rc: *mut c_int,
    ) -> *mut c_void;
    fn aihpss_batch_poll(
        f: *const Fns,
        batch: *mut c_void,
        count: c_int,
        states: *mut i32,
    ) -> c_int;
    fn aihpss_batch_free(batch: *mut c_void);
    fn aihpss_migrate(f: *const Fns, path: *const c_char, purge_after: c_int) -> c_int;
    fn aihpss_utime(f: *const Fns, path: *const c_char, mtime: i64) -> c_int;
    fn aihpss_chmod(f: *const Fns, path: *const c_char, mode: u32) -> c_int;
    fn aihpss_mkdir(f: *const Fns, path: *const c_char, mode: u32) -> c_int;
    fn aihpss_rename(f: *const Fns, from: *const c_char, to: *const c_char) -> c_int;
    fn aihpss_unlink(f: *const Fns, path: *const c_char) -> c_int;
    fn aihpss_opendir(f: *const Fns, path: *const c_char) -> c_int;
    fn aihpss_readdir(f: *const Fns, dir: c_int, name: *mut c_char, cap: usize) -> c_int;
    fn aihpss_closedir(f: *const Fns, dir: c_int) -> c_int;
}

/// Why the library could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("Can't load the HPSS client library {path}: {source}")]
    Library {
        path: String,
        source: libloading::Error,
    },
    #[error("The HPSS client library {path} has no entry point {symbol}: {source}")]
    Symbol {
        path: String,
        symbol: &'static str,
        source: libloading::Error,
    },
    #[error("the HPSS glue speaks ABI version {0}, this build expects 1")]
    Abi(i32),
}

/// The loaded client library with every entry point resolved.
pub(crate) struct HpssLibrary {
    fns: Box<Fns>,
    has_batch: bool,
    // Kept loaded for as long as the table above points into it (dropped after `fns`).
    _library: libloading::os::unix::Library,
}

// SAFETY: the table holds code addresses of a library that stays loaded as long as the table; the
// HPSS client API is thread-safe (each call initialises its own thread context), and the glue holds
// no shared mutable state.
unsafe impl Send for HpssLibrary {}
// SAFETY: as above; nothing is mutated through `&HpssLibrary`.
unsafe impl Sync for HpssLibrary {}

impl std::fmt::Debug for HpssLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HpssLibrary")
            .field("has_batch", &self.has_batch)
            .finish_non_exhaustive()
    }
}

impl HpssLibrary {
    /// Loads `path` with `RTLD_NOW | RTLD_DEEPBIND`: every symbol bound now, and the library's own
    /// libtirpc RPC/XDR symbols preferred over the same names in our libc (else HPSS login fails).
    pub(crate) fn load(path: &Path) -> Result<Self, LoadError> {
        let shown = path.display().to_string();
        // SAFETY: aihpss_abi_version is our own glue, linked statically; it has no preconditions.
        let abi = unsafe { aihpss_abi_version() };
        if abi != 1 {
            return Err(LoadError::Abi(abi));
        }
        // SAFETY: loading a library runs its initialisers; the configured library is the HPSS client
        // (or its test double), whose initialisers are meant to run in a client process.
        let library = unsafe {
            libloading::os::unix::Library::open(Some(path), libc::RTLD_NOW | libc::RTLD_DEEPBIND)
        }
        .map_err(|source| LoadError::Library {
            path: shown.clone(),
            source,
        })?;
        let mut fns = Box::new(Fns([std::ptr::null_mut(); ENTRY_POINTS.len()]));
        // SAFETY: our own statically linked glue; no preconditions.
        let mut has_batch = unsafe { aihpss_has_batch() } != 0;
        for (slot, (name, required)) in ENTRY_POINTS.iter().enumerate() {
            let symbol = format!("{name}\0");
            // SAFETY: the symbol is only read as an address here; it is called through the glue with
            // the prototype the glue was compiled against.
            match unsafe { library.get::<*mut c_void>(symbol.as_bytes()) } {
                Ok(found) => fns.0[slot] = found.into_raw(),
                Err(source) if *required => {
                    return Err(LoadError::Symbol {
                        path: shown,
                        symbol: name,
                        source,
                    })
                }
                Err(_) => has_batch = false,
            }
        }
        if !has_batch {
            for slot in &mut fns.0[FIRST_BATCH_ENTRY..] {
                *slot = std::ptr::null_mut();
            }
        }
        Ok(HpssLibrary {
            fns,
            has_batch,
            _library: library,
        })
    }

    /// Whether the batch stage API (HPSS 9.3+) is there.
    pub(crate) fn has_batch(&self) -> bool {
        self.has_batch
    }

    fn f(&self) -> *const Fns {
        &*self.fns
    }

    pub(crate) fn login(&self, user: &CStr, keytab: &CStr) -> i32 {
        // SAFETY: valid table; both strings are NUL-terminated and outlive the call.
        unsafe { aihpss_login(self.f(), user.as_ptr(), keytab.as_ptr()) }
    }

    pub(crate) fn logout(&self) {
        // SAFETY: valid table; no arguments.
        unsafe { aihpss_logout(self.f()) }
    }

    pub(crate) fn last_errno(&self) -> i32 {
        // SAFETY: valid table; called after login only (before it, HPSS would hang here).
        unsafe { aihpss_last_errno(self.f()) }
    }

    pub(crate) fn ping(&self, site: &CStr, latency_usecs: &mut i64) -> i32 {
        // SAFETY: valid table and string; the out pointer is a live i64.
        unsafe { aihpss_ping(self.f(), site.as_ptr(), latency_usecs) }
    }

    pub(crate) fn open(&self, path: &CStr, oflag: i32, mode: u32) -> i32 {
        // SAFETY: valid table and NUL-terminated path.
        unsafe { aihpss_open(self.f(), path.as_ptr(), oflag, mode) }
    }

    pub(crate) fn close(&self, fd: i32) -> i32 {
        // SAFETY: valid table; an invalid descriptor is reported by HPSS, not undefined.
        unsafe { aihpss_close(self.f(), fd) }
    }

    pub(crate) fn read(&self, fd: i32, buf: &mut [u8]) -> i64 {
        // SAFETY: the buffer is valid for writes of its whole length during the call.
        unsafe { aihpss_read(self.f(), fd, buf.as_mut_ptr().cast(), buf.len()) }
    }

    pub(crate) fn write(&self, fd: i32, buf: &[u8]) -> i64 {
        // SAFETY: the buffer is valid for reads of its whole length during the call.
        unsafe { aihpss_write(self.f(), fd, buf.as_ptr().cast(), buf.len()) }
    }

    pub(crate) fn seek(&self, fd: i32, offset: u64) -> i64 {
        // SAFETY: valid table; plain values.
        unsafe { aihpss_seek(self.f(), fd, offset) }
    }

    pub(crate) fn fsync(&self, fd: i32) -> i32 {
        // SAFETY: valid table; plain values.
        unsafe { aihpss_fsync(self.f(), fd) }
    }

    pub(crate) fn lstat(&self, path: &CStr, out: &mut RawStat) -> i32 {
        // SAFETY: valid path; `out` is a live struct of the glue's layout.
        unsafe { aihpss_lstat(self.f(), path.as_ptr(), out) }
    }

    pub(crate) fn xattrs(&self, path: &CStr) -> Result<RawXattrs, i32> {
        let mut out = std::mem::MaybeUninit::<RawXattrs>::zeroed();
        // SAFETY: valid path; `out` is zeroed memory of the glue's layout (all-zero is a valid
        // RawXattrs), filled by the glue on success. The glue frees HPSS's PV lists itself.
        let rc = unsafe { aihpss_xattrs(self.f(), path.as_ptr(), out.as_mut_ptr()) };
        if rc < 0 {
            return Err(rc);
        }
        // SAFETY: zero-initialised and then written by the glue: initialised.
        Ok(unsafe { out.assume_init() })
    }

    pub(crate) fn stage_sync(&self, path: &CStr, len: u64) -> i32 {
        // SAFETY: valid path; plain values.
        unsafe { aihpss_stage_sync(self.f(), path.as_ptr(), len) }
    }

    pub(crate) fn stage_async(&self, path: &CStr, seed: u64, len: u64) -> i32 {
        // SAFETY: valid path; plain values.
        unsafe { aihpss_stage_async(self.f(), path.as_ptr(), seed, len) }
    }

    pub(crate) fn async_status(&self, path: &CStr, seed: u64, state: &mut i32) -> i32 {
        // SAFETY: valid path; `state` is a live i32.
        unsafe { aihpss_async_status(self.f(), path.as_ptr(), seed, state) }
    }

    /// Submits one batch stage; `rcs` gets each path's submission code. `None`: nothing submitted.
    pub(crate) fn batch_submit(
        &self,
        paths: &[&CStr],
        lengths: &[u64],
        rcs: &mut [i32],
    ) -> Option<BatchHandle<'_>> {
        assert!(self.has_batch && paths.len() == lengths.len() && paths.len() == rcs.len());
        let pointers: Vec<*const c_char> = paths.iter().map(|p| p.as_ptr()).collect();
        // SAFETY: the batch entry points are resolved (has_batch); the arrays have `count` elements
        // and the strings outlive the call (the glue copies what it keeps).
        let handle = unsafe {
            aihpss_batch_submit(
                self.f(),
                paths.len() as c_int,
                pointers.as_ptr(),
                lengths.as_ptr(),
                rcs.as_mut_ptr(),
            )
        };
        (!handle.is_null()).then_some(BatchHandle {
            library: self,
            handle,
            count: paths.len(),
        })
    }

    pub(crate) fn migrate(&self, path: &CStr, purge_after: bool) -> i32 {
        // SAFETY: valid path; plain values.
        unsafe { aihpss_migrate(self.f(), path.as_ptr(), c_int::from(purge_after)) }
    }

    pub(crate) fn utime(&self, path: &CStr, mtime: i64) -> i32 {
        // SAFETY: valid path; plain values.
        unsafe { aihpss_utime(self.f(), path.as_ptr(), mtime) }
    }

    pub(crate) fn chmod(&self, path: &CStr, mode: u32) -> i32 {
        // SAFETY: valid path; plain values.
        unsafe { aihpss_chmod(self.f(), path.as_ptr(), mode) }
    }

    pub(crate) fn mkdir(&self, path: &CStr, mode: u32) -> i32 {
        // SAFETY: valid path; plain values.
        unsafe { aihpss_mkdir(self.f(), path.as_ptr(), mode) }
    }

    pub(crate) fn rename(&self, from: &CStr, to: &CStr) -> i32 {
        // SAFETY: both paths valid and NUL-terminated.
        unsafe { aihpss_rename(self.f(), from.as_ptr(), to.as_ptr()) }
    }

    pub(crate) fn unlink(&self, path: &CStr) -> i32 {
        // SAFETY: valid path.
        unsafe { aihpss_unlink(self.f(), path.as_ptr()) }
    }

    pub(crate) fn opendir(&self, path: &CStr) -> i32 {
        // SAFETY: valid path.
        unsafe { aihpss_opendir(self.f(), path.as_ptr()) }
    }

    /// The next entry's name into `name`; its length, 0 at the end, or a negative errno.
    pub(crate) fn readdir(&self, dir: i32, name: &mut [u8]) -> i32 {
        // SAFETY: the buffer is valid for writes of its whole length; the glue NUL-terminates within it.
        unsafe { aihpss_readdir(self.f(), dir, name.as_mut_ptr().cast(), name.len()) }
    }

    pub(crate) fn closedir(&self, dir: i32) -> i32 {
        // SAFETY: valid table; plain values.
        unsafe { aihpss_closedir(self.f(), dir) }
    }
}

/// A submitted batch stage; freed when dropped.
pub(crate) struct BatchHandle<'a> {
    library: &'a HpssLibrary,
    handle: *mut c_void,
    count: usize,
}

impl BatchHandle<'_> {
    /// Each path's state (`STAGE_DONE`, active/queued, or a negative errno); the call's own code.
    pub(crate) fn poll(&self, states: &mut [i32]) -> i32 {
        assert_eq!(states.len(), self.count);
        // SAFETY: the handle came from aihpss_batch_submit and is not freed yet; `states` has
        // `count` elements.
        unsafe {
            aihpss_batch_poll(
                self.library.f(),
                self.handle,
                self.count as c_int,
                states.as_mut_ptr(),
            )
        }
    }
}

impl Drop for BatchHandle<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle came from aihpss_batch_submit and is freed exactly once, here.
        unsafe { aihpss_batch_free(self.handle) }
    }
}
