//! The Pacifica files API in-process (`oneshot`, no socket): every row of the compatibility table.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;

#[tokio::test]
async fn root_says_up_and_running() {
    let app = test_app(|_, _| {});
    let (status, headers, body) = app.call("GET", "/", Body::empty()).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert_eq!(
        body,
        br#"{"message": "Pacifica Archive Interface Up and Running"}"#
    );
    let (status, headers, _) = app.call("PUT", "/", Body::empty()).await;
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), "GET, HEAD");
}

#[tokio::test]
async fn put_answers_like_the_reference_and_stores_the_bytes() {
    let app = test_app(|_, _| {});
    let (status, headers, body) = app
        .call("PUT", "/12345", &b"The quick brown fox jum"[..])
        .await;
    assert_eq!(status, 201);
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert_eq!(
        body,
        br#"{"message": "File added to archive", "total_bytes": 23}"#
    );
    assert_eq!(
        std::fs::read(app.prefix.join("12345")).unwrap(),
        b"The quick brown fox jum"
    );
    let (status, _, body) = app.call("PUT", "/empty", Body::empty()).await;
    assert_eq!(
        (status, json(&body)["total_bytes"].as_u64()),
        (201, Some(0))
    );
}

#[tokio::test]
async fn put_is_write_once_with_cant_open_in_the_traceback() {
    let app = test_app(|_, _| {});
    assert_eq!(app.put("1239", b"original").await, 201);
    let (status, _, body) = app.call("PUT", "/1239", &b"replacement"[..]).await;
    assert_eq!(status, 500);
    let err = error_body(&body, 500);
    assert!(
        err["traceback"].as_str().unwrap().contains("Can't open"),
        "{err}"
    );
    assert_eq!(std::fs::read(app.prefix.join("1239")).unwrap(), b"original");
}

#[tokio::test]
async fn allow_overwrite_replaces() {
    let app = test_app(|s, _| s.allow_overwrite = true);
    assert_eq!(app.put("7", b"one").await, 201);
    assert_eq!(app.put("7", b"two!").await, 201);
    assert_eq!(app.call("GET", "/7", Body::empty()).await.2, b"two!");
}

#[tokio::test]
async fn last_modified_is_honoured_in_all_three_forms() {
    let app = test_app(|_, _| {});
    for (id, date) in [
        ("a", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("b", "Sunday, 06-Nov-94 08:49:37 GMT"),
        ("c", "Sun Nov  6 08:49:37 1994"),
    ] {
        let request = Request::put(format!("/{id}"))
            .header("Last-Modified", date)
            .body(Body::from("x"))
            .unwrap();
        assert_eq!(read(app.send(request).await).await.0, 201, "{date}");
        let (status, headers, _) = app.call("HEAD", &format!("/{id}"), Body::empty()).await;
        assert_eq!(status, 204);
        assert_eq!(header(&headers, "last-modified"), "784111777.0", "{date}");
    }
}

#[tokio::test]
async fn unparseable_last_modified_is_400_and_nothing_is_written() {
    let app = test_app(|_, _| {});
    let request = Request::put("/780")
        .header("Last-Modified", "garbage")
        .body(Body::from("abc"))
        .unwrap();
    let (status, _, body) = read(app.send(request).await).await;
    assert_eq!(status, 400);
    assert!(error_body(&body, 400)["message"]
        .as_str()
        .unwrap()
        .contains("garbage"));
    assert!(!app.prefix.join("780").exists());
    assert_eq!(app.call("HEAD", "/780", Body::empty()).await.0, 404);
}

#[tokio::test]
async fn chunked_and_form_encoded_bodies_are_raw_bytes() {
    let app = test_app(|_, _| {});
    let chunks = futures::stream::iter(
        ["ab", "cd", "ef"].map(|c| Ok::<_, std::io::Error>(c.as_bytes().to_vec())),
    );
    let request = Request::put("/chunked")
        .body(Body::from_stream(chunks))
        .unwrap();
    let (status, _, body) = read(app.send(request).await).await;
    assert_eq!(
        (status, json(&body)["total_bytes"].as_u64()),
        (201, Some(6))
    );
    let request = Request::put("/777")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(Body::from("abc=1&d"))
        .unwrap();
    assert_eq!(read(app.send(request).await).await.0, 201);
    assert_eq!(std::fs::read(app.prefix.join("777")).unwrap(), b"abc=1&d");
}

#[tokio::test]
async fn head_reports_the_reference_headers() {
    let app = test_app(|_, _| {});
    app.put("1235", b"Writing content for first file").await;
    let (status, headers, body) = app.call("HEAD", "/1235", Body::empty()).await;
    assert_eq!(status, 204);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "x-pacifica-messsage"), "File was found");
    assert_eq!(header(&headers, "x-content-length"), "30");
    assert_eq!(header(&headers, "x-pacifica-bytes-per-level"), "(30,)");
    assert_eq!(header(&headers, "x-pacifica-file-storage-media"), "disk");
    assert_eq!(
        header(&headers, "x-pacifica-file"),
        app.prefix.join("1235").to_str().unwrap()
    );
    let mtime: f64 = header(&headers, "last-modified").parse().unwrap();
    let ctime: f64 = header(&headers, "x-pacifica-ctime").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - mtime).abs() < 60.0 && (now - ctime).abs() < 60.0);
}

#[tokio::test]
async fn get_streams_with_length_etag_and_ranges() {
    let app = test_app(|_, _| {});
    app.put("abc", b"xyz").await;
    let (status, headers, body) = app.call("GET", "/abc", Body::empty()).await;
    assert_eq!((status, body.as_slice()), (200, &b"xyz"[..]));
    assert_eq!(header(&headers, "content-length"), "3");
    assert_eq!(header(&headers, "content-type"), "application/octet-stream");
    assert_eq!(header(&headers, "accept-ranges"), "bytes");
    assert!(header(&headers, "etag").starts_with('"'));
    httpdate::parse_http_date(header(&headers, "last-modified")).unwrap();

    assert_eq!(
        app.call("GET", "/abc?byte_range=1-3", Body::empty())
            .await
            .2,
        b"yz"
    );
    assert_eq!(
        app.call("GET", "/abc?byte_range=0-100", Body::empty())
            .await
            .2,
        b"xyz"
    );
    assert_eq!(
        app.call("GET", "/abc?byte_range=2-1", Body::empty())
            .await
            .2,
        b""
    );
    let (status, _, body) = app.call("GET", "/abc?byte_range=blah", Body::empty()).await;
    assert_eq!(status, 400);
    assert!(error_body(&body, 400)["message"]
        .as_str()
        .unwrap()
        .contains("Invalid byte range format (int-int) given blah"));

    let ranged = |r: &'static str| {
        Request::get("/abc")
            .header("Range", r)
            .body(Body::empty())
            .unwrap()
    };
    let (status, headers, body) = read(app.send(ranged("bytes=1-1")).await).await;
    assert_eq!((status, body.as_slice()), (206, &b"y"[..]));
    assert_eq!(header(&headers, "content-range"), "bytes 1-1/3");
    assert_eq!(header(&headers, "content-length"), "1");
    let (status, _, body) = read(app.send(ranged("bytes=-2")).await).await;
    assert_eq!((status, body.as_slice()), (206, &b"yz"[..]));
    let (status, headers, _) = read(app.send(ranged("bytes=10-")).await).await;
    assert_eq!(status, 416);
    assert_eq!(header(&headers, "content-range"), "bytes */3");
    let (status, _, body) = read(app.send(ranged("bytes=0-0,2-2")).await).await;
    assert_eq!((status, body.as_slice()), (200, &b"xyz"[..]));
}

#[tokio::test]
async fn range_unit_in_any_case_an_overflowing_end_clamped_and_if_range() {
    let app = test_app(|_, _| {});
    app.put("r", b"0123456789").await;
    let get = |headers: &[(&str, &str)]| {
        let mut request = Request::get("/r");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Body::empty()).unwrap()
    };
    let (status, headers, body) = read(app.send(get(&[("Range", "BYTES=2-3")])).await).await;
    assert_eq!((status, body.as_slice()), (206, &b"23"[..]));
    let etag = header(&headers, "etag").to_string();
    let last_modified = header(&headers, "last-modified").to_string();
    let (status, headers, body) = read(
        app.send(get(&[("Range", "bytes=7-99999999999999999999999")]))
            .await,
    )
    .await;
    assert_eq!((status, body.as_slice()), (206, &b"789"[..]));
    assert_eq!(header(&headers, "content-range"), "bytes 7-9/10");

    // If-Range: the range only for the version the client has.
    for validator in [etag.as_str(), last_modified.as_str()] {
        let (status, _, body) = read(
            app.send(get(&[("Range", "bytes=5-"), ("If-Range", validator)]))
                .await,
        )
        .await;
        assert_eq!(
            (status, body.as_slice()),
            (206, &b"56789"[..]),
            "{validator}"
        );
    }
    for validator in ["\"another-version\"", "Thu, 01 Jan 1970 00:00:00 GMT"] {
        let (status, headers, body) = read(
            app.send(get(&[("Range", "bytes=5-"), ("If-Range", validator)]))
                .await,
        )
        .await;
        assert_eq!(
            (status, body.as_slice()),
            (200, &b"0123456789"[..]),
            "{validator}"
        );
        assert!(headers.get("content-range").is_none());
    }
}

/// A file deleted and stored again with the same size and Last-Modified is another version: a client
/// holding the old ETag must not take it for the same one.
#[tokio::test]
async fn the_etag_changes_when_a_file_is_stored_again() {
    let app = test_app(|_, _| {});
    let store = || {
        Request::put("/same")
            .header("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")
            .body(Body::from("abc"))
            .unwrap()
    };
    assert_eq!(read(app.send(store()).await).await.0, 201);
    let (_, first, _) = app.call("GET", "/same", Body::empty()).await;
    assert_eq!(app.call("DELETE", "/same", Body::empty()).await.0, 200);
    // The inode change time has a clock tick of a few milliseconds.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(read(app.send(store()).await).await.0, 201);
    let (_, second, _) = app.call("GET", "/same", Body::empty()).await;
    assert_eq!(
        header(&first, "last-modified"),
        header(&second, "last-modified")
    );
    assert_ne!(header(&first, "etag"), header(&second, "etag"));
}

#[tokio::test]
async fn byte_range_over_a_block_boundary() {
    // The reference's own test: BLOCK..2*BLOCK+1 of a 2 MiB + 17 byte file gives BLOCK+1 bytes.
    let app = test_app(|_, _| {});
    let block = 1 << 20;
    let data: Vec<u8> = (0..2 * block + 17).map(|i| (i % 251) as u8).collect();
    app.put("big", &data).await;
    let (status, _, body) = app
        .call(
            "GET",
            &format!("/big?byte_range={block}-{}", 2 * block + 1),
            Body::empty(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), block + 1);
    assert!(body == data[block..2 * block + 1]);
}

#[tokio::test]
async fn stage_with_and_without_body() {
    let app = test_app(|_, _| {});
    app.put("12345", b"x").await;
    let (status, _, body) = app.call("POST", "/12345", Body::empty()).await;
    assert_eq!(status, 200);
    assert_eq!(body, br#"{"message": "File was staged", "file": "12345"}"#);
    let request = Request::post("/12345")
        .header("Content-Type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(read(app.send(request).await).await.0, 200);
}

#[tokio::test]
async fn missing_files_are_404_with_the_json_shape() {
    let app = test_app(|_, _| {});
    for method in ["GET", "DELETE"] {
        let (status, headers, body) = app.call(method, "/99999", Body::empty()).await;
        assert_eq!(status, 404, "{method}");
        assert_eq!(header(&headers, "content-type"), "application/json");
        let err = error_body(&body, 404);
        assert_eq!(err["version"], env!("CARGO_PKG_VERSION"));
    }
    let (status, _, body) = app.call("HEAD", "/99999", Body::empty()).await;
    assert_eq!((status, body.len()), (404, 0));
}

/// pacifica-cartd takes only a 500 from POST as a failed stage; on anything else it goes on to HEAD the
/// file and its task dies, leaving the cart "staging" for ever.
#[tokio::test]
async fn staging_a_missing_file_is_a_500_naming_it() {
    let app = test_app(|_, _| {});
    let (status, headers, body) = app.call("POST", "/99998", Body::empty()).await;
    assert_eq!(status, 500);
    assert_eq!(header(&headers, "content-type"), "application/json");
    let err = error_body(&body, 500);
    assert!(err["message"].as_str().unwrap().contains("99998"), "{err}");
}

#[tokio::test]
async fn delete_removes_and_answers_empty() {
    let app = test_app(|_, _| {});
    app.put("1238", b"bye").await;
    let (status, headers, body) = app.call("DELETE", "/1238", Body::empty()).await;
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(header(&headers, "content-length"), "0");
    assert_eq!(app.call("GET", "/1238", Body::empty()).await.0, 404);
}

#[tokio::test]
async fn bad_ids_are_400_and_touch_nothing_outside() {
    let app = test_app(|s, _| s.use_id2filename = false);
    for uri in [
        "/..%2Fescape",
        "/%2Fetc%2Fpasswd",
        "/..",
        "/a%00b",
        "/sub%2Ffile",
        "/.hidden",
    ] {
        let (status, _, body) = app.call("PUT", uri, &b"evil"[..]).await;
        assert_eq!(status, 400, "{uri}");
        error_body(&body, 400);
        assert_eq!(app.call("GET", uri, Body::empty()).await.0, 400, "{uri}");
    }
    assert!(!app.dir.path().join("escape").exists());
    let listing = archive_entries(&app.prefix);
    assert!(listing.is_empty(), "{listing:?}");
}

#[tokio::test]
async fn id2filename_layout_and_integer_ids() {
    let app = test_app(|s, _| s.use_id2filename = true);
    assert_eq!(app.put("12345", b"x").await, 201);
    assert!(app.prefix.join("39/3039").is_file());
    assert_eq!(app.put("007", b"x").await, 201);
    assert!(app.prefix.join("file.7").is_file());
    assert_eq!(app.put("18446744073709551615", b"x").await, 201);
    assert!(app
        .prefix
        .join("ff/ff/ff/ff/ff/ff/ff/ffffffffffffffff")
        .is_file());
    assert_eq!(app.put("-9223372036854775808", b"x").await, 201);
    for bad in ["abc", "1.5", "18446744073709551616"] {
        let (status, _, body) = app.call("PUT", &format!("/{bad}"), &b"x"[..]).await;
        assert_eq!(status, 400, "{bad}");
        assert!(error_body(&body, 400)["message"]
            .as_str()
            .unwrap()
            .contains(bad));
    }
    let (_, headers, _) = app.call("HEAD", "/12345", Body::empty()).await;
    assert!(header(&headers, "x-pacifica-file").ends_with("/39/3039"));
}

#[tokio::test]
async fn other_methods_and_paths() {
    let app = test_app(|_, _| {});
    let (status, headers, body) = app.call("OPTIONS", "/abc", Body::empty()).await;
    assert_eq!(status, 405);
    assert_eq!(
        header(&headers, "allow"),
        "DELETE, GET, HEAD, PATCH, POST, PUT"
    );
    error_body(&body, 405);
    let (status, _, body) = app.call("PUT", "/x/y", &b"1"[..]).await;
    assert_eq!(status, 404);
    assert_eq!(
        error_body(&body, 404)["message"],
        "Nothing matches the given URI"
    );
    let (status, _, body) = app.call("PUT", "/900?foo=bar", &b"1"[..]).await;
    assert_eq!(status, 400);
    assert!(error_body(&body, 400)["message"]
        .as_str()
        .unwrap()
        .contains("foo"));
    assert_eq!(app.put("trailing", b"1").await, 201);
    assert_eq!(app.call("GET", "/trailing/", Body::empty()).await.2, b"1");
}

fn patch(uri: &str, content_type: &str, body: &str) -> Request<Body> {
    Request::patch(uri)
        .header("Content-Type", content_type)
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn patch_moves_files_in_from_allowed_directories() {
    let app = test_app(|s, scratch| s.patch_source_dirs = vec![scratch.to_path_buf()]);
    let src = app.scratch.join("upload.bin");
    std::fs::write(&src, b"from ingest").unwrap();
    let doc = serde_json::json!({"path": src}).to_string();
    let (status, _, body) = read(app.send(patch("/54321", "application/json", &doc)).await).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, br#"{"message": "File Moved Successfully"}"#);
    assert!(!src.exists());
    assert_eq!(
        app.call("GET", "/54321", Body::empty()).await.2,
        b"from ingest"
    );
    // Write-once applies to PATCH too.
    std::fs::write(&src, b"again").unwrap();
    let (status, _, _) = read(app.send(patch("/54321", "text/javascript", &doc)).await).await;
    assert_eq!(status, 500);
    assert!(src.exists());
    // Missing source under an allowed directory.
    let missing = serde_json::json!({"path": app.scratch.join("nope")}).to_string();
    assert_eq!(
        read(app.send(patch("/1", "application/json", &missing)).await)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn patch_refuses_everything_else() {
    let app = test_app(|s, scratch| s.patch_source_dirs = vec![scratch.join("allowed")]);
    std::fs::create_dir_all(app.scratch.join("allowed")).unwrap();
    let outside = app.scratch.join("secret");
    std::fs::write(&outside, b"secret").unwrap();
    // Outside the allowed directory, directly, through `..`, and through a symlink.
    let via_dots = app.scratch.join("allowed/../secret");
    let link = app.scratch.join("allowed/link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let link_dir = app.scratch.join("allowed/linkdir");
    std::os::unix::fs::symlink(&app.scratch, &link_dir).unwrap();
    for path in [
        outside.clone(),
        via_dots,
        link_dir.join("secret"),
        "/etc/hostname".into(),
    ] {
        let doc = serde_json::json!({"path": path}).to_string();
        let (status, _, body) = read(app.send(patch("/1", "application/json", &doc)).await).await;
        assert_eq!(status, 403, "{path:?}: {}", String::from_utf8_lossy(&body));
        error_body(&body, 403);
    }
    // A symlink inside the allowed directory is not followed.
    let doc = serde_json::json!({"path": link}).to_string();
    assert_eq!(
        read(app.send(patch("/2", "application/json", &doc)).await)
            .await
            .0,
        400
    );
    assert!(outside.exists() && link.exists());
    assert!(archive_entries(&app.prefix).is_empty());

    let (status, _, body) = read(app.send(patch("/1", "text/plain", "{}")).await).await;
    assert_eq!(status, 415);
    assert_eq!(
        error_body(&body, 415)["message"],
        "Expected an entity of content type application/json, text/javascript"
    );
    let (status, _, body) = read(app.send(patch("/1", "application/json", "{nope")).await).await;
    assert_eq!(status, 400);
    assert!(error_body(&body, 400)["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid JSON document"));
    assert_eq!(
        read(
            app.send(patch("/1", "application/json", "{\"foo\": 1}"))
                .await
        )
        .await
        .0,
        400
    );
    assert_eq!(
        read(app.send(patch("/1", "application/json", "")).await)
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn patch_refuses_dot_dot_and_sources_inside_the_archive() {
    // The whole temporary directory is allowed: the archive prefix lies inside it.
    let app = test_app(|s, scratch| s.patch_source_dirs = vec![scratch.parent().unwrap().into()]);
    std::fs::create_dir_all(app.scratch.join("sub")).unwrap();
    std::fs::write(app.scratch.join("file"), b"x").unwrap();
    // `..` is 403 wherever it leads: to a missing directory, or back inside the allowed tree.
    for path in [
        app.scratch.join("../nowhere/file"),
        app.scratch.join("sub/../file"),
    ] {
        let doc = serde_json::json!({"path": path}).to_string();
        let (status, _, body) = read(app.send(patch("/1", "application/json", &doc)).await).await;
        assert_eq!(status, 403, "{path:?}: {}", String::from_utf8_lossy(&body));
        assert!(error_body(&body, 403)["message"]
            .as_str()
            .unwrap()
            .contains(".."));
    }
    assert!(app.scratch.join("file").exists());
    // A file of the archive itself is not moved onto another id.
    assert_eq!(app.put("7", b"archived").await, 201);
    let stored = std::fs::canonicalize(app.prefix.join("7")).unwrap();
    let doc = serde_json::json!({"path": stored}).to_string();
    let (status, _, body) = read(app.send(patch("/8", "application/json", &doc)).await).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(error_body(&body, 400)["message"]
        .as_str()
        .unwrap()
        .contains("inside the archive"));
    assert_eq!(app.call("GET", "/7", Body::empty()).await.2, b"archived");
    assert_eq!(app.call("HEAD", "/8", Body::empty()).await.0, 404);
}

#[tokio::test]
async fn symlinks_in_the_archive_are_never_followed() {
    let app = test_app(|s, _| s.use_id2filename = true);
    let secret = app.scratch.join("secret");
    std::fs::write(&secret, b"secret").unwrap();
    std::fs::write(app.scratch.join("4d2"), b"secret too").unwrap();
    // id 12345 is 39/3039: a symlink as the file; id 1234 is d2/4d2: a symlink as the directory.
    std::fs::create_dir_all(app.prefix.join("39")).unwrap();
    std::os::unix::fs::symlink(&secret, app.prefix.join("39/3039")).unwrap();
    std::os::unix::fs::symlink(&app.scratch, app.prefix.join("d2")).unwrap();
    // Answered as for a missing file: 404, and 500 for a stage (as the reference does).
    for (method, expected) in [("GET", 404), ("HEAD", 404), ("POST", 500), ("DELETE", 404)] {
        for uri in ["/12345", "/1234"] {
            let (status, _, body) = app.call(method, uri, Body::empty()).await;
            assert_eq!(status, expected, "{method} {uri}");
            if method != "HEAD" {
                error_body(&body, expected);
            }
        }
    }
    // id 4050 is d2/fd2: writing through the directory symlink is refused.
    let (status, _, body) = app.call("PUT", "/4050", b"x".to_vec()).await;
    assert_eq!(status, 400);
    assert!(error_body(&body, 400)["message"]
        .as_str()
        .unwrap()
        .contains("symlink"));
    assert!(!app.scratch.join("fd2").exists());
    assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
    assert!(app.scratch.join("4d2").exists());
}

#[tokio::test]
async fn patch_is_off_without_configured_directories() {
    let app = test_app(|_, _| {});
    let src = app.scratch.join("f");
    std::fs::write(&src, b"x").unwrap();
    let doc = serde_json::json!({"path": src}).to_string();
    let (status, _, body) = read(app.send(patch("/1", "application/json", &doc)).await).await;
    assert_eq!(status, 403);
    assert!(error_body(&body, 403)["message"]
        .as_str()
        .unwrap()
        .contains("patch_source_dirs"));
    assert!(src.exists());
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = test_app(|_, _| {});
    let (_, headers, _) = app.call("GET", "/", Body::empty()).await;
    assert!(!header(&headers, "x-request-id").is_empty());
}

/// A backend that panics in every operation: the client still gets the JSON 500, never a dropped
/// connection or a plain-text page.
#[derive(Debug)]
struct PanickingBackend;

#[async_trait::async_trait]
impl archive_core::ArchiveBackend for PanickingBackend {
    fn name(&self) -> &'static str {
        "panicking"
    }
    fn capabilities(&self) -> archive_core::Capabilities {
        archive_core::Capabilities::default()
    }
    async fn put(
        &self,
        _: &archive_core::Key,
        _: archive_core::ByteStream,
        _: archive_core::PutOptions,
    ) -> archive_core::Result<archive_core::PutOutcome> {
        panic!("put exploded")
    }
    async fn get(
        &self,
        _: &archive_core::Key,
        _: archive_core::ReadRange,
    ) -> archive_core::Result<archive_core::GetResult> {
        panic!("get exploded")
    }
    async fn status(
        &self,
        _: &archive_core::Key,
    ) -> archive_core::Result<archive_core::FileStatus> {
        panic!("status exploded")
    }
    async fn stage(&self, _: &archive_core::Key) -> archive_core::Result<()> {
        panic!("stage exploded")
    }
    async fn adopt(
        &self,
        _: &archive_core::Key,
        _: &std::path::Path,
        _: bool,
    ) -> archive_core::Result<()> {
        panic!("adopt exploded")
    }
    async fn delete(&self, _: &archive_core::Key) -> archive_core::Result<()> {
        panic!("delete exploded")
    }
    async fn list(&self, _: &str) -> archive_core::Result<Vec<archive_core::ListEntry>> {
        panic!("list exploded")
    }
}

#[tokio::test]
async fn a_panic_becomes_a_json_500() {
    let router = archiveinterface::app(archiveinterface::AppState::new(
        std::sync::Arc::new(PanickingBackend),
        settings(),
    ));
    for method in ["GET", "PUT", "POST", "DELETE", "HEAD"] {
        let request = Request::builder()
            .method(method)
            .uri("/1")
            .body(Body::from("x"))
            .unwrap();
        let (status, headers, body) = read(
            tower::ServiceExt::oneshot(router.clone(), request)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 500, "{method}");
        assert_eq!(header(&headers, "content-type"), "application/json");
        if method != "HEAD" {
            error_body(&body, 500);
        }
    }
    // The panics are counted, as 500s and on their own, and the in-flight gauge only holds the
    // metrics request itself.
    let request = Request::get("/.metrics").body(Body::empty()).unwrap();
    let (_, _, body) = read(
        tower::ServiceExt::oneshot(router.clone(), request)
            .await
            .unwrap(),
    )
    .await;
    let text = String::from_utf8(body).unwrap();
    for line in [
        "archiveinterface_http_requests_total{method=\"GET\",status=\"500\"} 1",
        "archiveinterface_http_requests_total{method=\"HEAD\",status=\"500\"} 1",
        "archiveinterface_http_handler_panics_total 5",
        "archiveinterface_http_requests_in_flight 1",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
}

#[tokio::test]
async fn a_request_dropped_by_its_client_leaves_the_in_flight_gauge() {
    let app = test_app(|_, _| {});
    // A PUT whose body never ends, abandoned (its future dropped) as when the client goes away.
    let (_tx, body) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let request = Request::put("/abandoned")
        .body(Body::from_stream(body))
        .unwrap();
    let pending = app.send(request);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), pending)
            .await
            .is_err(),
        "the PUT cannot finish without its body"
    );
    let (_, _, body) = app.call("GET", "/.metrics", Body::empty()).await;
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("archiveinterface_http_requests_in_flight 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_method_and_status() {
    let app = test_app(|_, _| {});
    app.put("m1", b"x").await;
    app.call("GET", "/m1", Body::empty()).await;
    app.call("GET", "/missing", Body::empty()).await;
    let (status, headers, body) = app.call("GET", "/.metrics", Body::empty()).await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").starts_with("text/plain"));
    let text = String::from_utf8(body).unwrap();
    for line in [
        "archiveinterface_http_requests_total{method=\"PUT\",status=\"201\"} 1",
        "archiveinterface_http_requests_total{method=\"GET\",status=\"200\"} 1",
        "archiveinterface_http_requests_total{method=\"GET\",status=\"404\"} 1",
        "archiveinterface_http_requests_in_flight 1",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
}

#[tokio::test]
async fn an_id_of_255_bytes_stores_and_reads() {
    let app = test_app(|_, _| {});
    let id = "7".repeat(255);
    // Larger than one write chunk, so the body goes through a partial file written in several steps.
    let data = vec![42u8; 3 * 1024 * 1024 + 1];
    assert_eq!(app.put(&id, &data).await, 201);
    let (status, _, body) = app.call("GET", &format!("/{id}"), Body::empty()).await;
    assert_eq!(status, 200);
    assert!(body == data, "content differs");
}
