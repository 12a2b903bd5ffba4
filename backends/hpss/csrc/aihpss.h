/*
 * aihpss.h: the small ABI of archiveinterface's own between the Rust backend and the HPSS client
 * library. Rust resolves the library's entry points at start-up and hands them over as `struct
 * aihpss_fns`; the glue (aihpss_glue.c), compiled against hpss_api.h, makes every call whose
 * arguments or results involve a structure or a constant that only that header defines, and answers
 * in the plain structures below. src/ffi.rs mirrors this file field by field.
 */
#ifndef AIHPSS_H
#define AIHPSS_H

#include <stddef.h>
#include <stdint.h>

#define AIHPSS_ABI_VERSION 1
#define AIHPSS_LEVELS 5
#define AIHPSS_PV_NAME 64

/* Entry points, in this order (src/ffi.rs ENTRY_POINTS). The batch ones may be NULL (HPSS < 9.3). */
struct aihpss_fns {
  void *SetLoginCred, *PurgeLoginCred, *ClientAPIReset, *Open, *Close, *Read, *Write, *Lseek, *Fsync,
      *Lstat, *FileGetAttributes, *FileGetXAttributes, *Stage, *StageCallBack, *GetAsyncStatus, *Purge,
      *Migrate, *Utime, *Chmod, *Mkdir, *Rename, *Unlink, *Rmdir, *Opendir, *Readdir, *Closedir,
      *LookupRootCS, *PingCore, *GetLastHPSSErrno;
  void *StageBatchInit, *StageBatchInsertBFObj, *StageBatchCallBack, *GetBatchAsynchStatus,
      *StageBatchFree, *StageStatusFree;
};

struct aihpss_stat {
  uint64_t size;
  int64_t mtime;
  int64_t ctime;
  uint32_t mode;
  uint32_t is_dir;
};

#define AIHPSS_LEVEL_DATA 0x1u
#define AIHPSS_LEVEL_DISK 0x2u
#define AIHPSS_LEVEL_TAPE 0x4u
#define AIHPSS_LEVEL_MORE_VVS 0x8u

struct aihpss_level {
  uint64_t bytes;
  uint64_t rel_offset;
  int32_t rel_position;
  uint32_t flags;
  uint32_t vv_count;
  uint32_t has_pv;
  char pv_name[AIHPSS_PV_NAME];
};

struct aihpss_xattrs {
  uint64_t data_length;
  struct aihpss_level levels[AIHPSS_LEVELS];
};

/* Stage request states (aihpss_async_status / aihpss_batch_poll). */
#define AIHPSS_STAGE_UNKNOWN 0
#define AIHPSS_STAGE_ACTIVE 1
#define AIHPSS_STAGE_QUEUED 2
#define AIHPSS_STAGE_DONE 3

int aihpss_abi_version(void);
int aihpss_has_batch(void);
int aihpss_login(const struct aihpss_fns *f, const char *user, const char *keytab);
void aihpss_logout(const struct aihpss_fns *f);
int aihpss_last_errno(const struct aihpss_fns *f);
int aihpss_ping(const struct aihpss_fns *f, const char *site, int64_t *latency_usecs);
int aihpss_open(const struct aihpss_fns *f, const char *path, int oflag, uint32_t mode);
int aihpss_close(const struct aihpss_fns *f, int fd);
int64_t aihpss_read(const struct aihpss_fns *f, int fd, void *buf, size_t len);
int64_t aihpss_write(const struct aihpss_fns *f, int fd, const void *buf, size_t len);
int64_t aihpss_seek(const struct aihpss_fns *f, int fd, uint64_t offset);
int aihpss_fsync(const struct aihpss_fns *f, int fd);
int aihpss_lstat(const struct aihpss_fns *f, const char *path, struct aihpss_stat *out);
int aihpss_xattrs(const struct aihpss_fns *f, const char *path, struct aihpss_xattrs *out);
int aihpss_stage_sync(const struct aihpss_fns *f, const char *path, uint64_t len);
int aihpss_stage_async(const struct aihpss_fns *f, const char *path, uint64_t request_seed, uint64_t len);
int aihpss_async_status(const struct aihpss_fns *f, const char *path, uint64_t request_seed,
                        int32_t *state);
void *aihpss_batch_submit(const struct aihpss_fns *f, int count, const char *const *paths,
                          const uint64_t *lengths, int *rc);
int aihpss_batch_poll(const struct aihpss_fns *f, void *batch, int count, int32_t *states);
void aihpss_batch_free(void *batch);
int aihpss_migrate(const struct aihpss_fns *f, const char *path, int purge_after);
int aihpss_purge(const struct aihpss_fns *f, const char *path);
int aihpss_utime(const struct aihpss_fns *f, const char *path, int64_t mtime);
int aihpss_chmod(const struct aihpss_fns *f, const char *path, uint32_t mode);
int aihpss_mkdir(const struct aihpss_fns *f, const char *path, uint32_t mode);
int aihpss_rename(const struct aihpss_fns *f, const char *from, const char *to);
int aihpss_unlink(const struct aihpss_fns *f, const char *path);
int aihpss_rmdir(const struct aihpss_fns *f, const char *path);
int aihpss_opendir(const struct aihpss_fns *f, const char *path);
int aihpss_readdir(const struct aihpss_fns *f, int dir, char *name, size_t cap);
int aihpss_closedir(const struct aihpss_fns *f, int dir);

#endif
