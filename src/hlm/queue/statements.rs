//! The SQL of the request queue, written once for both databases: every statement is built from
//! one text in which the few fragments where SQLite and PostgreSQL differ come from a
//! [`Dialect`] (how to say "now", a duration, a JSON list test, row locking, column types).
//!
//! Conventions every statement follows, so that both databases bind the same values in the same
//! order: placeholders are `$N` (both drivers accept them); in a statement that reads or writes a
//! time, `$1` is the queue's clock in Unix milliseconds (SQLite uses it; PostgreSQL ignores it
//! and uses the database's `now()`); times come back as Unix milliseconds, counts and numbers
//! as 64-bit integers, the object/key list as JSON text (see [`super::rows`]).

/// What differs between the SQL of SQLite and of PostgreSQL.
pub(crate) trait Dialect {
    /// The current time, as stored: `now()` or `$1`.
    fn now(&self) -> &'static str;
    /// A duration of `param` milliseconds, to add to or subtract from a time.
    fn millis(&self, param: &str) -> String;
    /// `column` (a time) as Unix milliseconds.
    fn time_as_millis(&self, column: &str) -> String;
    /// `column` (an integer of any width) as a 64-bit integer.
    fn as_i64(&self, column: &str) -> String;
    /// `column` (the object/key list) as JSON text.
    fn list_as_text(&self, column: &str) -> String;
    /// `param` (JSON text) as the stored object/key list.
    fn list_from_text(&self, param: &str) -> String;
    /// `value` is one of the strings of the JSON array `param`.
    fn in_json_array(&self, value: &str, param: &str) -> String;
    /// Whether the stored list `column` contains the string `param`.
    fn list_contains(&self, column: &str, param: &str) -> String;
    /// Appended to a `SELECT` that picks rows to claim: PostgreSQL locks them and skips rows
    /// another claimer holds; SQLite needs nothing (its writers hold the one write lock).
    fn lock_picked_rows(&self) -> &'static str;
}

/// Every statement of the queue, in one dialect.
#[derive(Debug)]
pub(crate) struct Statements {
    /// Insert a request. `$2` op, `$3` target kind, `$4` account, `$5` container, `$6` object,
    /// `$7` list (JSON), `$8` storage policy, `$9` priority. Returns `id`.
    pub(crate) submit: String,
    /// Fail running requests whose lease expired on the last attempt. `$2` max attempts.
    pub(crate) exhaust: String,
    /// Claim due requests. `$2` owner, `$3` lease (ms), `$4` operations (JSON array or NULL),
    /// `$5` limit. Returns the claimed rows.
    pub(crate) claim: String,
    /// Extend a lease. `$2` lease (ms), `$3` id, `$4` owner, `$5` attempt. Returns the expiry.
    pub(crate) renew: String,
    /// Store the counters. `$2` done, `$3` failed, `$4` total, `$5` id, `$6` owner, `$7` attempt.
    pub(crate) progress: String,
    /// Mark done. `$2` id, `$3` owner, `$4` attempt.
    pub(crate) complete: String,
    /// Delete the failed requests of the same target submitted before request `$2`.
    pub(crate) clear_older_failures: String,
    /// Record a failed attempt. `$2` new state, `$3` backoff (ms), `$4` error, `$5` id,
    /// `$6` owner, `$7` attempt. Returns the next attempt time.
    pub(crate) fail: String,
    /// One request. `$1` id.
    pub(crate) get: String,
    /// Listing, one per address shape (any, account, account + container), each in SwiftHLM
    /// order and paged (see [`list_statements`]).
    pub(crate) list: [ListStatements; 3],
    /// Delete finished requests older than the retention. `$2` retention (ms).
    pub(crate) expire: String,
    /// Requests per state.
    pub(crate) counts: String,
}

/// The two orders of one listing shape.
#[derive(Debug)]
pub(crate) struct ListStatements {
    /// Pending and running first, then failed, each oldest first (what SwiftHLM shows).
    pub(crate) swifthlm_order: String,
    /// Ids above `$7`, in id order (paging).
    pub(crate) paged: String,
}

impl Statements {
    /// The statements of `d`.
    pub(crate) fn new(d: &dyn Dialect) -> Statements {
        let now = d.now();
        let columns = columns(d);
        let lease_check = |first: usize| {
            format!(
                "id = ${first} AND state = 'running' AND lease_owner = ${} AND attempts = ${}",
                first + 1,
                first + 2
            )
        };
        Statements {
            submit: format!(
                "INSERT INTO hlm_requests (op, target_kind, account, container, object,
                     target_list, storage_policy, priority, state, attempts, next_attempt_at,
                     created_at, updated_at)
                 VALUES ($2, $3, $4, $5, $6, {list}, $8, $9, 'pending', 0, {now}, {now}, {now})
                 RETURNING id",
                list = d.list_from_text("$7"),
            ),
            // A lease that expired on the last allowed attempt ends the request instead of
            // starting another attempt (see `QueueOptions::max_attempts`).
            exhaust: format!(
                "UPDATE hlm_requests
                 SET state = 'failed', finished_at = {now}, updated_at = {now},
                     lease_expires_at = NULL,
                     last_error = 'lease of ' || coalesce(lease_owner, '?')
                         || ' expired during attempt ' || attempts || ' of ' || $2
                 WHERE id IN (SELECT id FROM hlm_requests
                              WHERE state = 'running' AND lease_expires_at <= {now}
                                AND attempts >= $2
                              {lock})",
                lock = d.lock_picked_rows(),
            ),
            // MATERIALIZED: the picking subquery runs exactly once, it is not folded into the
            // UPDATE where PostgreSQL could evaluate it again.
            claim: format!(
                "WITH picked AS MATERIALIZED (
                     SELECT id AS picked_id FROM hlm_requests
                     WHERE state IN ('pending', 'running')
                       AND ((state = 'pending' AND next_attempt_at <= {now})
                            OR (state = 'running' AND lease_expires_at <= {now}))
                       AND ($4 IS NULL OR {op_wanted})
                     ORDER BY priority DESC, id
                     LIMIT $5
                     {lock})
                 UPDATE hlm_requests AS r
                 SET state = 'running', attempts = r.attempts + 1, lease_owner = $2,
                     lease_expires_at = {now} + {lease}, updated_at = {now},
                     last_error = CASE WHEN r.state = 'running'
                         THEN 'lease of ' || coalesce(r.lease_owner, '?')
                              || ' expired during attempt ' || r.attempts
                         ELSE r.last_error END
                 FROM picked WHERE r.id = picked.picked_id
                 RETURNING {columns}",
                op_wanted = d.in_json_array("op", "$4"),
                lock = d.lock_picked_rows(),
                lease = d.millis("$3"),
            ),
            renew: format!(
                "UPDATE hlm_requests
                 SET lease_expires_at = {now} + {lease}, updated_at = {now}
                 WHERE {check}
                 RETURNING {expiry}",
                lease = d.millis("$2"),
                check = lease_check(3),
                expiry = d.time_as_millis("lease_expires_at"),
            ),
            progress: format!(
                "UPDATE hlm_requests
                 SET progress_done = $2, progress_failed = $3, progress_total = $4,
                     updated_at = {now}
                 WHERE {check}",
                check = lease_check(5),
            ),
            complete: format!(
                "UPDATE hlm_requests
                 SET state = 'done', finished_at = {now}, updated_at = {now},
                     lease_expires_at = NULL
                 WHERE {check}",
                check = lease_check(2),
            ),
            // SwiftHLM: a success deletes the failed entries of the same target, whatever
            // their operation. Only older ones: a failure submitted after it is news.
            clear_older_failures: "DELETE FROM hlm_requests AS f
                 WHERE f.state = 'failed' AND f.id < $2
                   AND EXISTS (SELECT 1 FROM hlm_requests AS s
                               WHERE s.id = $2
                                 AND s.target_kind = f.target_kind
                                 AND s.account IS NOT DISTINCT FROM f.account
                                 AND s.container IS NOT DISTINCT FROM f.container
                                 AND s.object IS NOT DISTINCT FROM f.object
                                 AND s.target_list IS NOT DISTINCT FROM f.target_list)"
                .to_owned(),
            fail: format!(
                "UPDATE hlm_requests
                 SET state = $2,
                     next_attempt_at = CASE WHEN $2 = 'pending' THEN {now} + {backoff}
                                            ELSE next_attempt_at END,
                     finished_at = CASE WHEN $2 = 'failed' THEN {now} ELSE NULL END,
                     updated_at = {now}, lease_expires_at = NULL, last_error = $4
                 WHERE {check}
                 RETURNING {next}",
                backoff = d.millis("$3"),
                check = lease_check(5),
                next = d.time_as_millis("next_attempt_at"),
            ),
            get: format!("SELECT {columns} FROM hlm_requests WHERE id = $1"),
            list: [
                "$2 IS NULL AND $3 IS NULL",
                "account = $2 AND $3 IS NULL",
                "account = $2 AND container = $3",
            ]
            .map(|address| list_statements(d, &columns, address)),
            expire: format!(
                "DELETE FROM hlm_requests
                 WHERE state IN ('done', 'failed') AND finished_at < {now} - {retention}",
                retention = d.millis("$2"),
            ),
            counts: "SELECT state, count(*) FROM hlm_requests GROUP BY state".to_owned(),
        }
    }
}

/// The listing statements for one address condition. `$1` states (JSON array), `$2` account,
/// `$3` container, `$4` object, `$5` object prefix, `$6` limit, `$7` paging marker (id).
///
/// One statement per address shape and order, so that the (account, container, id) index is
/// usable whatever plan the database caches for the prepared statement: it cannot be when the
/// condition is `($2 IS NULL OR account = $2)`, and a page of a container's requests is a
/// range scan of it. Every statement mentions every parameter, so all bind the same way.
fn list_statements(d: &dyn Dialect, columns: &str, address: &str) -> ListStatements {
    let matching = format!(
        "SELECT {columns} FROM hlm_requests
         WHERE {address}
           AND {state_wanted}
           AND ($4 IS NULL
                OR target_kind = 'container'
                OR (target_kind = 'object' AND object = $4)
                OR (target_kind = 'objects' AND {listed}))
           AND ($5 IS NULL
                OR (target_kind = 'object' AND substr(object, 1, length($5)) = $5))",
        state_wanted = d.in_json_array("state", "$1"),
        listed = d.list_contains("target_list", "$4"),
    );
    ListStatements {
        swifthlm_order: format!(
            "{matching} AND $7 IS NULL ORDER BY state = 'failed', created_at, id LIMIT $6"
        ),
        paged: format!("{matching} AND id > $7 ORDER BY id LIMIT $6"),
    }
}

/// The columns of a request row in the form [`super::rows::record`] decodes, each under its
/// own name.
fn columns(d: &dyn Dialect) -> String {
    /// How a column is read.
    enum As {
        Stored,
        List,
        Integer,
        Time,
    }
    use As::*;
    [
        ("id", Stored),
        ("op", Stored),
        ("target_kind", Stored),
        ("account", Stored),
        ("container", Stored),
        ("object", Stored),
        ("target_list", List),
        ("storage_policy", Integer),
        ("priority", Integer),
        ("state", Stored),
        ("attempts", Integer),
        ("next_attempt_at", Time),
        ("lease_owner", Stored),
        ("lease_expires_at", Time),
        ("progress_done", Stored),
        ("progress_failed", Stored),
        ("progress_total", Stored),
        ("last_error", Stored),
        ("created_at", Time),
        ("updated_at", Time),
        ("finished_at", Time),
    ]
    .iter()
    .map(|(column, read_as)| {
        let expression = match read_as {
            Stored => return (*column).to_owned(),
            List => d.list_as_text(column),
            Integer => d.as_i64(column),
            Time => d.time_as_millis(column),
        };
        if expression == *column {
            expression
        } else {
            format!("{expression} AS {column}")
        }
    })
    .collect::<Vec<_>>()
    .join(", ")
}
