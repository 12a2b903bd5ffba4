-- Request queue of the /hlm/v1 API (PostgreSQL flavour; the SQLite one has the same columns).
-- One row per submitted migrate/premigrate/recall request. Times come from the database clock,
-- so several server instances agree on lease expiry whatever their own clocks say.
CREATE TABLE hlm_requests (
    -- Identity values are never reused, so "submitted before" is "smaller id".
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    op               TEXT        NOT NULL CHECK (op IN ('migrate', 'premigrate', 'recall')),
    -- container: account/container; object: account/container/object;
    -- objects: account/container + target_list of object names; keys: target_list of backend keys.
    target_kind      TEXT        NOT NULL
                                 CHECK (target_kind IN ('container', 'object', 'objects', 'keys')),
    account          TEXT,
    container        TEXT,
    object           TEXT,
    target_list      JSONB,      -- array of strings
    storage_policy   INTEGER     NOT NULL DEFAULT 0,
    priority         SMALLINT    NOT NULL DEFAULT 50,
    state            TEXT        NOT NULL DEFAULT 'pending'
                                 CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts         INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    progress_done    BIGINT      NOT NULL DEFAULT 0,
    progress_failed  BIGINT      NOT NULL DEFAULT 0,
    progress_total   BIGINT      NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ
);

-- Claiming scans only the live rows, best priority and oldest first.
CREATE INDEX hlm_requests_live ON hlm_requests (priority DESC, id)
    WHERE state IN ('pending', 'running');
-- The requests endpoint and "success clears older failures" look rows up by Swift address.
CREATE INDEX hlm_requests_target ON hlm_requests (account, container, object);
-- Retention expiry.
CREATE INDEX hlm_requests_finished ON hlm_requests (finished_at)
    WHERE state IN ('done', 'failed');
