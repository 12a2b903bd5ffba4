/*
 * hpss_double.c: a test double of the HPSS client library (libhpss.so), built by the project from
 * the test hpss_api.h. It implements the entry points archiveinterface calls over the local file
 * system, so the backend's production code path (loading, glue, every call) runs without HPSS.
 *
 * Model: HPSS paths are local paths. A file's level 0 (disk) copy is the local file; its level 1
 * (tape) copy lives under $HPSS_DOUBLE_DIR/tape, its per-level state under $HPSS_DOUBLE_DIR/files
 * (both named after the file's device and inode, so a rename keeps them). A file with no state is
 * all on disk. Migration assigns cartridges round-robin (`cartridges N`) with increasing positions;
 * purge empties the local file; a stage copies the tape copy back after `stage_ms`, completed when
 * the file is next looked at, so no threads run inside the double. Stage submissions are appended
 * to $HPSS_DOUBLE_DIR/stage.log as "<cartridge> <position> <offset> <path>".
 *
 * Control: $HPSS_DOUBLE_DIR/control, read on every call, one "key value" per line:
 *   stage_ms N         time a stage takes (default 0)
 *   latency_secs N     the core server's clock runs N seconds ahead (hpss_PingCore)
 *   cartridges N       cartridges migration spreads files over (default 1)
 *   cos disk|tape      class of service: disk only, or disk with a tape level (default tape)
 *   fail NAME RC       entry point NAME returns RC (negative errno) until the line is removed
 *   slow NAME MS       entry point NAME takes MS milliseconds (a busy core server)
 * Build variants: -DHPSS_DOUBLE_WITHOUT_BATCH (a client before 9.3), -DHPSS_DOUBLE_WITHOUT_RENAME
 * (a library missing an entry point the backend needs).
 */
#define _GNU_SOURCE
#include "hpss_api.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int logged_in;
static __thread hpss_errno_state_t last_error;

/* ---- control and errors ---------------------------------------------------------------------- */

static const char *home(void) { return getenv("HPSS_DOUBLE_DIR"); }

/* Looks `key` up in the control file; the value goes to `out`. With `name`, matches "key name rc". */
static int control(const char *key, const char *name, char *out, size_t cap) {
  char path[PATH_MAX], line[512];
  if (!home()) return 0;
  snprintf(path, sizeof path, "%s/control", home());
  FILE *fp = fopen(path, "r");
  if (!fp) return 0;
  int found = 0;
  while (fgets(line, sizeof line, fp)) {
    char k[64], a[256], b[256];
    int n = sscanf(line, "%63s %255s %255s", k, a, b);
    if (n < 2 || strcmp(k, key) != 0) continue;
    if (name) {
      if (n == 3 && strcmp(a, name) == 0) { snprintf(out, cap, "%s", b); found = 1; }
    } else {
      snprintf(out, cap, "%s", a);
      found = 1;
    }
  }
  fclose(fp);
  return found;
}

static long control_num(const char *key, long fallback) {
  char v[64];
  return control(key, NULL, v, sizeof v) ? atol(v) : fallback;
}

static int tape_cos(void) {
  char v[32];
  return !(control("cos", NULL, v, sizeof v) && strcmp(v, "disk") == 0);
}

static int fail(const char *func, int rc) {
  memset(&last_error, 0, sizeof last_error);
  last_error.hpss_errno = rc;
  snprintf(last_error.func, sizeof last_error.func, "%s", func);
  return rc;
}

/* Common prologue: logged in, and not told to fail. */
static int enter(const char *func) {
  char v[32];
  if (!logged_in) {
    fprintf(stderr, "hpss double: %s called before hpss_SetLoginCred\n", func);
    return fail(func, -EPERM);
  }
  if (control("slow", func, v, sizeof v)) usleep((useconds_t)atol(v) * 1000);
  if (control("fail", func, v, sizeof v)) return fail(func, atoi(v));
  return 0;
}

#define ENTER(name)                  \
  do {                               \
    int enter_rc_ = enter(#name);    \
    if (enter_rc_ < 0) return enter_rc_; \
  } while (0)

static int64_t now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---- per-file state -------------------------------------------------------------------------- */

typedef struct {
  int exists;
  uint64_t size, disk, tape;
  char cartridge[HPSS_PV_NAME_SIZE];
  int32_t position;
  uint64_t offset;
  int64_t mtime, ctime;
  int64_t stage_end_ms; /* 0: no stage running */
  int64_t stage_start_ms;
  dev_t dev;
  ino_t ino;
  int is_dir;
} state_t;

static void state_path(const state_t *s, const char *kind, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s/%lu-%lu", home(), kind, (unsigned long)s->dev, (unsigned long)s->ino);
}

static void save(const state_t *s) {
  char path[PATH_MAX], tmp[PATH_MAX + 8];
  state_path(s, "files", path, sizeof path);
  snprintf(tmp, sizeof tmp, "%s.new", path);
  FILE *fp = fopen(tmp, "w");
  if (!fp) return;
  fprintf(fp, "%llu %llu %llu %s %d %llu %lld %lld %lld %lld\n", (unsigned long long)s->size,
          (unsigned long long)s->disk, (unsigned long long)s->tape, s->cartridge[0] ? s->cartridge : "-",
          s->position, (unsigned long long)s->offset, (long long)s->mtime, (long long)s->ctime,
          (long long)s->stage_start_ms, (long long)s->stage_end_ms);
  fclose(fp);
  rename(tmp, path);
}

static void forget(const state_t *s) {
  char path[PATH_MAX];
  state_path(s, "files", path, sizeof path);
  unlink(path);
  state_path(s, "tape", path, sizeof path);
  unlink(path);
}

static int copy_file(const char *from, const char *to) {
  int in = open(from, O_RDONLY), out = -1, rc = 0;
  if (in < 0) return -errno;
  struct stat st;
  int restore = stat(to, &st) == 0 && !(st.st_mode & S_IWUSR);
  if (restore) chmod(to, st.st_mode | S_IWUSR);
  out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (out < 0) rc = -errno;
  char buf[65536];
  ssize_t n;
  while (rc == 0 && (n = read(in, buf, sizeof buf)) > 0)
    if (write(out, buf, (size_t)n) != n) rc = -EIO;
  if (out >= 0) { fsync(out); close(out); }
  close(in);
  if (restore) chmod(to, st.st_mode);
  return rc;
}

static void keep_times(const char *path, const state_t *s) {
  struct timespec t[2] = {{s->mtime, 0}, {s->mtime, 0}};
  utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW);
}

/* Finishes a stage whose time is up: the tape copy comes back to level 0. */
static void settle(const char *path, state_t *s) {
  if (!s->stage_end_ms || now_ms() < s->stage_end_ms) return;
  char tape[PATH_MAX];
  state_path(s, "tape", tape, sizeof tape);
  if (copy_file(tape, path) == 0) {
    keep_times(path, s);
    s->disk = s->size;
  }
  s->stage_end_ms = s->stage_start_ms = 0;
  save(s);
}

/* Loads the state of `path` (settling a due stage). -errno when the path does not exist. */
static int load(const char *path, state_t *s) {
  struct stat st;
  memset(s, 0, sizeof *s);
  if (lstat(path, &st) != 0) return -errno;
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  s->is_dir = S_ISDIR(st.st_mode);
  s->size = s->disk = (uint64_t)st.st_size;
  s->mtime = st.st_mtime;
  s->ctime = st.st_ctime;
  if (s->is_dir || !home()) return 0;
  char sp[PATH_MAX], cart[HPSS_PV_NAME_SIZE];
  state_path(s, "files", sp, sizeof sp);
  FILE *fp = fopen(sp, "r");
  if (!fp) return 0;
  unsigned long long size, disk, tape, off;
  long long mt, ct, ss, se;
  int pos;
  if (fscanf(fp, "%llu %llu %llu %31s %d %llu %lld %lld %lld %lld", &size, &disk, &tape, cart, &pos, &off,
             &mt, &ct, &ss, &se) == 10) {
    s->exists = 1;
    s->size = size;
    s->disk = disk;
    s->tape = tape;
    snprintf(s->cartridge, sizeof s->cartridge, "%s", strcmp(cart, "-") == 0 ? "" : cart);
    s->position = pos;
    s->offset = off;
    s->mtime = mt;
    s->ctime = ct;
    s->stage_start_ms = ss;
    s->stage_end_ms = se;
  }
  fclose(fp);
  if (s->exists) settle(path, s);
  return 0;
}

static uint64_t disk_bytes_now(const state_t *s) {
  if (!s->stage_end_ms) return s->disk;
  int64_t total = s->stage_end_ms - s->stage_start_ms, done = now_ms() - s->stage_start_ms;
  if (total <= 0 || done <= 0) return s->disk;
  uint64_t part = (uint64_t)((double)s->size * (double)done / (double)total);
  return part < s->size ? part : s->size - 1;
}

static void start_stage(const char *path, state_t *s) {
  char log[PATH_MAX];
  snprintf(log, sizeof log, "%s/stage.log", home());
  FILE *fp = fopen(log, "a");
  if (fp) {
    fprintf(fp, "%s %d %llu %s\n", s->cartridge, s->position, (unsigned long long)s->offset, path);
    fclose(fp);
  }
  s->stage_start_ms = now_ms();
  s->stage_end_ms = s->stage_start_ms + control_num("stage_ms", 0);
  if (s->stage_end_ms == s->stage_start_ms) s->stage_end_ms += 1;
  save(s);
}

/* ---- descriptors ------------------------------------------------------------------------------ */

#define MAX_FDS 4096
static struct {
  int used, fd;
  char path[PATH_MAX];
} fds[MAX_FDS];

static int add_fd(int fd, const char *path) {
  pthread_mutex_lock(&lock);
  for (int i = 0; i < MAX_FDS; i++) {
    if (!fds[i].used) {
      fds[i].used = 1;
      fds[i].fd = fd;
      snprintf(fds[i].path, sizeof fds[i].path, "%s", path);
      pthread_mutex_unlock(&lock);
      return i;
    }
  }
  pthread_mutex_unlock(&lock);
  close(fd);
  return -EMFILE;
}

static int real_fd(int h) { return h >= 0 && h < MAX_FDS && fds[h].used ? fds[h].fd : -1; }

/* ---- bitfile ids and request ids -------------------------------------------------------------- */

#define MAX_OBJS 65536
static struct {
  bfs_bitfile_obj_handle_t obj;
  char path[PATH_MAX];
} *objs;
static int nobjs;

static bfs_bitfile_obj_handle_t object_of(const char *path, const state_t *s) {
  bfs_bitfile_obj_handle_t o;
  memset(&o, 0, sizeof o);
  uint64_t dev = s->dev, ino = s->ino;
  memcpy(o.BfId.Bytes, &dev, 8);
  memcpy(o.BfId.Bytes + 8, &ino, 8);
  pthread_mutex_lock(&lock);
  if (!objs) objs = calloc(MAX_OBJS, sizeof *objs);
  int i;
  for (i = 0; i < nobjs; i++)
    if (memcmp(&objs[i].obj, &o, sizeof o) == 0) break;
  if (i == nobjs && nobjs < MAX_OBJS) nobjs++;
  if (i < MAX_OBJS) {
    objs[i].obj = o;
    snprintf(objs[i].path, sizeof objs[i].path, "%s", path);
  }
  pthread_mutex_unlock(&lock);
  return o;
}

#ifndef HPSS_DOUBLE_WITHOUT_BATCH
static int path_of(const bfs_bitfile_obj_handle_t *o, char *out) {
  int found = 0;
  pthread_mutex_lock(&lock);
  for (int i = 0; i < nobjs; i++)
    if (memcmp(&objs[i].obj, o, sizeof *o) == 0) {
      strcpy(out, objs[i].path);
      found = 1;
    }
  pthread_mutex_unlock(&lock);
  return found;
}
#endif

/* ---- login ------------------------------------------------------------------------------------ */

int hpss_SetLoginCred(char *Principal, hpss_authn_mech_t Mech, hpss_rpc_cred_type_t CredType,
                      hpss_rpc_auth_type_t AuthType, void *Authenticator) {
  if (!home()) {
    fprintf(stderr, "hpss double: HPSS_DOUBLE_DIR is not set\n");
    return fail("hpss_SetLoginCred", -EINVAL);
  }
  char v[32];
  if (control("fail", "hpss_SetLoginCred", v, sizeof v)) return fail("hpss_SetLoginCred", atoi(v));
  if (!Principal || !*Principal || Mech != hpss_authn_mech_unix || CredType != hpss_rpc_cred_client ||
      AuthType != hpss_rpc_auth_type_keytab)
    return fail("hpss_SetLoginCred", -EINVAL);
  if (!Authenticator || access((const char *)Authenticator, R_OK) != 0)
    return fail("hpss_SetLoginCred", -EACCES);
  char dirs[PATH_MAX];
  snprintf(dirs, sizeof dirs, "%s/files", home());
  mkdir(dirs, 0755);
  snprintf(dirs, sizeof dirs, "%s/tape", home());
  mkdir(dirs, 0755);
  logged_in = 1;
  return 0;
}

/* Logging out leaves a mark ($HPSS_DOUBLE_DIR/logged-out) so tests can see a clean shutdown. */
void hpss_PurgeLoginCred(void) {
  logged_in = 0;
  char mark[PATH_MAX];
  if (!home()) return;
  snprintf(mark, sizeof mark, "%s/logged-out", home());
  FILE *fp = fopen(mark, "w");
  if (fp) fclose(fp);
}
void hpss_ClientAPIReset(void) {}

hpss_errno_state_t hpss_GetLastHPSSErrno(void) { return last_error; }

int hpss_LookupRootCS(char *SiteName, hpss_srvr_id_t *Id) {
  ENTER(hpss_LookupRootCS);
  if (!SiteName || !*SiteName) return fail("hpss_LookupRootCS", -ENOENT);
  memset(Id, 0x5a, sizeof *Id);
  return 0;
}

int hpss_PingCore(hpss_srvr_id_t *Id, unsigned32 *Secs, unsigned32 *USecs) {
  ENTER(hpss_PingCore);
  (void)Id;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  *Secs = (unsigned32)(tv.tv_sec + control_num("latency_secs", 0));
  *USecs = (unsigned32)tv.tv_usec;
  return 0;
}

/* ---- data ------------------------------------------------------------------------------------- */

int hpss_Open(const char *Path, int Oflag, mode_t Mode, const void *HintsIn, const void *HintsPri,
              void *HintsOut) {
  ENTER(hpss_Open);
  (void)HintsOut;
  if ((HintsIn == NULL) != (HintsPri == NULL)) return fail("hpss_Open", -EINVAL);
  int nonblock = Oflag & O_NONBLOCK;
  int flags = Oflag & ~O_NONBLOCK;
  if (flags & O_CREAT) {
    int fd = open(Path, flags | O_NOFOLLOW, Mode);
    return fd < 0 ? fail("hpss_Open", -errno) : add_fd(fd, Path);
  }
  state_t s;
  int rc = load(Path, &s);
  if (rc < 0) return fail("hpss_Open", rc);
  if ((flags & O_ACCMODE) == O_RDONLY && s.disk < s.size) {
    if (nonblock) {
      /* No stage on open: reads come from the tape copy. */
      char tape[PATH_MAX];
      state_path(&s, "tape", tape, sizeof tape);
      int fd = open(tape, O_RDONLY);
      return fd < 0 ? fail("hpss_Open", -errno) : add_fd(fd, Path);
    }
    /* The default COS stages on open, synchronously. */
    if (!s.stage_end_ms) start_stage(Path, &s);
    while (s.disk < s.size) {
      usleep(10000);
      load(Path, &s);
    }
  }
  /* Migrate and purge open O_RDWR a file that is 0444; the double works on paths for those. */
  int fd = open(Path, (flags & O_ACCMODE) == O_RDWR ? O_RDONLY : flags | O_NOFOLLOW);
  return fd < 0 ? fail("hpss_Open", -errno) : add_fd(fd, Path);
}

int hpss_Close(int Fildes) {
  ENTER(hpss_Close);
  int fd = real_fd(Fildes);
  if (fd < 0) return fail("hpss_Close", -EBADF);
  pthread_mutex_lock(&lock);
  fds[Fildes].used = 0;
  pthread_mutex_unlock(&lock);
  return close(fd) == 0 ? 0 : fail("hpss_Close", -errno);
}

ssize_t hpss_Read(int Fildes, void *Buf, size_t Nbyte) {
  ENTER(hpss_Read);
  int fd = real_fd(Fildes);
  if (fd < 0) return fail("hpss_Read", -EBADF);
  ssize_t n = read(fd, Buf, Nbyte);
  return n < 0 ? fail("hpss_Read", -errno) : n;
}

ssize_t hpss_Write(int Fildes, const void *Buf, size_t Nbyte) {
  ENTER(hpss_Write);
  int fd = real_fd(Fildes);
  if (fd < 0) return fail("hpss_Write", -EBADF);
  ssize_t n = write(fd, Buf, Nbyte);
  return n < 0 ? fail("hpss_Write", -errno) : n;
}

hpss_off_t hpss_Lseek(int Fildes, hpss_off_t Offset, int Whence) {
  ENTER(hpss_Lseek);
  int fd = real_fd(Fildes);
  if (fd < 0) return fail("hpss_Lseek", -EBADF);
  off_t o = lseek(fd, (off_t)Offset, Whence);
  return o < 0 ? fail("hpss_Lseek", -errno) : (hpss_off_t)o;
}

int hpss_Fsync(int Fildes) {
  ENTER(hpss_Fsync);
  int fd = real_fd(Fildes);
  if (fd < 0) return fail("hpss_Fsync", -EBADF);
  return fsync(fd) == 0 ? 0 : fail("hpss_Fsync", -errno);
}

/* ---- attributes ------------------------------------------------------------------------------- */

int hpss_Lstat(const char *Path, hpss_stat_t *Buf) {
  ENTER(hpss_Lstat);
  struct stat st;
  if (lstat(Path, &st) != 0) return fail("hpss_Lstat", -errno);
  state_t s;
  int rc = load(Path, &s);
  if (rc < 0) return fail("hpss_Lstat", rc);
  memset(Buf, 0, sizeof *Buf);
  Buf->st_size = s.size;
  Buf->st_mode = st.st_mode;
  Buf->st_dev = (uint32_t)st.st_dev;
  Buf->st_ino = st.st_ino;
  Buf->st_nlink = (uint16_t)st.st_nlink;
  Buf->hpss_st_atime = st.st_atime;
  Buf->hpss_st_mtime = s.mtime;
  Buf->hpss_st_ctime = s.ctime;
  return 0;
}

int hpss_FileGetAttributes(const char *Path, hpss_fileattr_t *AttrOut) {
  ENTER(hpss_FileGetAttributes);
  state_t s;
  int rc = load(Path, &s);
  if (rc < 0) return fail("hpss_FileGetAttributes", rc);
  memset(AttrOut, 0, sizeof *AttrOut);
  AttrOut->Attrs.DataLength = s.is_dir ? 0 : s.size;
  AttrOut->Attrs.Type = s.is_dir ? NS_OBJECT_TYPE_DIRECTORY : NS_OBJECT_TYPE_FILE;
  AttrOut->Attrs.BitfileObj = object_of(Path, &s);
  return 0;
}

int hpss_FileGetXAttributes(const char *Path, uint32_t Flags, uint32_t StorageLevel, hpss_xfileattr_t *AttrOut) {
  ENTER(hpss_FileGetXAttributes);
  (void)StorageLevel;
  if (!(Flags & API_GET_STATS_FOR_ALL_LEVELS)) return fail("hpss_FileGetXAttributes", -EINVAL);
  state_t s;
  int rc = load(Path, &s);
  if (rc < 0) return fail("hpss_FileGetXAttributes", rc);
  /* Without NO_BLOCK the call waits for a file that is moving between levels, as HPSS does. */
  while (!(Flags & API_GET_XATTRS_NO_BLOCK) && s.stage_end_ms) {
    usleep(10000);
    load(Path, &s);
  }
  memset(AttrOut, 0, sizeof *AttrOut);
  AttrOut->Attrs.DataLength = s.is_dir ? 0 : s.size;
  AttrOut->Attrs.Type = s.is_dir ? NS_OBJECT_TYPE_DIRECTORY : NS_OBJECT_TYPE_FILE;
  if (s.is_dir) return 0;
  AttrOut->Attrs.BitfileObj = object_of(Path, &s);
  bf_sc_attrib_t *disk = &AttrOut->SCAttrib[0];
  disk->BytesAtLevel = disk_bytes_now(&s);
  disk->Flags = BFS_BFATTRS_LEVEL_IS_DISK | (disk->BytesAtLevel > 0 ? BFS_BFATTRS_DATAEXISTS_AT_LEVEL : 0);
  if (tape_cos()) {
    bf_sc_attrib_t *tape = &AttrOut->SCAttrib[1];
    tape->Flags = BFS_BFATTRS_LEVEL_IS_TAPE;
    if (s.tape > 0) {
      tape->Flags |= BFS_BFATTRS_DATAEXISTS_AT_LEVEL;
      tape->BytesAtLevel = s.tape;
      tape->NumberOfVVs = 1;
      tape->VVAttrib[0].RelPosition = s.position;
      tape->VVAttrib[0].RelPositionOffset = s.offset;
      tape->VVAttrib[0].BytesOnVV = s.tape;
      /* One allocation holds the list and its element: freeing PVList frees both. */
      pv_list_t *pv = calloc(1, sizeof(pv_list_t) + sizeof(pv_list_element_t));
      pv->List.List_len = 1;
      pv->List.List_val = (pv_list_element_t *)(pv + 1);
      snprintf(pv->List.List_val[0].Name, HPSS_PV_NAME_SIZE, "%s", s.cartridge);
      tape->VVAttrib[0].PVList = pv;
    }
  }
  return 0;
}

/* ---- hierarchy -------------------------------------------------------------------------------- */

int hpss_Migrate(int Fildes, uint32_t SrcLevel, uint32_t Flags, u_signed64 *BytesMigrated) {
  ENTER(hpss_Migrate);
  (void)SrcLevel;
  if (real_fd(Fildes) < 0) return fail("hpss_Migrate", -EBADF);
  const char *path = fds[Fildes].path;
  if (!tape_cos()) return fail("hpss_Migrate", -EINVAL);
  state_t s;
  int rc = load(path, &s);
  if (rc < 0) return fail("hpss_Migrate", rc);
  *BytesMigrated = 0;
  if (s.tape < s.size || s.size == 0) {
    char tape[PATH_MAX], counter[PATH_MAX];
    state_path(&s, "tape", tape, sizeof tape);
    if ((rc = copy_file(path, tape)) < 0) return fail("hpss_Migrate", rc);
    /* Round-robin over the cartridges; positions and offsets grow per cartridge. */
    long carts = control_num("cartridges", 1), n = 0;
    if (carts < 1) carts = 1;
    snprintf(counter, sizeof counter, "%s/migrated", home());
    pthread_mutex_lock(&lock);
    FILE *fp = fopen(counter, "r");
    if (fp) { if (fscanf(fp, "%ld", &n) != 1) n = 0; fclose(fp); }
    fp = fopen(counter, "w");
    if (fp) { fprintf(fp, "%ld\n", n + 1); fclose(fp); }
    pthread_mutex_unlock(&lock);
    s.exists = 1;
    snprintf(s.cartridge, sizeof s.cartridge, "PV%04ld", n % carts);
    s.position = (int32_t)(n / carts);
    s.offset = (uint64_t)(n / carts) * 1048576u;
    s.tape = s.size;
    *BytesMigrated = s.size;
    save(&s);
  }
  if (Flags & HPSS_MIGRATE_PURGE_DATA) {
    u_signed64 purged;
    return hpss_Purge(Fildes, 0, 0, 0, BFS_PURGE_ALL, &purged);
  }
  return 0;
}

int hpss_Purge(int Fildes, u_signed64 Offset, u_signed64 Length, uint32_t StorageLevel, uint32_t Flags,
               u_signed64 *BytesPurged) {
  ENTER(hpss_Purge);
  (void)Offset; (void)Length; (void)StorageLevel; (void)Flags;
  if (real_fd(Fildes) < 0) return fail("hpss_Purge", -EBADF);
  const char *path = fds[Fildes].path;
  state_t s;
  int rc = load(path, &s);
  if (rc < 0) return fail("hpss_Purge", rc);
  /* Never the only copy. */
  if (s.tape < s.size || !s.exists) return fail("hpss_Purge", -EINVAL);
  *BytesPurged = s.disk;
  if (s.disk > 0) {
    struct stat st;
    stat(path, &st);
    chmod(path, st.st_mode | S_IWUSR);
    if (truncate(path, 0) != 0) rc = -errno;
    chmod(path, st.st_mode);
    if (rc < 0) return fail("hpss_Purge", rc);
    keep_times(path, &s);
    s.disk = 0;
    save(&s);
  }
  return 0;
}

int hpss_Stage(int Fildes, u_signed64 Offset, u_signed64 Length, uint32_t StorageLevel, uint32_t Flags) {
  ENTER(hpss_Stage);
  (void)Offset; (void)Length; (void)StorageLevel;
  if (real_fd(Fildes) < 0) return fail("hpss_Stage", -EBADF);
  const char *path = fds[Fildes].path;
  state_t s;
  int rc = load(path, &s);
  if (rc < 0) return fail("hpss_Stage", rc);
  if (s.disk >= s.size) return 0;
  if (!s.stage_end_ms) start_stage(path, &s);
  if (Flags & BFS_ASYNCH_CALL) return 0;
  while (s.disk < s.size) {
    usleep(10000);
    load(path, &s);
  }
  return 0;
}

static struct {
  hpss_reqid_t id;
  char path[PATH_MAX];
} requests[1024];
static int nrequests;

int hpss_StageCallBack(const char *Path, u_signed64 Offset, u_signed64 Length, uint32_t StorageLevel,
                       bfs_callback_addr_t *CallBackPtr, uint32_t Flags, hpss_reqid_t *ReqID,
                       bfs_bitfile_obj_handle_t *BitfileObj) {
  ENTER(hpss_StageCallBack);
  (void)Offset; (void)Length; (void)StorageLevel; (void)CallBackPtr; (void)Flags;
  state_t s;
  int rc = load(Path, &s);
  if (rc < 0) return fail("hpss_StageCallBack", rc);
  *BitfileObj = object_of(Path, &s);
  if (s.disk < s.size && !s.stage_end_ms) start_stage(Path, &s);
  pthread_mutex_lock(&lock);
  requests[nrequests % 1024].id = *ReqID;
  snprintf(requests[nrequests % 1024].path, PATH_MAX, "%s", Path);
  nrequests++;
  pthread_mutex_unlock(&lock);
  return 0;
}

int hpss_GetAsyncStatus(hpss_reqid_t CallBackId, bfs_bitfile_obj_handle_t *BitfileObj, int32_t *Status) {
  ENTER(hpss_GetAsyncStatus);
  (void)BitfileObj;
  char path[PATH_MAX] = "";
  pthread_mutex_lock(&lock);
  for (int i = 0; i < nrequests && i < 1024; i++)
    if (memcmp(&requests[i].id, &CallBackId, sizeof CallBackId) == 0) strcpy(path, requests[i].path);
  pthread_mutex_unlock(&lock);
  *Status = HPSS_STAGE_STATUS_UNKNOWN;
  state_t s;
  if (path[0] && load(path, &s) == 0 && s.stage_end_ms) *Status = HPSS_STAGE_STATUS_ACTIVE;
  return 0;
}

#ifndef HPSS_DOUBLE_WITHOUT_BATCH
int API_StageBatchInit(hpss_stage_batch_t *Batch, int Len) {
  Batch->Len = Len;
  Batch->Entries = calloc((size_t)Len, sizeof *Batch->Entries);
  return Batch->Entries || Len == 0 ? 0 : -ENOMEM;
}

int API_StageBatchInsertBFObj(hpss_stage_batch_t *Batch, int Idx, const bfs_bitfile_obj_handle_t *BfObj,
                              int FromLevel, int ToLevel, u_signed64 Offset, u_signed64 Length,
                              uint32_t Flags) {
  if (Idx < 0 || Idx >= Batch->Len) return -EINVAL;
  hpss_stage_batch_entry_t *e = &Batch->Entries[Idx];
  e->BfObj = *BfObj;
  e->FromLevel = FromLevel;
  e->ToLevel = ToLevel;
  e->Offset = Offset;
  e->Length = Length;
  e->Flags = Flags;
  return 0;
}

int hpss_StageBatchCallBack(hpss_stage_batch_t *Batch, bfs_callback_addr_t *CallBackPtr, hpss_reqid_t *ReqID,
                            hpss_stage_bitfile_list_t *BFIDs, hpss_stage_batch_status_t *Status) {
  ENTER(hpss_StageBatchCallBack);
  (void)CallBackPtr;
  memset(Status, 0, sizeof *Status);
  BFIDs->BFList.BFList_len = (unsigned)Batch->Len;
  BFIDs->BFList.BFList_val = calloc((size_t)Batch->Len + 1, sizeof(bfs_bitfile_obj_handle_t));
  for (int i = 0; i < Batch->Len; i++) {
    char path[PATH_MAX];
    BFIDs->BFList.BFList_val[i] = Batch->Entries[i].BfObj;
    if (!path_of(&Batch->Entries[i].BfObj, path)) return fail("hpss_StageBatchCallBack", -ENOENT);
    state_t s;
    if (load(path, &s) == 0 && s.disk < s.size && !s.stage_end_ms) start_stage(path, &s);
  }
  static uint64_t next_id = 1;
  memset(ReqID, 0, sizeof *ReqID);
  pthread_mutex_lock(&lock);
  uint64_t id = next_id++;
  pthread_mutex_unlock(&lock);
  memcpy(ReqID, &id, sizeof id);
  return 0;
}

int hpss_GetBatchAsynchStatus(hpss_reqid_t ReqID, hpss_stage_bitfile_list_t *BFIDs, hpss_stage_status_type_t Type,
                              hpss_stage_batch_status_t *Status) {
  ENTER(hpss_GetBatchAsynchStatus);
  (void)ReqID; (void)Type;
  unsigned n = BFIDs->BFList.BFList_len;
  Status->Len = n;
  Status->RequestStatus = 0;
  Status->Files = calloc((size_t)n + 1, sizeof *Status->Files);
  for (unsigned i = 0; i < n; i++) {
    char path[PATH_MAX];
    Status->Files[i].BfObj = BFIDs->BFList.BFList_val[i];
    state_t s;
    if (!path_of(&BFIDs->BFList.BFList_val[i], path) || load(path, &s) != 0)
      Status->Files[i].Status = -ENOENT;
    else
      Status->Files[i].Status = s.stage_end_ms ? HPSS_ENOTALLMOVED : 0;
    if (Status->Files[i].Status == HPSS_ENOTALLMOVED) Status->RequestStatus = HPSS_ENOTALLMOVED;
  }
  return 0;
}

void API_StageBatchFree(hpss_stage_batch_t *Batch) {
  free(Batch->Entries);
  Batch->Entries = NULL;
}

void API_StageStatusFree(hpss_stage_batch_status_t *Status) {
  free(Status->Files);
  Status->Files = NULL;
}
#endif

/* ---- name space ------------------------------------------------------------------------------- */

int hpss_Utime(const char *Path, const struct utimbuf *Times) {
  ENTER(hpss_Utime);
  if (utime(Path, Times) != 0) return fail("hpss_Utime", -errno);
  state_t s;
  if (load(Path, &s) == 0 && s.exists) {
    s.mtime = Times->modtime;
    save(&s);
  }
  return 0;
}

int hpss_Chmod(const char *Path, mode_t Mode) {
  ENTER(hpss_Chmod);
  return chmod(Path, Mode) == 0 ? 0 : fail("hpss_Chmod", -errno);
}

int hpss_Mkdir(const char *Path, mode_t Mode) {
  ENTER(hpss_Mkdir);
  return mkdir(Path, Mode) == 0 ? 0 : fail("hpss_Mkdir", -errno);
}

#ifndef HPSS_DOUBLE_WITHOUT_RENAME
int hpss_Rename(const char *Old, const char *New) {
  ENTER(hpss_Rename);
  state_t replaced;
  int had_target = load(New, &replaced) == 0 && !replaced.is_dir;
  struct stat old;
  if (lstat(Old, &old) == 0 && had_target && old.st_ino == replaced.ino && old.st_dev == replaced.dev)
    had_target = 0;
  if (rename(Old, New) != 0) return fail("hpss_Rename", -errno);
  if (had_target) forget(&replaced);
  return 0;
}
#endif

int hpss_Unlink(const char *Path) {
  ENTER(hpss_Unlink);
  state_t s;
  int rc = load(Path, &s);
  if (rc < 0) return fail("hpss_Unlink", rc);
  if (unlink(Path) != 0) return fail("hpss_Unlink", -errno);
  forget(&s);
  return 0;
}

int hpss_Rmdir(const char *Path) {
  ENTER(hpss_Rmdir);
  return rmdir(Path) == 0 ? 0 : fail("hpss_Rmdir", -errno);
}

#define MAX_DIRS 1024
static DIR *dirs[MAX_DIRS];

int hpss_Opendir(const char *Path) {
  ENTER(hpss_Opendir);
  DIR *d = opendir(Path);
  if (!d) return fail("hpss_Opendir", -errno);
  pthread_mutex_lock(&lock);
  for (int i = 0; i < MAX_DIRS; i++)
    if (!dirs[i]) {
      dirs[i] = d;
      pthread_mutex_unlock(&lock);
      return i;
    }
  pthread_mutex_unlock(&lock);
  closedir(d);
  return fail("hpss_Opendir", -EMFILE);
}

int hpss_Readdir(int Dirdes, hpss_dirent_t *DirentPtr) {
  ENTER(hpss_Readdir);
  if (Dirdes < 0 || Dirdes >= MAX_DIRS || !dirs[Dirdes]) return fail("hpss_Readdir", -EBADF);
  memset(DirentPtr, 0, sizeof *DirentPtr);
  errno = 0;
  struct dirent *e = readdir(dirs[Dirdes]);
  if (!e) return errno ? fail("hpss_Readdir", -errno) : 0;
  DirentPtr->d_namelen = (uint32_t)strlen(e->d_name);
  snprintf(DirentPtr->d_name, sizeof DirentPtr->d_name, "%s", e->d_name);
  return 0;
}

int hpss_Closedir(int Dirdes) {
  if (Dirdes < 0 || Dirdes >= MAX_DIRS || !dirs[Dirdes]) return fail("hpss_Closedir", -EBADF);
  pthread_mutex_lock(&lock);
  DIR *d = dirs[Dirdes];
  dirs[Dirdes] = NULL;
  pthread_mutex_unlock(&lock);
  closedir(d);
  return 0;
}
