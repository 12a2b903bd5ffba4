/*
 * hpss_api.h (test edition): the declarations, constants and structures of the HPSS client API that
 * archiveinterface uses, written from the public interface description in the project's spec. It is
 * NOT the licensed IBM header: names, prototypes and the five-level/ten-VV shapes are public; every
 * numeric value marked "ours" and every structure layout is this project's own. The glue
 * (csrc/aihpss_glue.c) and the test double (double/hpss_double.c) are compiled against it; a site with
 * HPSS builds the glue against its real header instead (HPSS_ROOT), so these values never reach it.
 */
#ifndef HPSS_API_H
#define HPSS_API_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <utime.h>

typedef uint64_t u_signed64;
typedef int32_t signed32;
typedef uint32_t unsigned32;
typedef int64_t hpss_off_t;      /* ours: width not public */
typedef int64_t timestamp_sec_t; /* ours: width not public */

/* Authentication (public values). */
typedef enum {
  hpss_authn_mech_invalid = 0,
  hpss_authn_mech_krb5 = 1,
  hpss_authn_mech_unix = 2,
  hpss_authn_mech_gsi = 3,
  hpss_authn_mech_spkm = 4
} hpss_authn_mech_t;
typedef enum { hpss_rpc_cred_server = 1, hpss_rpc_cred_client = 2, hpss_rpc_cred_both = 3 } hpss_rpc_cred_type_t;
typedef enum {
  hpss_rpc_auth_type_invalid = 0,
  hpss_rpc_auth_type_none = 1,
  hpss_rpc_auth_type_keytab = 2,
  hpss_rpc_auth_type_keyfile = 3,
  hpss_rpc_auth_type_key = 4,
  hpss_rpc_auth_type_passwd = 5
} hpss_rpc_auth_type_t;

/* Shapes (public). */
#define HPSS_MAX_STORAGE_LEVELS 5
#define BFS_MAX_VV_TO_RETURN_AT_LEVEL 10
#define HPSS_ENOTALLMOVED (-1406)

/* Sizes and flag values: ours. */
#define HPSS_PV_NAME_SIZE 32
#define HPSS_MAX_FILE_NAME 256
#define API_GET_STATS_FOR_LEVEL 0x01u
#define API_GET_STATS_FOR_ALL_LEVELS 0x02u
#define API_GET_STATS_FOR_1STLEVEL 0x04u
#define API_GET_STATS_OPTIMIZE 0x08u
#define API_GET_XATTRS_NO_BLOCK 0x10u
#define BFS_STAGE_ALL 0x01u
#define BFS_ASYNCH_CALL 0x02u
#define BFS_PURGE_ALL 0x01u
#define BFS_BFATTRS_DATAEXISTS_AT_LEVEL 0x01u
#define BFS_BFATTRS_LEVEL_IS_DISK 0x02u
#define BFS_BFATTRS_LEVEL_IS_TAPE 0x04u
#define BFS_BFATTRS_ADDITIONAL_VV_EXIST 0x08u
#define HPSS_STAGE_STATUS_UNKNOWN 0
#define HPSS_STAGE_STATUS_ACTIVE 1
#define HPSS_STAGE_STATUS_QUEUED 2
#define HPSS_MIGRATE_FORCE 0x01u
#define HPSS_MIGRATE_PURGE_DATA 0x02u
#define HPSS_MIGRATE_NO_COPY 0x04u
#define NS_OBJECT_TYPE_FILE 1
#define NS_OBJECT_TYPE_DIRECTORY 2
#define NS_OBJECT_TYPE_HARD_LINK 3
#define NS_OBJECT_TYPE_SYM_LINK 4
#define NS_OBJECT_TYPE_JUNCTION 5

/* Identifiers (layouts ours). */
typedef struct { unsigned char Bytes[16]; } hpss_uuid_t;
typedef hpss_uuid_t hpss_srvr_id_t;
typedef struct { unsigned char Bytes[32]; } hpssoid_t;
typedef struct { unsigned char Bytes[32]; } ns_ObjHandle_t;
typedef hpss_uuid_t hpss_reqid_t; /* a UUID from HPSS 8.x */
typedef struct {
  hpssoid_t BfId;
  uint32_t BfHash;
  uint32_t ValidHash;
} bfs_bitfile_obj_handle_t;
typedef struct {
  uint32_t id;
  unsigned char sockaddr[16];
} bfs_callback_addr_t;

/* Attributes (field names public, layout ours). */
typedef struct {
  uint32_t COSId;
  uint32_t Type;
  uint64_t DataLength;
  bfs_bitfile_obj_handle_t BitfileObj;
  uint32_t UID, GID;
  uint32_t ModePerms;
  uint32_t OptionFlags;
} hpss_Attrs_t;
typedef struct {
  ns_ObjHandle_t ObjectHandle;
  hpss_Attrs_t Attrs;
} hpss_fileattr_t;
typedef struct {
  char Name[HPSS_PV_NAME_SIZE];
  uint32_t Flags;
} pv_list_element_t;
typedef struct {
  struct {
    unsigned int List_len;
    pv_list_element_t *List_val;
  } List;
} pv_list_t;
typedef struct {
  hpssoid_t VVID;
  int32_t RelPosition;
  uint64_t RelPositionOffset;
  uint64_t BytesOnVV;
  pv_list_t *PVList;
} bf_vv_attrib_t;
typedef struct {
  bf_vv_attrib_t VVAttrib[BFS_MAX_VV_TO_RETURN_AT_LEVEL];
  uint32_t NumberOfVVs;
  uint64_t BytesAtLevel;
  uint32_t OptimumAccessSize;
  uint32_t StripeWidth;
  uint64_t StripeLength;
  uint32_t Flags;
} bf_sc_attrib_t;
typedef struct {
  ns_ObjHandle_t ObjectHandle;
  hpss_Attrs_t Attrs;
  bf_sc_attrib_t SCAttrib[HPSS_MAX_STORAGE_LEVELS];
} hpss_xfileattr_t;

typedef struct {
  uint64_t st_size;
  uint32_t st_mode;
  uint32_t st_dev;
  uint64_t st_ino;
  uint16_t st_nlink;
  uint16_t st_flag;
  uint32_t st_uid, st_gid;
  timestamp_sec_t hpss_st_atime, hpss_st_mtime, hpss_st_ctime;
} hpss_stat_t;

typedef struct {
  uint64_t d_offset;
  ns_ObjHandle_t d_handle;
  uint32_t d_reclen;
  uint32_t d_namelen;
  char d_name[HPSS_MAX_FILE_NAME];
} hpss_dirent_t;

typedef struct {
  int hpss_errno;
  char func[64];
  hpss_reqid_t requestId;
} hpss_errno_state_t;

/* Batch stage (HPSS >= 9.3; layouts ours). */
typedef struct {
  bfs_bitfile_obj_handle_t BfObj;
  int FromLevel, ToLevel;
  uint64_t Offset, Length;
  uint32_t Flags;
} hpss_stage_batch_entry_t;
typedef struct {
  int Len;
  hpss_stage_batch_entry_t *Entries;
} hpss_stage_batch_t;
typedef struct {
  struct {
    unsigned int BFList_len;
    bfs_bitfile_obj_handle_t *BFList_val;
  } BFList;
} hpss_stage_bitfile_list_t;
typedef struct {
  bfs_bitfile_obj_handle_t BfObj;
  int32_t Status; /* 0 done, HPSS_ENOTALLMOVED still moving, other < 0 failed */
} hpss_stage_file_status_t;
typedef struct {
  int32_t RequestStatus;
  unsigned int Len;
  hpss_stage_file_status_t *Files;
} hpss_stage_batch_status_t;
typedef enum { HPSS_STAGE_STATUS_TYPE_ALL = 0 } hpss_stage_status_type_t;

/* Entry points. */
int hpss_SetLoginCred(char *Principal, hpss_authn_mech_t Mech, hpss_rpc_cred_type_t CredType,
                      hpss_rpc_auth_type_t AuthType, void *Authenticator);
void hpss_PurgeLoginCred(void);
void hpss_ClientAPIReset(void);
int hpss_Open(const char *Path, int Oflag, mode_t Mode, const void *HintsIn, const void *HintsPri,
              void *HintsOut);
int hpss_Close(int Fildes);
ssize_t hpss_Read(int Fildes, void *Buf, size_t Nbyte);
ssize_t hpss_Write(int Fildes, const void *Buf, size_t Nbyte);
hpss_off_t hpss_Lseek(int Fildes, hpss_off_t Offset, int Whence);
int hpss_Fsync(int Fildes);
int hpss_Lstat(const char *Path, hpss_stat_t *Buf);
int hpss_FileGetAttributes(const char *Path, hpss_fileattr_t *AttrOut);
int hpss_FileGetXAttributes(const char *Path, uint32_t Flags, uint32_t StorageLevel,
                            hpss_xfileattr_t *AttrOut);
int hpss_Stage(int Fildes, u_signed64 Offset, u_signed64 Length, uint32_t StorageLevel, uint32_t Flags);
int hpss_StageCallBack(const char *Path, u_signed64 Offset, u_signed64 Length, uint32_t StorageLevel,
                       bfs_callback_addr_t *CallBackPtr, uint32_t Flags, hpss_reqid_t *ReqID,
                       bfs_bitfile_obj_handle_t *BitfileObj);
int hpss_GetAsyncStatus(hpss_reqid_t CallBackId, bfs_bitfile_obj_handle_t *BitfileObj, int32_t *Status);
int hpss_Purge(int Fildes, u_signed64 Offset, u_signed64 Length, uint32_t StorageLevel, uint32_t Flags,
               u_signed64 *BytesPurged);
int hpss_Migrate(int Fildes, uint32_t SrcLevel, uint32_t Flags, u_signed64 *BytesMigrated);
int hpss_Utime(const char *Path, const struct utimbuf *Times);
int hpss_Chmod(const char *Path, mode_t Mode);
int hpss_Mkdir(const char *Path, mode_t Mode);
int hpss_Rename(const char *Old, const char *New);
int hpss_Unlink(const char *Path);
int hpss_Rmdir(const char *Path);
int hpss_Opendir(const char *Path);
int hpss_Readdir(int Dirdes, hpss_dirent_t *DirentPtr);
int hpss_Closedir(int Dirdes);
int hpss_LookupRootCS(char *SiteName, hpss_srvr_id_t *Id);
int hpss_PingCore(hpss_srvr_id_t *Id, unsigned32 *Secs, unsigned32 *USecs);
hpss_errno_state_t hpss_GetLastHPSSErrno(void);

int API_StageBatchInit(hpss_stage_batch_t *Batch, int Len);
int API_StageBatchInsertBFObj(hpss_stage_batch_t *Batch, int Idx, const bfs_bitfile_obj_handle_t *BfObj,
                              int FromLevel, int ToLevel, u_signed64 Offset, u_signed64 Length,
                              uint32_t Flags);
int hpss_StageBatchCallBack(hpss_stage_batch_t *Batch, bfs_callback_addr_t *CallBackPtr,
                            hpss_reqid_t *ReqID, hpss_stage_bitfile_list_t *BFIDs,
                            hpss_stage_batch_status_t *Status);
int hpss_GetBatchAsynchStatus(hpss_reqid_t ReqID, hpss_stage_bitfile_list_t *BFIDs,
                              hpss_stage_status_type_t Type, hpss_stage_batch_status_t *Status);
void API_StageBatchFree(hpss_stage_batch_t *Batch);
void API_StageStatusFree(hpss_stage_batch_status_t *Status);

#endif
