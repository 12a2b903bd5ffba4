-- The Oracle HSM sideband catalog tables (SAM-QFS samdb.schema, version 1.0), as sam-dbupd fills them.
CREATE TABLE sam_version (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  version VARCHAR(16) NOT NULL
);
INSERT INTO sam_version (id, version) VALUES (0, '1.0');
CREATE TABLE sam_inode (
  ino INT UNSIGNED NOT NULL,
  gen INT UNSIGNED NOT NULL,
  type TINYINT NOT NULL,
  size BIGINT NOT NULL,
  csum CHAR(32),
  create_time INT UNSIGNED NOT NULL,
  modify_time INT UNSIGNED NOT NULL,
  uid INT UNSIGNED NOT NULL,
  gid INT UNSIGNED NOT NULL,
  online TINYINT NOT NULL,
  PRIMARY KEY (ino, gen)
);
CREATE TABLE sam_path (
  ino INT UNSIGNED NOT NULL,
  gen INT UNSIGNED NOT NULL,
  path VARCHAR(4096) NOT NULL,
  PRIMARY KEY (ino, gen),
  INDEX sam_path_path (path(255))
);
CREATE TABLE sam_file (
  p_ino INT UNSIGNED NOT NULL,
  p_gen INT UNSIGNED NOT NULL,
  name_hash SMALLINT NOT NULL,
  name VARCHAR(256) NOT NULL,
  ino INT UNSIGNED NOT NULL,
  gen INT UNSIGNED NOT NULL,
  PRIMARY KEY (p_ino, p_gen, name_hash, name),
  INDEX sam_file_inode (ino, gen)
);
CREATE TABLE sam_archive (
  ino INT UNSIGNED NOT NULL,
  gen INT UNSIGNED NOT NULL,
  copy TINYINT NOT NULL,
  seq SMALLINT NOT NULL,
  media_type CHAR(4) NOT NULL,
  vsn CHAR(32) NOT NULL,
  position BIGINT NOT NULL,
  off_set INT UNSIGNED NOT NULL,
  size BIGINT NOT NULL,
  create_time INT UNSIGNED NOT NULL,
  stale TINYINT NOT NULL,
  PRIMARY KEY (ino, gen, copy, seq),
  INDEX sam_archive_volume (media_type, vsn)
);
