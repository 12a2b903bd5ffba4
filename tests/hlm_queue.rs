//! The HLM request queue against real databases: every behaviour runs twice, on a SQLite file
//! in a temporary directory and on the PostgreSQL server at
//! `postgres://postgres@127.0.0.1:5432/test` (override with `ARCHIVEINTERFACE_TEST_POSTGRES_URL`),
//! each PostgreSQL test in a schema of its own that is dropped afterwards.
//!
//! The PostgreSQL tests fail (never skip) when the server cannot be reached.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use archiveinterface::hlm::queue::{
    Clock, Error, FailOutcome, NewRequest, Op, Progress, QueueOptions, RequestFilter, RequestId,
    RequestQueue, RequestRecord, State, Target,
};
use sqlx::types::chrono::{TimeZone, Utc};
use sqlx::Connection;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database for one test: a SQLite file, or a fresh PostgreSQL schema dropped on drop (also
/// when the test panics).
struct TestDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

static SCHEMA_SEQ: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        // A directory that does not exist yet: connect must create it.
        let path = dir.path().join("state").join("queue.db");
        TestDb {
            url: format!("sqlite://{}", path.display()),
            _dir: Some(dir),
            pg: None,
        }
    }

    async fn postgres() -> TestDb {
        let base = std::env::var("ARCHIVEINTERFACE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let mut admin = match sqlx::PgConnection::connect(&base).await {
            Ok(c) => c,
            Err(e) => panic!(
                "PostgreSQL is required for the queue tests and is not reachable at {base}: {e}\n\
                 start PostgreSQL: apt-get install postgresql && pg_ctlcluster 15 main start \
                 && su postgres -c \"psql -c 'CREATE DATABASE test'\" (and allow trust auth for \
                 127.0.0.1 in pg_hba.conf), or set ARCHIVEINTERFACE_TEST_POSTGRES_URL to a \
                 database this test may create schemas in"
            ),
        };
        let schema = format!(
            "hlmq_{}_{}_{}",
            std::process::id(),
            SCHEMA_SEQ.fetch_add(1, Ordering::Relaxed),
            Utc::now().timestamp_micros()
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .expect("create test schema");
        admin.close().await.ok();
        let sep = if base.contains('?') { '&' } else { '?' };
        TestDb {
            url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
            _dir: None,
            pg: Some((base, schema)),
        }
    }

    /// Run one statement on the test database outside the queue.
    async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if self.pg.is_some() {
            let mut c = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect");
            sqlx::query(sql).execute(&mut c).await.expect("execute");
            c.close().await.ok();
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("connect");
            sqlx::query(sql).execute(&mut c).await.expect("execute");
            c.close().await.ok();
        }
    }

    async fn queue(&self, options: QueueOptions) -> RequestQueue {
        RequestQueue::connect(&self.url, options)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, schema)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with
        // its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut c)
                    .await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}

/// Options for tests: small pools, and times short enough to wait for.
fn opts() -> QueueOptions {
    QueueOptions {
        max_attempts: 3,
        backoff_base: Duration::from_millis(600),
        backoff_max: Duration::from_millis(1000),
        lease_duration: Duration::from_secs(30),
        retention: Duration::from_secs(3600),
        max_connections: 4,
        clock: Clock::system(),
    }
}

/// A clock `offset` milliseconds off the system clock; the test moves it.
fn offset_clock(offset: &Arc<AtomicI64>) -> Clock {
    let offset = offset.clone();
    Clock::new(move || {
        let offset = offset.load(Ordering::Relaxed);
        let by = Duration::from_millis(offset.unsigned_abs());
        if offset >= 0 {
            Utc::now() + by
        } else {
            Utc::now() - by
        }
    })
}

fn object(a: &str, c: &str, o: &str) -> Target {
    Target::Object {
        account: a.into(),
        container: c.into(),
        object: o.into(),
    }
}

fn container(a: &str, c: &str) -> Target {
    Target::Container {
        account: a.into(),
        container: c.into(),
    }
}

async fn submit(q: &RequestQueue, op: Op, target: Target) -> RequestId {
    q.submit(NewRequest::new(op, target)).await.expect("submit")
}

async fn get(q: &RequestQueue, id: RequestId) -> RequestRecord {
    q.get(id).await.expect("get").expect("request exists")
}

/// Run `$body(db)` as two tests, `sqlite` and `postgres`, in a module named after the test.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::TestDb::sqlite()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(super::TestDb::postgres().await).await;
            }
        }
    )*};
}

on_both!(
    submit_and_get_every_target_kind,
    invalid_targets_are_rejected,
    claim_order_priority_then_fifo,
    claim_many_filters_by_operation,
    complete_needs_the_lease,
    progress_counters,
    lease_expiry_takeover,
    renewed_lease_is_not_taken_over,
    retries_with_backoff_until_max_attempts,
    expired_lease_on_last_attempt_fails,
    fail_permanently_skips_retries,
    retention_expiry,
    success_clears_older_failures_of_same_target,
    list_matches_swifthlm_rules,
    request_names_from_the_database,
    queue_survives_reopen,
    schema_coexists_and_is_forward_compatible,
    two_instances_process_1000_requests_once,
    list_pages_through_2500_requests,
);

async fn submit_and_get_every_target_kind(db: TestDb) {
    let q = db.queue(opts()).await;
    let targets = [
        container("AUTH_test", "cont3"),
        object("AUTH_test", "cont3", "dir/obj00"),
        Target::Objects {
            account: "AUTH_test".into(),
            container: "cont3".into(),
            objects: vec!["a".into(), "b/c".into(), "d,e".into()],
        },
        Target::Keys(vec!["1/00/1".into(), "2/00/2".into()]),
    ];
    let before = Utc::now() - ms(5);
    let mut ids = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let mut request = NewRequest::new(Op::Migrate, target.clone());
        request.storage_policy = i as i32;
        request.priority = 10 + i as i16;
        ids.push(q.submit(request).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    for (i, (id, target)) in ids.iter().zip(&targets).enumerate() {
        let r = get(&q, *id).await;
        assert_eq!(r.id, *id);
        assert_eq!(r.op, Op::Migrate);
        assert_eq!(&r.target, target);
        assert_eq!(r.storage_policy, i as i32);
        assert_eq!(r.priority, 10 + i as i16);
        assert_eq!(r.state, State::Pending);
        assert_eq!(r.attempts, 0);
        assert_eq!(r.progress, Progress::default());
        assert_eq!(r.lease_owner, None);
        assert_eq!(r.lease_expires_at, None);
        assert_eq!(r.last_error, None);
        assert_eq!(r.finished_at, None);
        assert!(r.created_at >= before && r.created_at <= Utc::now() + ms(5));
        assert!(r.next_attempt_at <= Utc::now() + ms(5));
    }
    for op in [Op::Premigrate, Op::Recall] {
        let id = submit(&q, op, container("AUTH_test", "c")).await;
        assert_eq!(get(&q, id).await.op, op);
    }
    assert!(q.get(RequestId(999_999)).await.unwrap().is_none());
    let counts = q.counts().await.unwrap();
    assert_eq!(
        (counts.pending, counts.running, counts.done, counts.failed),
        (6, 0, 0, 0)
    );
}

async fn invalid_targets_are_rejected(db: TestDb) {
    let q = db.queue(opts()).await;
    for target in [
        container("", "c"),
        container("a", ""),
        container("a/b", "c"),
        object("a", "c", ""),
        Target::Objects {
            account: "a".into(),
            container: "c".into(),
            objects: vec![],
        },
        Target::Keys(vec![]),
        Target::Keys(vec!["".into()]),
    ] {
        let err = q
            .submit(NewRequest::new(Op::Recall, target.clone()))
            .await
            .expect_err("rejected");
        assert!(
            matches!(err, Error::InvalidRequest { .. }),
            "{target:?}: {err}"
        );
    }
    assert_eq!(q.counts().await.unwrap().pending, 0);
}

async fn claim_order_priority_then_fifo(db: TestDb) {
    let q = db.queue(opts()).await;
    assert!(q.claim("a").await.unwrap().is_none(), "empty queue");
    let first = submit(&q, Op::Migrate, object("A", "c", "1")).await;
    let second = submit(&q, Op::Recall, object("A", "c", "2")).await;
    let mut urgent = NewRequest::new(Op::Recall, object("A", "c", "3"));
    urgent.priority = 90;
    let urgent = q.submit(urgent).await.unwrap();

    let c1 = q.claim("inst-a").await.unwrap().expect("claim");
    assert_eq!(c1.record.id, urgent, "higher priority first");
    assert_eq!(c1.record.state, State::Running);
    assert_eq!(c1.record.attempts, 1);
    assert_eq!(c1.record.lease_owner.as_deref(), Some("inst-a"));
    assert_eq!(c1.lease.id, urgent);
    assert_eq!(c1.lease.owner, "inst-a");
    assert_eq!(c1.lease.attempt, 1);
    assert_eq!(c1.record.lease_expires_at, Some(c1.lease.expires_at));
    let lease_left = (c1.lease.expires_at - Utc::now()).num_milliseconds();
    assert!(
        lease_left > 25_000 && lease_left <= 31_000,
        "lease of about 30 s: {lease_left} ms"
    );

    let c2 = q.claim("inst-b").await.unwrap().expect("claim");
    assert_eq!(c2.record.id, first, "then oldest first");
    let c3 = q.claim("inst-a").await.unwrap().expect("claim");
    assert_eq!(c3.record.id, second);
    assert!(q.claim("inst-b").await.unwrap().is_none(), "all running");
    let stored = get(&q, second).await;
    assert_eq!(stored.state, State::Running);
    assert_eq!(stored.lease_owner.as_deref(), Some("inst-a"));
    assert_eq!(q.counts().await.unwrap().running, 3);
}

async fn claim_many_filters_by_operation(db: TestDb) {
    let q = db.queue(opts()).await;
    let mut recalls = Vec::new();
    for i in 0..5 {
        submit(&q, Op::Migrate, object("A", "c", &format!("m{i}"))).await;
        recalls.push(submit(&q, Op::Recall, object("A", "c", &format!("r{i}"))).await);
    }
    let batch = q.claim_many("sched", 3, Some(&[Op::Recall])).await.unwrap();
    let ids: Vec<_> = batch.iter().map(|c| c.record.id).collect();
    assert_eq!(ids, recalls[..3]);
    assert!(batch
        .iter()
        .all(|c| c.lease.attempt == 1 && c.lease.owner == "sched"));
    let rest = q
        .claim_many("sched", 100, Some(&[Op::Recall]))
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert!(q
        .claim_many("sched", 10, Some(&[Op::Recall]))
        .await
        .unwrap()
        .is_empty());
    assert!(q.claim_many("x", 0, None).await.unwrap().is_empty());
    let migrates = q
        .claim_many("x", 100, Some(&[Op::Migrate, Op::Premigrate]))
        .await
        .unwrap();
    assert_eq!(migrates.len(), 5);
    assert!(migrates.iter().all(|c| c.record.op == Op::Migrate));
}

async fn complete_needs_the_lease(db: TestDb) {
    let q = db.queue(opts()).await;
    let id = submit(&q, Op::Migrate, object("A", "c", "o")).await;
    let claimed = q.claim("inst-a").await.unwrap().unwrap();
    let mut stranger = claimed.lease.clone();
    stranger.owner = "inst-b".into();
    let mut other_attempt = claimed.lease.clone();
    other_attempt.attempt = 2;
    for lease in [&stranger, &other_attempt] {
        assert!(matches!(q.complete(lease).await, Err(Error::LeaseLost { id: i }) if i == id));
        assert!(matches!(
            q.fail(lease, "x").await,
            Err(Error::LeaseLost { .. })
        ));
        assert!(matches!(
            q.renew_lease(lease).await,
            Err(Error::LeaseLost { .. })
        ));
        assert!(matches!(
            q.record_progress(lease, Progress::default()).await,
            Err(Error::LeaseLost { .. })
        ));
    }
    assert_eq!(get(&q, id).await.state, State::Running, "untouched");

    assert_eq!(q.complete(&claimed.lease).await.unwrap(), 0);
    let done = get(&q, id).await;
    assert_eq!(done.state, State::Done);
    assert!(done.finished_at.is_some());
    assert_eq!(done.lease_expires_at, None);
    assert_eq!(
        done.lease_owner.as_deref(),
        Some("inst-a"),
        "who ran it is kept"
    );
    // Finished: the lease is gone for good.
    assert!(matches!(
        q.complete(&claimed.lease).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        q.fail(&claimed.lease, "late").await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        q.renew_lease(&claimed.lease).await,
        Err(Error::LeaseLost { .. })
    ));
    assert_eq!(get(&q, id).await.state, State::Done);
    assert!(
        q.claim("inst-b").await.unwrap().is_none(),
        "done is never claimed"
    );
    // Done requests are not what the requests endpoint shows.
    assert!(q.list(&RequestFilter::default()).await.unwrap().is_empty());
    let all_done = RequestFilter {
        states: vec![State::Done],
        ..RequestFilter::default()
    };
    assert_eq!(q.list(&all_done).await.unwrap().len(), 1);
}

async fn progress_counters(db: TestDb) {
    let q = db.queue(opts()).await;
    let id = submit(&q, Op::Recall, container("A", "big")).await;
    let claimed = q.claim("inst-a").await.unwrap().unwrap();
    let p1 = Progress {
        done: 10,
        failed: 1,
        total: 100,
    };
    q.record_progress(&claimed.lease, p1).await.unwrap();
    assert_eq!(get(&q, id).await.progress, p1);
    // Absolute values: repeating is harmless.
    q.record_progress(&claimed.lease, p1).await.unwrap();
    assert_eq!(get(&q, id).await.progress, p1);
    let p2 = Progress {
        done: 99,
        failed: 1,
        total: 100,
    };
    q.record_progress(&claimed.lease, p2).await.unwrap();
    let listed = q.list(&RequestFilter::for_path("A/big")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].progress, p2);
    q.complete(&claimed.lease).await.unwrap();
    assert_eq!(get(&q, id).await.progress, p2, "kept after completion");
    let big = Progress {
        done: u64::from(u32::MAX) * 4,
        failed: 0,
        total: u64::from(u32::MAX) * 4,
    };
    submit(&q, Op::Recall, container("A", "huge")).await;
    let c = q.claim("inst-a").await.unwrap().unwrap();
    q.record_progress(&c.lease, big).await.unwrap();
    assert_eq!(get(&q, c.record.id).await.progress, big, "64-bit counters");
}

async fn lease_expiry_takeover(db: TestDb) {
    let options = QueueOptions {
        lease_duration: Duration::from_millis(1000),
        ..opts()
    };
    let a = db.queue(options.clone()).await;
    let b = db.queue(options).await;
    let id = submit(&a, Op::Migrate, object("A", "c", "o")).await;
    let held = a.claim("inst-a").await.unwrap().unwrap();
    a.record_progress(
        &held.lease,
        Progress {
            done: 1,
            failed: 0,
            total: 2,
        },
    )
    .await
    .unwrap();
    assert!(
        b.claim("inst-b").await.unwrap().is_none(),
        "lease still valid"
    );

    // inst-a "crashes": it stops renewing.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let taken = b
        .claim("inst-b")
        .await
        .unwrap()
        .expect("expired lease is taken over");
    assert_eq!(taken.record.id, id);
    assert_eq!(
        taken.lease.attempt, 2,
        "the crashed claim counts as an attempt"
    );
    assert_eq!(taken.record.lease_owner.as_deref(), Some("inst-b"));
    let note = taken.record.last_error.clone().unwrap_or_default();
    assert!(note.contains("lease of inst-a expired"), "{note}");

    // The old holder wakes up: everything it tries is refused and changes nothing.
    assert!(matches!(
        a.renew_lease(&held.lease).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        a.record_progress(&held.lease, Progress::default()).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        a.complete(&held.lease).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        a.fail(&held.lease, "x").await,
        Err(Error::LeaseLost { .. })
    ));
    let r = get(&b, id).await;
    assert_eq!((r.state, r.attempts), (State::Running, 2));
    assert_eq!(r.lease_owner.as_deref(), Some("inst-b"));

    // Even the same owner claiming again after its own lease expired is a new claim.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let again = b.claim("inst-b").await.unwrap().expect("taken over again");
    assert_eq!(again.lease.attempt, 3);
    assert!(matches!(
        b.complete(&taken.lease).await,
        Err(Error::LeaseLost { .. })
    ));
    b.complete(&again.lease).await.unwrap();
    assert_eq!(get(&a, id).await.state, State::Done);
}

async fn renewed_lease_is_not_taken_over(db: TestDb) {
    let options = QueueOptions {
        lease_duration: Duration::from_millis(1000),
        ..opts()
    };
    let a = db.queue(options.clone()).await;
    let b = db.queue(options).await;
    let id = submit(&a, Op::Recall, object("A", "c", "o")).await;
    let held = a.claim("inst-a").await.unwrap().unwrap();
    let mut last = held.lease.expires_at;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let expires = a.renew_lease(&held.lease).await.expect("renew");
        assert!(expires >= last, "renewal extends: {expires} >= {last}");
        last = expires;
        assert!(
            b.claim("inst-b").await.unwrap().is_none(),
            "held lease is respected"
        );
    }
    assert_eq!(get(&a, id).await.lease_expires_at, Some(last));
    a.complete(&held.lease).await.unwrap();
}

async fn retries_with_backoff_until_max_attempts(db: TestDb) {
    // max_attempts 3, backoff 600 ms, then 1200 ms capped to 1000 ms.
    let q = db.queue(opts()).await;
    let id = submit(&q, Op::Migrate, object("A", "c", "o")).await;

    let c1 = q.claim("inst-a").await.unwrap().unwrap();
    let before = Utc::now();
    let outcome = q.fail(&c1.lease, "tape drive busy").await.unwrap();
    let FailOutcome::Retry { at, after } = outcome else {
        panic!("first failure retries: {outcome:?}");
    };
    assert_eq!(after, Duration::from_millis(600));
    assert!(at >= before + ms(550) && at <= Utc::now() + ms(650), "{at}");
    let r = get(&q, id).await;
    assert_eq!(r.state, State::Pending);
    assert_eq!(r.attempts, 1);
    assert_eq!(r.next_attempt_at, at);
    assert_eq!(r.last_error.as_deref(), Some("tape drive busy"));
    assert_eq!(r.lease_expires_at, None);
    assert_eq!(r.finished_at, None);
    assert!(
        q.claim("inst-a").await.unwrap().is_none(),
        "not before the backoff"
    );
    // Still listed as pending while waiting.
    let listed = q.list(&RequestFilter::for_path("A/c/o")).await.unwrap();
    assert_eq!(
        listed[0].swifthlm_name().unwrap().rsplit("--").next(),
        Some("pending")
    );

    tokio::time::sleep(Duration::from_millis(800)).await;
    let c2 = q.claim("inst-b").await.unwrap().expect("due again");
    assert_eq!((c2.record.id, c2.lease.attempt), (id, 2));
    let outcome = q.fail(&c2.lease, "tape drive busy again").await.unwrap();
    let FailOutcome::Retry { after, .. } = outcome else {
        panic!("second failure retries: {outcome:?}");
    };
    assert_eq!(after, Duration::from_millis(1000), "capped at backoff_max");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        q.claim("inst-a").await.unwrap().is_none(),
        "not before the capped backoff"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;

    let c3 = q.claim("inst-a").await.unwrap().expect("third attempt");
    assert_eq!(c3.lease.attempt, 3);
    assert_eq!(
        q.fail(&c3.lease, "no such tape").await.unwrap(),
        FailOutcome::Failed
    );
    let r = get(&q, id).await;
    assert_eq!(r.state, State::Failed);
    assert_eq!(r.attempts, 3);
    assert_eq!(r.last_error.as_deref(), Some("no such tape"));
    assert!(r.finished_at.is_some());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        q.claim("inst-a").await.unwrap().is_none(),
        "failed is never claimed"
    );
    let listed = q.list(&RequestFilter::for_path("A/c")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, State::Failed);
    assert_eq!(q.counts().await.unwrap().failed, 1);
}

async fn expired_lease_on_last_attempt_fails(db: TestDb) {
    let options = QueueOptions {
        max_attempts: 2,
        lease_duration: Duration::from_millis(300),
        ..opts()
    };
    let q = db.queue(options).await;
    let id = submit(&q, Op::Recall, object("A", "c", "poison")).await;
    let c1 = q.claim("inst-a").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c2 = q
        .claim("inst-b")
        .await
        .unwrap()
        .expect("second attempt after a crash");
    assert_eq!(c2.lease.attempt, 2);
    drop(c1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The second holder crashed too: attempts exhausted, the request fails instead of looping.
    assert!(q.claim("inst-c").await.unwrap().is_none());
    let r = get(&q, id).await;
    assert_eq!(r.state, State::Failed);
    assert_eq!(r.attempts, 2);
    assert!(r.finished_at.is_some());
    let error = r.last_error.unwrap_or_default();
    assert!(
        error.contains("lease of inst-b expired during attempt 2"),
        "{error}"
    );
    assert!(matches!(
        q.complete(&c2.lease).await,
        Err(Error::LeaseLost { .. })
    ));
}

async fn fail_permanently_skips_retries(db: TestDb) {
    let q = db.queue(opts()).await;
    let id = submit(&q, Op::Recall, object("A", "c", "missing")).await;
    let c = q.claim("inst-a").await.unwrap().unwrap();
    let outcome = q
        .fail_permanently(&c.lease, "Object /A/c/missing does not exist.")
        .await;
    assert_eq!(outcome.unwrap(), FailOutcome::Failed);
    let r = get(&q, id).await;
    assert_eq!((r.state, r.attempts), (State::Failed, 1));
    assert_eq!(
        r.last_error.as_deref(),
        Some("Object /A/c/missing does not exist.")
    );
}

async fn retention_expiry(db: TestDb) {
    let offset = Arc::new(AtomicI64::new(0));
    let q = db
        .queue(QueueOptions {
            clock: offset_clock(&offset),
            ..opts() // retention 1 h
        })
        .await;
    // Let `minutes` pass for the finished requests: on SQLite by moving the queue's clock, on
    // PostgreSQL (whose clock is the database's) by moving their finish time back.
    let age = |minutes: i64| {
        let offset = offset.clone();
        let db = &db;
        async move {
            if db.pg.is_some() {
                db.execute(&format!(
                    "UPDATE hlm_requests SET finished_at = finished_at - interval '{minutes} minutes'"
                ))
                .await;
            } else {
                offset.fetch_add(minutes * 60 * 1000, Ordering::Relaxed);
            }
        }
    };
    let done = submit(&q, Op::Migrate, object("A", "c", "done")).await;
    let failed = submit(&q, Op::Migrate, object("A", "c", "failed")).await;
    let running = submit(&q, Op::Migrate, object("A", "c", "running")).await;
    let pending = submit(&q, Op::Migrate, object("A", "c", "pending")).await;
    let c = q.claim("i").await.unwrap().unwrap();
    q.complete(&c.lease).await.unwrap();
    let c = q.claim("i").await.unwrap().unwrap();
    q.fail_permanently(&c.lease, "broken").await.unwrap();
    let _still_running = q.claim("i").await.unwrap().unwrap();

    assert_eq!(q.expire_finished().await.unwrap(), 0, "within retention");
    age(59).await;
    assert_eq!(q.expire_finished().await.unwrap(), 0);
    age(2).await;
    assert_eq!(q.expire_finished().await.unwrap(), 2);
    assert!(q.get(done).await.unwrap().is_none());
    assert!(q.get(failed).await.unwrap().is_none());
    assert_eq!(
        get(&q, running).await.state,
        State::Running,
        "live requests never expire"
    );
    assert_eq!(get(&q, pending).await.state, State::Pending);
    offset.fetch_add(1000 * 24 * 3600 * 1000, Ordering::Relaxed);
    assert_eq!(q.expire_finished().await.unwrap(), 0);
}

/// On PostgreSQL the process clock does not matter: an instance whose clock is days ahead (or
/// behind) neither expires finished requests early nor keeps them longer, and its claims and
/// backoffs follow the database clock too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_times_come_from_the_database_clock() {
    let db = TestDb::postgres().await;
    let offset = Arc::new(AtomicI64::new(0));
    let q = db
        .queue(QueueOptions {
            clock: offset_clock(&offset),
            ..opts()
        })
        .await;
    let done = submit(&q, Op::Migrate, object("A", "c", "done")).await;
    let c = q.claim("i").await.unwrap().unwrap();
    q.complete(&c.lease).await.unwrap();
    let day = 24 * 3600 * 1000;
    for skew in [10 * day, -10 * day] {
        offset.store(skew, Ordering::Relaxed);
        assert_eq!(
            q.expire_finished().await.unwrap(),
            0,
            "clock off by {skew} ms"
        );
        assert_eq!(get(&q, done).await.state, State::Done);
        let id = submit(&q, Op::Recall, object("A", "c", "o")).await;
        let c = q.claim("i").await.unwrap().expect("claimable at once");
        assert_eq!(c.record.id, id);
        let next = match q.fail(&c.lease, "x").await.unwrap() {
            FailOutcome::Retry { at, .. } => at,
            other => panic!("{other:?}"),
        };
        let lag = (next - Utc::now()).num_milliseconds();
        assert!(
            (0..60_000).contains(&lag),
            "backoff by the database clock: {lag} ms"
        );
        db.execute(&format!("DELETE FROM hlm_requests WHERE id = {id}"))
            .await;
    }
    offset.store(0, Ordering::Relaxed);
    db.execute("UPDATE hlm_requests SET finished_at = finished_at - interval '61 minutes'")
        .await;
    assert_eq!(
        q.expire_finished().await.unwrap(),
        1,
        "by the database clock"
    );
}

async fn success_clears_older_failures_of_same_target(db: TestDb) {
    let q = db.queue(opts()).await;
    // Failures: migrate and recall of A/c/o, a failure of a neighbour, and of the container.
    let failed_migrate = submit(&q, Op::Migrate, object("A", "c", "o")).await;
    let failed_recall = submit(&q, Op::Recall, object("A", "c", "o")).await;
    let neighbour = submit(&q, Op::Migrate, object("A", "c", "o2")).await;
    let whole = submit(&q, Op::Migrate, container("A", "c")).await;
    let keys = submit(&q, Op::Recall, Target::Keys(vec!["k1".into(), "k2".into()])).await;
    for _ in 0..5 {
        let c = q.claim("i").await.unwrap().unwrap();
        q.fail_permanently(&c.lease, "backend unavailable")
            .await
            .unwrap();
    }
    // The retry that will succeed, and a failure submitted after it.
    let retry = submit(&q, Op::Migrate, object("A", "c", "o")).await;
    let newer = submit(&q, Op::Recall, object("A", "c", "o")).await;
    let c_retry = q.claim("i").await.unwrap().unwrap();
    assert_eq!(c_retry.record.id, retry);
    let c_newer = q.claim("i").await.unwrap().unwrap();
    q.fail_permanently(&c_newer.lease, "later failure")
        .await
        .unwrap();

    assert_eq!(
        q.complete(&c_retry.lease).await.unwrap(),
        2,
        "both older failures of A/c/o"
    );
    assert!(q.get(failed_migrate).await.unwrap().is_none());
    assert!(q.get(failed_recall).await.unwrap().is_none());
    for kept in [neighbour, whole, newer, keys] {
        assert_eq!(get(&q, kept).await.state, State::Failed, "{kept} kept");
    }
    // The container-level success clears the container-level failure only.
    submit(&q, Op::Migrate, container("A", "c")).await;
    let c = q.claim("i").await.unwrap().unwrap();
    assert_eq!(q.complete(&c.lease).await.unwrap(), 1);
    assert!(q.get(whole).await.unwrap().is_none());
    assert_eq!(get(&q, neighbour).await.state, State::Failed);
    // Key lists match on the same list.
    submit(&q, Op::Recall, Target::Keys(vec!["k1".into()])).await;
    let c = q.claim("i").await.unwrap().unwrap();
    assert_eq!(q.complete(&c.lease).await.unwrap(), 0, "a different list");
    submit(&q, Op::Recall, Target::Keys(vec!["k1".into(), "k2".into()])).await;
    let c = q.claim("i").await.unwrap().unwrap();
    assert_eq!(q.complete(&c.lease).await.unwrap(), 1, "the same list");
    assert!(q.get(keys).await.unwrap().is_none());
}

async fn list_matches_swifthlm_rules(db: TestDb) {
    let q = db.queue(opts()).await;
    let c_req = submit(&q, Op::Migrate, container("A", "c")).await;
    let o1 = submit(&q, Op::Migrate, object("A", "c", "o1")).await;
    let o2 = submit(&q, Op::Recall, object("A", "c", "dir/o2")).await;
    let bulk = q
        .submit(NewRequest::new(
            Op::Recall,
            Target::Objects {
                account: "A".into(),
                container: "c".into(),
                objects: vec!["o1".into(), "o3".into()],
            },
        ))
        .await
        .unwrap();
    let other_container = submit(&q, Op::Migrate, object("A", "d", "o1")).await;
    let other_account = submit(&q, Op::Migrate, object("B", "c", "o1")).await;
    let keys = submit(&q, Op::Recall, Target::Keys(vec!["o1".into()])).await;
    // Make o1's migrate fail: it is listed after the pending ones.
    let mut failed_id = None;
    while failed_id != Some(o1) {
        let c = q.claim("i").await.unwrap().unwrap();
        if c.record.id == o1 {
            q.fail_permanently(&c.lease, "x").await.unwrap();
            failed_id = Some(o1);
        }
    }
    // Running requests count as pending for the endpoint; done ones are not listed.
    let ids = |records: Vec<RequestRecord>| records.iter().map(|r| r.id).collect::<Vec<_>>();
    let list = |path: &str| {
        let q = q.clone();
        let filter = RequestFilter::for_path(path);
        async move { ids(q.list(&filter).await.unwrap()) }
    };
    assert_eq!(
        list("A/c").await,
        vec![c_req, o2, bulk, o1],
        "pending first, then failed"
    );
    assert_eq!(list("/A/c/o1").await, vec![c_req, bulk, o1]);
    assert_eq!(list("A/c/o3").await, vec![c_req, bulk]);
    assert_eq!(
        list("A/c/dir/o2").await,
        vec![c_req, o2],
        "objects with '/'"
    );
    assert_eq!(list("A/c/nothing").await, vec![c_req]);
    assert_eq!(list("A/d").await, vec![other_container]);
    assert_eq!(list("A").await, vec![c_req, o2, bulk, other_container, o1]);
    assert_eq!(list("B/c/o1").await, vec![other_account]);
    assert!(list("Z/c").await.is_empty());
    let everything = ids(q.list(&RequestFilter::default()).await.unwrap());
    assert_eq!(everything.len(), 7);
    assert!(everything.contains(&keys));

    let prefix = RequestFilter {
        account: Some("A".into()),
        container: Some("c".into()),
        object_prefix: Some("dir/".into()),
        ..RequestFilter::default()
    };
    assert_eq!(ids(q.list(&prefix).await.unwrap()), vec![o2]);
    let only_failed = RequestFilter {
        states: vec![State::Failed],
        ..RequestFilter::for_path("A")
    };
    assert_eq!(ids(q.list(&only_failed).await.unwrap()), vec![o1]);
    let limited = RequestFilter {
        limit: Some(2),
        ..RequestFilter::for_path("A/c")
    };
    assert_eq!(ids(q.list(&limited).await.unwrap()), vec![c_req, o2]);
    // A container without an account means nothing: it is ignored, not matched literally.
    let orphan = RequestFilter {
        container: Some("c".into()),
        ..RequestFilter::default()
    };
    assert_eq!(ids(q.list(&orphan).await.unwrap()).len(), 7);
}

async fn request_names_from_the_database(db: TestDb) {
    let q = db.queue(opts()).await;
    let obj = submit(&q, Op::Migrate, object("AUTH_test", "cont3", "obj00")).await;
    let mut in_policy = NewRequest::new(Op::Recall, container("AUTH_test", "cont3"));
    in_policy.storage_policy = 2;
    let cont = q.submit(in_policy).await.unwrap();
    let keys = submit(&q, Op::Recall, Target::Keys(vec!["1".into()])).await;

    let r = get(&q, obj).await;
    let name = r.swifthlm_name().unwrap();
    let ts = r.created_at.format("%Y%m%d%H%M%S%.3f").to_string();
    assert_eq!(
        name,
        format!("{ts}--migrate--AUTH_test--cont3--0--obj00--pending")
    );
    assert_eq!(ts.len(), 18, "YYYYMMDDHHMMSS.mmm: {ts}");
    assert!(ts.starts_with(&Utc::now().format("%Y%m%d").to_string()[..6]));
    let r = get(&q, cont).await;
    assert_eq!(
        r.swifthlm_name().unwrap(),
        format!(
            "{}--recall--AUTH_test--cont3--2--pending",
            r.created_at.format("%Y%m%d%H%M%S%.3f")
        )
    );
    assert_eq!(get(&q, keys).await.swifthlm_name(), None);

    let c = q.claim("i").await.unwrap().unwrap();
    assert_eq!(c.record.id, obj);
    assert!(
        c.record
            .swifthlm_name()
            .unwrap()
            .ends_with("--obj00--pending"),
        "running"
    );
    q.fail_permanently(&c.lease, "x").await.unwrap();
    assert!(get(&q, obj)
        .await
        .swifthlm_name()
        .unwrap()
        .ends_with("--obj00--failed"));
}

async fn queue_survives_reopen(db: TestDb) {
    let q = db.queue(opts()).await;
    let id = submit(&q, Op::Migrate, object("A", "c", "o")).await;
    let c = q.claim("i").await.unwrap().unwrap();
    q.record_progress(
        &c.lease,
        Progress {
            done: 3,
            failed: 0,
            total: 7,
        },
    )
    .await
    .unwrap();
    q.close().await;
    drop(q);
    // Migrations are applied once; reopening finds the data.
    let q = db.queue(opts()).await;
    let r = get(&q, id).await;
    assert_eq!(r.state, State::Running);
    assert_eq!(r.progress.total, 7);
    q.complete(&c.lease).await.unwrap();
}

async fn schema_coexists_and_is_forward_compatible(db: TestDb) {
    let q = db.queue(opts()).await;
    let id = submit(&q, Op::Recall, object("A", "c", "o")).await;
    q.close().await;
    // Another sqlx application in the same database keeps its own migrations table.
    db.execute("CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT)")
        .await;
    db.execute("INSERT INTO _sqlx_migrations VALUES (1, 'another application')")
        .await;
    // A newer release has applied a migration this build does not know.
    let checksum = if db.pg.is_some() {
        "'\\x00'::bytea"
    } else {
        "X'00'"
    };
    db.execute(&format!(
        "INSERT INTO hlm_queue_migrations (version, description, success, checksum, execution_time)
         VALUES (29991231000000, 'from a newer release', true, {checksum}, 0)"
    ))
    .await;
    let q = db.queue(opts()).await;
    assert_eq!(get(&q, id).await.state, State::Pending, "data kept");
    let c = q.claim("i").await.unwrap().expect("still works");
    q.complete(&c.lease).await.unwrap();
}

/// Two server instances (two pools) with four workers each drain 1000 requests concurrently.
/// Every request must be executed exactly once, never by two workers at the same time, and end
/// `done`.
async fn two_instances_process_1000_requests_once(db: TestDb) {
    const N: usize = 1000;
    let options = QueueOptions {
        max_connections: 5,
        ..opts()
    };
    let a = db.queue(options.clone()).await;
    let b = db.queue(options).await;
    let mut submitted = HashSet::new();
    for i in 0..N {
        let q = if i % 2 == 0 { &a } else { &b };
        submitted.insert(submit(q, Op::Recall, object("A", "c", &format!("o{i}"))).await);
    }
    assert_eq!(submitted.len(), N);

    let executions: Arc<Mutex<HashMap<RequestId, u32>>> = Arc::default();
    let in_progress: Arc<Mutex<HashSet<RequestId>>> = Arc::default();
    let mut workers = Vec::new();
    for (name, q) in [("inst-a", a.clone()), ("inst-b", b.clone())] {
        for w in 0..4 {
            let q = q.clone();
            let owner = format!("{name}:{w}");
            let executions = executions.clone();
            let in_progress = in_progress.clone();
            workers.push(tokio::spawn(async move {
                let mut mine = 0usize;
                while let Some(c) = q.claim(&owner).await.expect("claim") {
                    let id = c.record.id;
                    assert!(
                        in_progress.lock().unwrap().insert(id),
                        "{id} executed concurrently by two workers"
                    );
                    *executions.lock().unwrap().entry(id).or_default() += 1;
                    tokio::task::yield_now().await;
                    assert!(in_progress.lock().unwrap().remove(&id));
                    q.complete(&c.lease).await.expect("complete");
                    mine += 1;
                }
                (owner, mine)
            }));
        }
    }
    let mut per_instance: HashMap<&str, usize> = HashMap::new();
    for worker in workers {
        let (owner, mine) = tokio::time::timeout(Duration::from_secs(300), worker)
            .await
            .expect("workers finish")
            .expect("worker panicked");
        *per_instance
            .entry(if owner.starts_with("inst-a") {
                "inst-a"
            } else {
                "inst-b"
            })
            .or_default() += mine;
    }
    let executions = executions.lock().unwrap().clone();
    assert_eq!(executions.len(), N, "every request executed");
    let twice: Vec<_> = executions.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "executed more than once: {twice:?}");
    assert_eq!(
        executions.keys().copied().collect::<HashSet<_>>(),
        submitted
    );
    assert!(
        per_instance.values().all(|n| *n > 0) && per_instance.len() == 2,
        "both instances worked: {per_instance:?}"
    );
    let counts = a.counts().await.unwrap();
    assert_eq!(
        (counts.done, counts.pending, counts.running),
        (N as u64, 0, 0)
    );
    let all_done = RequestFilter {
        states: vec![State::Done],
        ..RequestFilter::default()
    };
    let done = a.list(&all_done).await.unwrap();
    assert_eq!(done.len(), N);
    assert!(done.iter().all(|r| r.attempts == 1));
}

/// Paging: 2,500 requests of one container, among others, come in pages of 1,000 in submission
/// order, whatever their state, each page continuing after the last id of the one before.
async fn list_pages_through_2500_requests(db: TestDb) {
    const N: usize = 2500;
    let q = db.queue(opts()).await;
    let mut expected = Vec::with_capacity(N);
    for i in 0..N {
        let target = match i % 3 {
            0 => container("A", "c"),
            _ => object("A", "c", &format!("o{i}")),
        };
        expected.push(submit(&q, Op::Migrate, target).await);
        if i % 500 == 0 {
            submit(&q, Op::Migrate, object("A", "other", "o")).await;
        }
    }
    // The first three of A/c (and one of A/other) failed: paging keeps submission order.
    for _ in 0..4 {
        let c = q.claim("i").await.unwrap().unwrap();
        q.fail_permanently(&c.lease, "x").await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after = RequestId(0);
    let mut pages = Vec::new();
    loop {
        let filter = RequestFilter {
            limit: Some(1000),
            after: Some(after),
            ..RequestFilter::for_path("A/c")
        };
        let page = q.list(&filter).await.unwrap();
        pages.push(page.len());
        let Some(last) = page.last() else { break };
        after = last.id;
        seen.extend(page.iter().map(|r| r.id));
    }
    assert_eq!(pages, vec![1000, 1000, 500, 0]);
    assert_eq!(seen, expected);
    // Without paging, the SwiftHLM order is unchanged: pending first, then failed.
    let all = q.list(&RequestFilter::for_path("A/c")).await.unwrap();
    assert_eq!(all.len(), N);
    assert!(all[..N - 3].iter().all(|r| r.state == State::Pending));
    assert!(all[N - 3..].iter().all(|r| r.state == State::Failed));
}

// ---- tests that need no database ----

#[test]
fn request_name_matches_the_swifthlm_readme() {
    let created = Utc.with_ymd_and_hms(2017, 3, 3, 3, 40, 43).unwrap() + ms(566);
    let mut record = RequestRecord {
        id: RequestId(1),
        op: Op::Migrate,
        target: object("AUTH_test", "cont3", "obj00"),
        storage_policy: 0,
        priority: 50,
        state: State::Pending,
        attempts: 0,
        next_attempt_at: created,
        lease_owner: None,
        lease_expires_at: None,
        progress: Progress::default(),
        last_error: None,
        created_at: created,
        updated_at: created,
        finished_at: None,
    };
    assert_eq!(
        record.swifthlm_name().unwrap(),
        "20170303034043.566--migrate--AUTH_test--cont3--0--obj00--pending"
    );
    record.target = container("AUTH_test", "cont3");
    record.created_at = Utc.with_ymd_and_hms(2017, 3, 3, 3, 48, 0).unwrap() + ms(465);
    assert_eq!(
        record.swifthlm_name().unwrap(),
        "20170303034800.465--migrate--AUTH_test--cont3--0--pending"
    );
    record.state = State::Failed;
    assert_eq!(
        record.swifthlm_name().unwrap(),
        "20170303034800.465--migrate--AUTH_test--cont3--0--failed"
    );
    record.state = State::Running;
    record.op = Op::Premigrate;
    assert!(record
        .swifthlm_name()
        .unwrap()
        .ends_with("--premigrate--AUTH_test--cont3--0--pending"));
    // Whole milliseconds even when the time has none.
    record.created_at = Utc.with_ymd_and_hms(2020, 1, 2, 3, 4, 5).unwrap();
    assert!(record
        .swifthlm_name()
        .unwrap()
        .starts_with("20200102030405.000--"));
}

#[test]
fn filter_from_request_path() {
    let f = RequestFilter::for_path("/AUTH_test/cont3/dir/obj");
    assert_eq!(f.account.as_deref(), Some("AUTH_test"));
    assert_eq!(f.container.as_deref(), Some("cont3"));
    assert_eq!(f.object.as_deref(), Some("dir/obj"));
    let f = RequestFilter::for_path("AUTH_test/cont3");
    assert_eq!(f.object, None);
    assert!(f.states.is_empty());
}

#[tokio::test]
async fn connect_rejects_unknown_schemes_and_hides_passwords() {
    let err = RequestQueue::connect("mysql://u:pw@h/db", QueueOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err}");
    // Port 1 on loopback: refused at once.
    let err = RequestQueue::connect(
        "postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2",
        QueueOptions::default(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Connect { .. }), "{text}");
    assert!(
        !text.contains("hunter2") && text.contains("u:***@127.0.0.1:1"),
        "{text}"
    );
    let bad = QueueOptions {
        max_attempts: 0,
        ..QueueOptions::default()
    };
    let err = RequestQueue::connect("sqlite::memory:", bad)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_attempts"), "{err}");
    // A SQLite file that cannot be created fails at once, naming the place.
    let started = std::time::Instant::now();
    let err = RequestQueue::connect("sqlite:///proc/no-such-dir/queue.db", opts())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CreateDir { .. }), "{err}");
    assert!(err.to_string().contains("/proc/no-such-dir"), "{err}");
    let err = RequestQueue::connect("sqlite:///proc/queue.db", opts())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains("/proc/queue.db"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn sqlite_in_memory_and_relative_urls_work() {
    let q = RequestQueue::connect("sqlite::memory:", opts())
        .await
        .unwrap();
    assert_eq!(q.database_kind(), "sqlite");
    let id = submit(&q, Op::Recall, object("A", "c", "o")).await;
    assert_eq!(get(&q, id).await.state, State::Pending);

    let dir = tempfile::tempdir().unwrap();
    for url in [
        format!("sqlite://{}/a.db?mode=rwc", dir.path().display()),
        format!("sqlite:{}/b.db", dir.path().display()),
        format!("sqlite://{}/new/dir/c.db", dir.path().display()),
    ] {
        let q = RequestQueue::connect(&url, opts()).await.unwrap();
        submit(&q, Op::Migrate, container("A", "c")).await;
        q.close().await;
    }
    assert!(dir.path().join("a.db").exists());
    assert!(dir.path().join("b.db").exists());
    assert!(dir.path().join("new/dir/c.db").exists());
}

/// A std duration of `ms` milliseconds (chrono's own delta type is not re-exported by sqlx).
fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
