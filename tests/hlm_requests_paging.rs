//! `GET /hlm/v1/requests/...` with `limit` and `marker`, in-process over a SQLite queue: 2,500
//! requests in pages of 1,000 in both answer forms, the next-page marker, the SwiftHLM answers
//! without paging unchanged, and bad paging parameters refused with 400 naming the parameter.

mod common;

use archive_core::ArchiveBackend;
use archiveinterface::config::{Config, SwiftUser};
use archiveinterface::hlm::queue::{NewRequest, Op, QueueOptions, RequestQueue, Target};
use archiveinterface::hlm::HlmService;
use archiveinterface::{app, AppState};
use axum::body::Body;
use axum::http::Request;
use common::read;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

struct Hlm {
    router: axum::Router,
    queue: RequestQueue,
    token: String,
    _dir: tempfile::TempDir,
}

async fn hlm() -> Hlm {
    let dir = tempfile::tempdir().unwrap();
    // The HLM API answers only on a backend with a tape tier: the built-in HSM.
    let backend: Arc<dyn ArchiveBackend> = Arc::new(
        archive_tiered::TieredBackend::open(
            dir.path().join("archive"),
            archive_tiered::TieredConfig::default(),
        )
        .unwrap(),
    );
    let mut config = Config::default();
    config.swift.token_secret = "test secret".into();
    config.swift.users = vec![SwiftUser {
        account: "test".into(),
        user: "tester".into(),
        key: "testing".into(),
        reseller_admin: false,
    }];
    let url = format!("sqlite://{}", dir.path().join("queue.db").display());
    let queue = RequestQueue::connect(&url, QueueOptions::default())
        .await
        .unwrap();
    let service = HlmService {
        queue: queue.clone(),
        wake: Arc::default(),
    };
    let state = AppState::with_config(backend, common::settings(), config).with_hlm(service);
    let router = app(state);
    let auth = router
        .clone()
        .oneshot(
            Request::get("/auth/v1.0")
                .header("x-auth-user", "test:tester")
                .header("x-auth-key", "testing")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(auth.status(), 200);
    let token = auth.headers()["x-auth-token"].to_str().unwrap().to_owned();
    Hlm {
        router,
        queue,
        token,
        _dir: dir,
    }
}

impl Hlm {
    /// GET `uri`: status, the next-page marker header, the JSON body.
    async fn get(&self, uri: &str) -> (u16, Option<String>, Value) {
        let request = Request::get(uri)
            .header("x-auth-token", &self.token)
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) =
            read(self.router.clone().oneshot(request).await.unwrap()).await;
        let next = headers
            .get("x-hlm-next-marker")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("{uri}: not JSON ({e}): {}", String::from_utf8_lossy(&body))
        });
        (status, next, body)
    }

    async fn submit_objects(&self, container: &str, n: usize) -> Vec<i64> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let target = Target::Object {
                account: "AUTH_test".into(),
                container: container.into(),
                object: format!("o{i:05}"),
            };
            ids.push(
                self.queue
                    .submit(NewRequest::new(Op::Migrate, target))
                    .await
                    .unwrap()
                    .0,
            );
        }
        ids
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_page_through_2500_in_pages_of_1000() {
    let hlm = hlm().await;
    let expected = hlm.submit_objects("c", 2500).await;
    hlm.submit_objects("other", 3).await;

    for form in ["&format=json", ""] {
        let mut uri = format!("/hlm/v1/requests/AUTH_test/c?limit=1000{form}");
        let mut pages = Vec::new();
        let mut names = Vec::new();
        loop {
            let (status, next, body) = hlm.get(&uri).await;
            assert_eq!(status, 200, "{uri}: {body}");
            let page = body.as_array().unwrap().clone();
            pages.push(page.len());
            names.extend(page);
            match next {
                Some(marker) => {
                    uri = format!("/hlm/v1/requests/AUTH_test/c?limit=1000&marker={marker}{form}")
                }
                None => break,
            }
        }
        assert_eq!(pages, vec![1000, 1000, 500], "{form}");
        if form.is_empty() {
            assert!(names[0]
                .as_str()
                .unwrap()
                .ends_with("--c--0--o00000--pending"));
            assert!(names[2499]
                .as_str()
                .unwrap()
                .ends_with("--c--0--o02499--pending"));
        } else {
            let ids: Vec<i64> = names.iter().map(|r| r["id"].as_i64().unwrap()).collect();
            assert_eq!(ids, expected, "every request once, in submission order");
        }
    }
    // The marker is the last id of a page: the page after the last one is empty.
    let last = expected.last().unwrap();
    let (status, next, body) = hlm
        .get(&format!(
            "/hlm/v1/requests/AUTH_test/c?marker={last}&format=json"
        ))
        .await;
    assert_eq!((status, next, body), (200, None, serde_json::json!([])));
    // A marker alone pages by 1000.
    let (_, next, body) = hlm.get("/hlm/v1/requests/AUTH_test/c?marker=0").await;
    assert_eq!(body.as_array().unwrap().len(), 1000);
    assert_eq!(next, Some(expected[999].to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_paging_answer_as_swifthlm() {
    let hlm = hlm().await;
    let (status, next, body) = hlm.get("/hlm/v1/requests/AUTH_test/c").await;
    assert_eq!(
        (status, next, body),
        (
            200,
            None,
            serde_json::json!(["There are no pending or failed SwiftHLM requests."])
        )
    );
    hlm.submit_objects("c", 1200).await;
    let (_, next, body) = hlm.get("/hlm/v1/requests/AUTH_test/c").await;
    assert_eq!(body.as_array().unwrap().len(), 1200, "no page limit");
    assert_eq!(next, None);
    let (_, next, body) = hlm.get("/hlm/v1/requests/AUTH_test/c?format=json").await;
    assert_eq!(body.as_array().unwrap().len(), 1200);
    assert_eq!(next, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paging_parameters_are_refused() {
    let hlm = hlm().await;
    for (query, names) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("marker=-1", "marker"),
        ("marker=abc&format=json", "marker"),
    ] {
        let (status, _, body) = hlm
            .get(&format!("/hlm/v1/requests/AUTH_test/c?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{query}: {message}");
    }
}
