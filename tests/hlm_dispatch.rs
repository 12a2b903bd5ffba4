//! Two dispatchers (as two server instances would run them) on one PostgreSQL queue: 1000 requests,
//! each executed exactly once, and both instances take part.

mod common;

use archive_core::{
    ArchiveBackend, ByteStream, FileStatus, GetResult, Key, KeyOutcome, ListEntry, PutOptions,
    PutOutcome, ReadRange,
};
use archiveinterface::hlm::queue::{NewRequest, Op, Target};
use archiveinterface::hlm::HlmService;
use archiveinterface::AppState;
use sqlx::Connection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A backend whose `migrate` only counts calls per key (and which instance made them).
#[derive(Debug)]
struct CountingBackend {
    instance: usize,
    calls: Arc<Mutex<HashMap<String, Vec<usize>>>>,
}

#[async_trait::async_trait]
impl ArchiveBackend for CountingBackend {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn capabilities(&self) -> archive_core::Capabilities {
        // Two instances share it in the exactly-once test, as an HSM-backed backend allows.
        archive_core::Capabilities {
            tape_tier: true,
            shared_by_processes: true,
        }
    }
    async fn put(&self, _: &Key, _: ByteStream, _: PutOptions) -> archive_core::Result<PutOutcome> {
        Err(self.unsupported("put"))
    }
    async fn get(&self, _: &Key, _: ReadRange) -> archive_core::Result<GetResult> {
        Err(self.unsupported("get"))
    }
    async fn status(&self, _: &Key) -> archive_core::Result<FileStatus> {
        Err(self.unsupported("status"))
    }
    async fn stage(&self, _: &Key) -> archive_core::Result<()> {
        Ok(())
    }
    async fn adopt(&self, _: &Key, _: &std::path::Path, _: bool) -> archive_core::Result<()> {
        Err(self.unsupported("adopt"))
    }
    async fn delete(&self, _: &Key) -> archive_core::Result<()> {
        Err(self.unsupported("delete"))
    }
    async fn list(&self, _: &str) -> archive_core::Result<Vec<ListEntry>> {
        Ok(Vec::new())
    }
    async fn migrate(&self, keys: &[Key]) -> archive_core::Result<Vec<KeyOutcome<()>>> {
        // A little work, so that claims interleave.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut calls = self.calls.lock().unwrap();
        Ok(keys
            .iter()
            .map(|k| {
                calls.entry(k.to_string()).or_default().push(self.instance);
                (k.clone(), Ok(()))
            })
            .collect())
    }
}

async fn fresh_schema_url() -> (String, String, String) {
    let base = std::env::var("ARCHIVEINTERFACE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required and not reachable at {base}: {e}\nstart it (apt-get install postgresql && \
             pg_ctlcluster 15 main start, database 'test' with trust auth on 127.0.0.1) or set \
             ARCHIVEINTERFACE_TEST_POSTGRES_URL"
        )
    });
    let schema = format!(
        "hlmd_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.ok();
    let sep = if base.contains('?') { '&' } else { '?' };
    (
        format!("{base}{sep}options=-c%20search_path%3D{schema}"),
        base,
        schema,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_execute_1000_requests_once_each() {
    let (url, base, schema) = fresh_schema_url().await;
    let mut config = archiveinterface::config::Config::default();
    config.hlm.queue_url = url.clone();
    config.hlm.workers = 4;
    config.hlm.poll_interval_ms = 20;
    let calls = Arc::new(Mutex::new(HashMap::new()));

    let submitter = HlmService::open(&config).await.unwrap();
    for i in 0..1000 {
        submitter
            .queue
            .submit(NewRequest::new(
                Op::Migrate,
                Target::Keys(vec![format!("k{i}")]),
            ))
            .await
            .unwrap();
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut instances = Vec::new();
    for instance in 0..2 {
        let backend = Arc::new(CountingBackend {
            instance,
            calls: calls.clone(),
        });
        let state = AppState::with_config(backend, common::settings(), config.clone());
        let service = HlmService::open(&config).await.unwrap();
        instances.push(tokio::spawn(archiveinterface::hlm::dispatcher::run(
            state,
            service,
            stop_rx.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let counts = submitter.queue.counts().await.unwrap();
        if counts.done == 1000 {
            break;
        }
        assert!(counts.failed == 0, "{counts:?}");
        assert!(Instant::now() < deadline, "not finished: {counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true).unwrap();
    for i in instances {
        i.await.unwrap();
    }

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1000);
    let twice: Vec<_> = calls.iter().filter(|(_, v)| v.len() != 1).collect();
    assert!(twice.is_empty(), "executed more than once: {twice:?}");
    let by_first = calls.values().filter(|v| v[0] == 0).count();
    assert!(
        by_first > 0 && by_first < 1000,
        "one instance did everything ({by_first} of 1000 by the first)"
    );

    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
}
