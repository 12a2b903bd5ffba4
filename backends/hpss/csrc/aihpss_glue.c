/*
 * aihpss_glue.c: every HPSS call that involves a structure, a flag or a stage code only hpss_api.h
 * defines. Compiled by build.rs against the real header when HPSS_ROOT is set and against the test
 * header otherwise, so the Rust side never depends on a layout it cannot check. Each entry point is
 * called through the pointer Rust resolved, cast to the header's own prototype (__typeof__), so a
 * prototype mismatch is a compile error at the site, not a crash.
 */
#include "hpss_api.h"
#include "aihpss.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#define CALL(name) ((__typeof__(&hpss_##name))f->name)
#define CALL_API(field, name) ((__typeof__(&name))f->field)

int aihpss_abi_version(void) { return AIHPSS_ABI_VERSION; }

/* The batch stage structures' member names are not public (only the calls are): a site whose header
 * names them differently builds with AIHPSS_NO_BATCH (build.rs: env AIHPSS_NO_BATCH=1) and stages
 * with asynchronous calls instead. */
#ifdef AIHPSS_NO_BATCH
int aihpss_has_batch(void) { return 0; }
#else
int aihpss_has_batch(void) { return 1; }
#endif

int aihpss_login(const struct aihpss_fns *f, const char *user, const char *keytab) {
  return CALL(SetLoginCred)((char *)user, hpss_authn_mech_unix, hpss_rpc_cred_client,
                            hpss_rpc_auth_type_keytab, (void *)keytab);
}

void aihpss_logout(const struct aihpss_fns *f) {
  CALL(ClientAPIReset)();
  CALL(PurgeLoginCred)();
}

int aihpss_last_errno(const struct aihpss_fns *f) { return CALL(GetLastHPSSErrno)().hpss_errno; }

int aihpss_ping(const struct aihpss_fns *f, const char *site, int64_t *latency_usecs) {
  hpss_srvr_id_t id;
  memset(&id, 0, sizeof id);
  int rc = CALL(LookupRootCS)((char *)site, &id);
  if (rc < 0) return rc;
  struct timeval local;
  gettimeofday(&local, NULL);
  unsigned32 secs = 0, usecs = 0;
  rc = CALL(PingCore)(&id, &secs, &usecs);
  if (rc < 0) return rc;
  /* As the reference measures it: core clock minus the local clock just before the ping. */
  *latency_usecs = ((int64_t)secs - (int64_t)local.tv_sec) * 1000000 + ((int64_t)usecs - (int64_t)local.tv_usec);
  return 0;
}

int aihpss_open(const struct aihpss_fns *f, const char *path, int oflag, uint32_t mode) {
  return CALL(Open)(path, oflag, (mode_t)mode, NULL, NULL, NULL);
}

int aihpss_close(const struct aihpss_fns *f, int fd) { return CALL(Close)(fd); }

int64_t aihpss_read(const struct aihpss_fns *f, int fd, void *buf, size_t len) {
  return (int64_t)CALL(Read)(fd, buf, len);
}

int64_t aihpss_write(const struct aihpss_fns *f, int fd, const void *buf, size_t len) {
  return (int64_t)CALL(Write)(fd, buf, len);
}

int64_t aihpss_seek(const struct aihpss_fns *f, int fd, uint64_t offset) {
  return (int64_t)CALL(Lseek)(fd, (hpss_off_t)offset, SEEK_SET);
}

int aihpss_fsync(const struct aihpss_fns *f, int fd) { return CALL(Fsync)(fd); }

int aihpss_lstat(const struct aihpss_fns *f, const char *path, struct aihpss_stat *out) {
  hpss_stat_t st;
  memset(&st, 0, sizeof st);
  int rc = CALL(Lstat)(path, &st);
  if (rc < 0) return rc;
  out->size = (uint64_t)st.st_size;
  out->mtime = (int64_t)st.hpss_st_mtime;
  out->ctime = (int64_t)st.hpss_st_ctime;
  out->mode = (uint32_t)st.st_mode;
  out->is_dir = S_ISDIR(st.st_mode) ? 1u : 0u;
  return 0;
}

/* Frees what hpss_FileGetXAttributes allocated: the PV list of every returned VV on every level (the
 * pattern of the public callers; the list elements live in the same allocation). */
static void free_pv_lists(hpss_xfileattr_t *x) {
  for (int l = 0; l < HPSS_MAX_STORAGE_LEVELS; l++) {
    bf_sc_attrib_t *sc = &x->SCAttrib[l];
    unsigned n = sc->NumberOfVVs < BFS_MAX_VV_TO_RETURN_AT_LEVEL ? sc->NumberOfVVs : BFS_MAX_VV_TO_RETURN_AT_LEVEL;
    for (unsigned v = 0; v < n; v++) {
      free(sc->VVAttrib[v].PVList);
      sc->VVAttrib[v].PVList = NULL;
    }
  }
}

int aihpss_xattrs(const struct aihpss_fns *f, const char *path, struct aihpss_xattrs *out) {
  hpss_xfileattr_t *x = calloc(1, sizeof *x);
  if (!x) return -12; /* -ENOMEM */
  int rc = CALL(FileGetXAttributes)(path, API_GET_STATS_FOR_ALL_LEVELS | API_GET_XATTRS_NO_BLOCK, 0, x);
  if (rc < 0) {
    free(x);
    return rc;
  }
  memset(out, 0, sizeof *out);
  out->data_length = (uint64_t)x->Attrs.DataLength;
  int levels = HPSS_MAX_STORAGE_LEVELS < AIHPSS_LEVELS ? HPSS_MAX_STORAGE_LEVELS : AIHPSS_LEVELS;
  for (int l = 0; l < levels; l++) {
    bf_sc_attrib_t *sc = &x->SCAttrib[l];
    struct aihpss_level *o = &out->levels[l];
    o->bytes = (uint64_t)sc->BytesAtLevel;
    o->flags = ((sc->Flags & BFS_BFATTRS_DATAEXISTS_AT_LEVEL) ? AIHPSS_LEVEL_DATA : 0) |
               ((sc->Flags & BFS_BFATTRS_LEVEL_IS_DISK) ? AIHPSS_LEVEL_DISK : 0) |
               ((sc->Flags & BFS_BFATTRS_LEVEL_IS_TAPE) ? AIHPSS_LEVEL_TAPE : 0) |
               ((sc->Flags & BFS_BFATTRS_ADDITIONAL_VV_EXIST) ? AIHPSS_LEVEL_MORE_VVS : 0);
    o->vv_count = sc->NumberOfVVs;
    if (sc->NumberOfVVs > 0) {
      bf_vv_attrib_t *vv = &sc->VVAttrib[0];
      o->rel_position = (int32_t)vv->RelPosition;
      o->rel_offset = (uint64_t)vv->RelPositionOffset;
      if (vv->PVList && vv->PVList->List.List_len > 0 && vv->PVList->List.List_val) {
        size_t n = sizeof vv->PVList->List.List_val[0].Name;
        if (n >= AIHPSS_PV_NAME) n = AIHPSS_PV_NAME - 1;
        memcpy(o->pv_name, vv->PVList->List.List_val[0].Name, n);
        o->pv_name[n] = 0;
        o->has_pv = 1;
      }
    }
  }
  free_pv_lists(x);
  free(x);
  return 0;
}

int aihpss_stage_sync(const struct aihpss_fns *f, const char *path, uint64_t len) {
  /* O_NONBLOCK: the open itself must not stage (it would, synchronously, under the default COS). */
  int fd = CALL(Open)(path, O_RDONLY | O_NONBLOCK, 0, NULL, NULL, NULL);
  if (fd < 0) return fd;
  int rc = CALL(Stage)(fd, 0, len, 0, BFS_STAGE_ALL);
  int crc = CALL(Close)(fd);
  return rc < 0 ? rc : crc;
}

/* A request id derived from the caller's seed: the same file asked twice gets the same id, so HPSS
 * (and our status check) sees one request, never a second one. */
static hpss_reqid_t request_id(uint64_t seed) {
  hpss_reqid_t id;
  memset(&id, 0, sizeof id);
  memcpy(&id, &seed, sizeof seed < sizeof id ? sizeof seed : sizeof id);
  return id;
}

int aihpss_stage_async(const struct aihpss_fns *f, const char *path, uint64_t request_seed, uint64_t len) {
  bfs_callback_addr_t callback;
  memset(&callback, 0, sizeof callback); /* no listener: completion is polled */
  hpss_reqid_t id = request_id(request_seed);
  bfs_bitfile_obj_handle_t obj;
  memset(&obj, 0, sizeof obj);
  return CALL(StageCallBack)(path, 0, len, 0, &callback, BFS_STAGE_ALL, &id, &obj);
}

int aihpss_async_status(const struct aihpss_fns *f, const char *path, uint64_t request_seed, int32_t *state) {
  hpss_fileattr_t attrs;
  memset(&attrs, 0, sizeof attrs);
  int rc = CALL(FileGetAttributes)(path, &attrs);
  if (rc < 0) return rc;
  int32_t status = HPSS_STAGE_STATUS_UNKNOWN;
  rc = CALL(GetAsyncStatus)(request_id(request_seed), &attrs.Attrs.BitfileObj, &status);
  if (rc < 0) return rc;
  *state = status == HPSS_STAGE_STATUS_ACTIVE   ? AIHPSS_STAGE_ACTIVE
           : status == HPSS_STAGE_STATUS_QUEUED ? AIHPSS_STAGE_QUEUED
                                                : AIHPSS_STAGE_UNKNOWN;
  return 0;
}

#ifndef AIHPSS_NO_BATCH
struct aihpss_batch {
  hpss_reqid_t id;
  hpss_stage_bitfile_list_t files;
  int count;
  bfs_bitfile_obj_handle_t *objs; /* per submitted path, in the caller's order */
  int *index;                     /* position of each submitted path in the caller's list, or -1 */
};

void *aihpss_batch_submit(const struct aihpss_fns *f, int count, const char *const *paths,
                          const uint64_t *lengths, int *rc) {
  struct aihpss_batch *b = calloc(1, sizeof *b);
  if (!b) { *rc = -12; return NULL; }
  b->count = count;
  b->objs = calloc((size_t)count, sizeof *b->objs);
  b->index = calloc((size_t)count, sizeof *b->index);
  if (!b->objs || !b->index) { aihpss_batch_free(b); *rc = -12; return NULL; }
  int valid = 0;
  for (int i = 0; i < count; i++) {
    hpss_fileattr_t attrs;
    memset(&attrs, 0, sizeof attrs);
    int r = CALL(FileGetAttributes)(paths[i], &attrs);
    if (r < 0) { rc[i] = r; b->index[i] = -1; continue; }
    rc[i] = 0;
    b->objs[i] = attrs.Attrs.BitfileObj;
    b->index[i] = valid++;
  }
  if (valid == 0) return b;
  hpss_stage_batch_t batch;
  memset(&batch, 0, sizeof batch);
  /* The list length must equal the number of entries inserted. */
  int r = CALL_API(StageBatchInit, API_StageBatchInit)(&batch, valid);
  for (int i = 0; r == 0 && i < count; i++) {
    if (b->index[i] < 0) continue;
    r = CALL_API(StageBatchInsertBFObj, API_StageBatchInsertBFObj)(&batch, b->index[i], &b->objs[i], 1, 0, 0,
                                                                    lengths[i], BFS_STAGE_ALL);
  }
  if (r == 0) {
    bfs_callback_addr_t callback;
    memset(&callback, 0, sizeof callback);
    hpss_stage_batch_status_t status;
    memset(&status, 0, sizeof status);
    r = CALL(StageBatchCallBack)(&batch, &callback, &b->id, &b->files, &status);
    CALL_API(StageStatusFree, API_StageStatusFree)(&status);
  }
  CALL_API(StageBatchFree, API_StageBatchFree)(&batch);
  if (r < 0) {
    for (int i = 0; i < count; i++)
      if (b->index[i] >= 0) rc[i] = r;
    aihpss_batch_free(b);
    return NULL;
  }
  return b;
}

int aihpss_batch_poll(const struct aihpss_fns *f, void *handle, int count, int32_t *states) {
  struct aihpss_batch *b = handle;
  hpss_stage_batch_status_t status;
  memset(&status, 0, sizeof status);
  int rc = CALL(GetBatchAsynchStatus)(b->id, &b->files, HPSS_STAGE_STATUS_TYPE_ALL, &status);
  if (rc < 0) return rc;
  for (int i = 0; i < count && i < b->count; i++) {
    if (b->index[i] < 0) continue;
    /* A file the status no longer lists has finished. */
    states[i] = AIHPSS_STAGE_DONE;
    for (unsigned j = 0; j < status.Len; j++) {
      if (memcmp(&status.Files[j].BfObj, &b->objs[i], sizeof b->objs[i]) != 0) continue;
      int32_t s = status.Files[j].Status;
      states[i] = s == 0 ? AIHPSS_STAGE_DONE : s == HPSS_ENOTALLMOVED ? AIHPSS_STAGE_ACTIVE : s;
    }
  }
  CALL_API(StageStatusFree, API_StageStatusFree)(&status);
  return 0;
}

void aihpss_batch_free(void *handle) {
  struct aihpss_batch *b = handle;
  if (!b) return;
  free(b->files.BFList.BFList_val);
  free(b->objs);
  free(b->index);
  free(b);
}

#else
void *aihpss_batch_submit(const struct aihpss_fns *f, int count, const char *const *paths,
                          const uint64_t *lengths, int *rc) {
  (void)f; (void)paths; (void)lengths;
  for (int i = 0; i < count; i++) rc[i] = -38; /* -ENOSYS */
  return NULL;
}
int aihpss_batch_poll(const struct aihpss_fns *f, void *batch, int count, int32_t *states) {
  (void)f; (void)batch; (void)count; (void)states;
  return -38;
}
void aihpss_batch_free(void *batch) { (void)batch; }
#endif

int aihpss_migrate(const struct aihpss_fns *f, const char *path, int purge_after) {
  int fd = CALL(Open)(path, O_RDWR, 0, NULL, NULL, NULL);
  if (fd < 0) return fd;
  u_signed64 moved = 0;
  int rc = CALL(Migrate)(fd, 0, HPSS_MIGRATE_FORCE | (purge_after ? HPSS_MIGRATE_PURGE_DATA : 0), &moved);
  int crc = CALL(Close)(fd);
  return rc < 0 ? rc : crc;
}

int aihpss_purge(const struct aihpss_fns *f, const char *path) {
  int fd = CALL(Open)(path, O_RDWR, 0, NULL, NULL, NULL);
  if (fd < 0) return fd;
  u_signed64 purged = 0;
  int rc = CALL(Purge)(fd, 0, 0, 0, BFS_PURGE_ALL, &purged);
  int crc = CALL(Close)(fd);
  return rc < 0 ? rc : crc;
}

int aihpss_utime(const struct aihpss_fns *f, const char *path, int64_t mtime) {
  struct utimbuf times = {.actime = (time_t)mtime, .modtime = (time_t)mtime};
  return CALL(Utime)(path, &times);
}

int aihpss_chmod(const struct aihpss_fns *f, const char *path, uint32_t mode) { return CALL(Chmod)(path, (mode_t)mode); }
int aihpss_mkdir(const struct aihpss_fns *f, const char *path, uint32_t mode) { return CALL(Mkdir)(path, (mode_t)mode); }
int aihpss_rename(const struct aihpss_fns *f, const char *from, const char *to) { return CALL(Rename)(from, to); }
int aihpss_unlink(const struct aihpss_fns *f, const char *path) { return CALL(Unlink)(path); }
int aihpss_rmdir(const struct aihpss_fns *f, const char *path) { return CALL(Rmdir)(path); }
int aihpss_opendir(const struct aihpss_fns *f, const char *path) { return CALL(Opendir)(path); }
int aihpss_closedir(const struct aihpss_fns *f, int dir) { return CALL(Closedir)(dir); }

int aihpss_readdir(const struct aihpss_fns *f, int dir, char *name, size_t cap) {
  hpss_dirent_t entry;
  memset(&entry, 0, sizeof entry);
  int rc = CALL(Readdir)(dir, &entry);
  if (rc < 0) return rc;
  size_t n = entry.d_namelen;
  if (n >= cap) return -36; /* -ENAMETOOLONG */
  memcpy(name, entry.d_name, n);
  name[n] = 0;
  return (int)n;
}
