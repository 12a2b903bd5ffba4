//! Swift container listing benchmark: pages through containers of 10,000, 100,000 and 1,000,000
//! objects with 10,000-entry pages (`?format=json&limit=10000&marker=<last name>`, what
//! python-swiftclient sends), through the whole router, and prints a markdown table. The time per
//! object stays the same whatever the container's size when a page costs what it returns.
//!
//! Run: `cargo run --release --example swift_listing_bench` (takes about a minute; the README keeps
//! the latest figures). The containers' rows are written straight into the Swift index (one
//! transaction per container; the listing reads only the index, so no data files are needed).

use archiveinterface::config::{Config, SwiftUser};
use archiveinterface::{app, AppState, Settings};
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
const PAGE: usize = 10_000;

async fn call(router: &axum::Router, token: &str, method: &str, uri: &str) -> (u16, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-auth-token", token)
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

/// Writes `n` object rows into container `c` of the index at `index`.
async fn fill(index: &std::path::Path, container: &str, n: usize) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", index.display()))
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    for i in 0..n {
        sqlx::query(
            "INSERT INTO objects (account, container, name, size, etag, content_type,
                 timestamp_ns, data_mtime_ns, headers)
             VALUES ('AUTH_bench', ?, ?, 4096, 'd41d8cd98f00b204e9800998ecf8427e',
                 'application/octet-stream', 1700000000000000000, 1700000000000000000, '{}')",
        )
        .bind(container)
        .bind(format!("dir{:03}/object-{i:08}.dat", i % 1000))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    pool.close().await;
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let mut config = Config {
        prefix: prefix.clone(),
        ..Config::default()
    };
    config.swift.token_secret = "bench".into();
    config.swift.users = vec![SwiftUser {
        account: "bench".into(),
        user: "u".into(),
        key: "k".into(),
        reseller_admin: false,
    }];
    let settings = Settings::from_config(&config).unwrap();
    let backend = Arc::new(archive_posix::PosixBackend::new(&prefix).unwrap());
    let state = AppState::with_config(backend, settings, config);
    let router = app(state);
    let auth = Request::get("/auth/v1.0")
        .header("x-auth-user", "bench:u")
        .header("x-auth-key", "k")
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(auth).await.unwrap();
    let token = response.headers()["x-auth-token"]
        .to_str()
        .unwrap()
        .to_string();
    let index = prefix.join(".archiveinterface-swift/index.sqlite3");
    println!("| objects | pages | total s | first page ms | last page ms | us per object |");
    println!("|--:|--:|--:|--:|--:|--:|");
    for n in SIZES {
        let container = format!("c{n}");
        let (status, _) = call(
            &router,
            &token,
            "PUT",
            &format!("/v1/AUTH_bench/{container}"),
        )
        .await;
        assert_eq!(status, 201);
        fill(&index, &container, n).await;
        let mut marker = String::new();
        let mut pages: Vec<Duration> = Vec::new();
        let mut seen = 0;
        let started = Instant::now();
        loop {
            let t = Instant::now();
            let uri = format!(
                "/v1/AUTH_bench/{container}?format=json&limit={PAGE}&marker={}",
                percent_encoding::utf8_percent_encode(&marker, percent_encoding::NON_ALPHANUMERIC)
            );
            let (status, body) = call(&router, &token, "GET", &uri).await;
            assert_eq!(status, 200);
            let page: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            pages.push(t.elapsed());
            let Some(last) = page.last() else { break };
            marker = last["name"].as_str().unwrap().to_string();
            seen += page.len();
        }
        let total = started.elapsed();
        assert_eq!(seen, n, "every object listed once");
        println!(
            "| {n} | {} | {:.2} | {:.1} | {:.1} | {:.2} |",
            pages.len() - 1,
            total.as_secs_f64(),
            pages[0].as_secs_f64() * 1e3,
            pages[pages.len() - 2].as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e6 / n as f64
        );
    }
}
