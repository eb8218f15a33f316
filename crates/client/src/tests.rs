//! Client tests against a one-shot fake HTTP server on loopback.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::*;

/// Serves one request with `status` and `body`; yields the request head and body.
async fn serve_once(status: &str, body: &str) -> (String, oneshot::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read the head, then as much body as content-length says.
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let len = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= head_end + 4 + len || n == 0 {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        sock.write_all(response.as_bytes()).await.unwrap();
        let _ = tx.send(String::from_utf8_lossy(&buf).to_string());
    });
    (format!("http://{addr}"), rx)
}

const CLUSTER: &str = r#"{"metadata":{"namespace":"default","type":"Clusters.omni.sidero.dev","id":"a b/c","version":2,"phase":"running"},"spec":{"talosversion":"1.5.5"}}"#;

#[tokio::test]
async fn get_encodes_path_and_sends_token() {
    let (endpoint, req) = serve_once("200 OK", CLUSTER).await;
    let client = Client::new(&endpoint, Some("s3cret".into())).unwrap();
    let r = client
        .get("Clusters.omni.sidero.dev", "default", "a b/c")
        .await
        .unwrap();
    assert_eq!(r.metadata.version, 2);
    let req = req.await.unwrap();
    assert!(
        req.starts_with(
            "GET /api/v1/resources/Clusters.omni.sidero.dev/default/a%20b%2Fc HTTP/1.1"
        ),
        "{req}"
    );
    assert!(
        req.to_ascii_lowercase()
            .contains("authorization: bearer s3cret"),
        "{req}"
    );
}

#[tokio::test]
async fn list_sends_selector_and_unwraps_items() {
    let (endpoint, req) = serve_once("200 OK", &format!(r#"{{"items":[{CLUSTER}]}}"#)).await;
    let client = Client::new(&format!("{endpoint}/"), None).unwrap();
    let items = client
        .list(
            "EtcdBackups.omni.sidero.dev",
            "external",
            Some("omni.sidero.dev/cluster=talos-default"),
        )
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    let req = req.await.unwrap();
    assert!(
        req.starts_with("GET /api/v1/resources/EtcdBackups.omni.sidero.dev/external?selector=omni.sidero.dev%2Fcluster%3Dtalos-default "),
        "{req}"
    );
    assert!(!req.to_ascii_lowercase().contains("authorization"));
}

#[tokio::test]
async fn apply_posts_and_parses_result() {
    let (endpoint, req) = serve_once(
        "200 OK",
        &format!(r#"{{"result":"unchanged","resource":{CLUSTER}}}"#),
    )
    .await;
    let client = Client::new(&endpoint, None).unwrap();
    let res = Resource::new(
        "Clusters.omni.sidero.dev",
        "default",
        "a b/c",
        serde_json::json!({}),
    );
    let out = client.apply(&res).await.unwrap();
    assert_eq!(out.result, ApplyOutcome::Unchanged);
    let req = req.await.unwrap();
    assert!(req.starts_with("POST /api/v1/apply "), "{req}");
    assert!(req.contains(r#""id":"a b/c""#), "{req}");
}

#[tokio::test]
async fn delete_reports_tearing_down() {
    let (endpoint, _req) = serve_once("202 Accepted", r#"{"destroyed":false}"#).await;
    let client = Client::new(&endpoint, None).unwrap();
    assert!(!client
        .delete("Clusters.omni.sidero.dev", "default", "x")
        .await
        .unwrap());
}

#[tokio::test]
async fn api_errors_keep_code_and_message() {
    let (endpoint, _req) = serve_once(
        "409 Conflict",
        r#"{"error":{"code":"conflict","message":"version mismatch: have 3, got 2"}}"#,
    )
    .await;
    let client = Client::new(&endpoint, Some("tok".into())).unwrap();
    let err = client
        .update(&Resource::new(
            "Clusters.omni.sidero.dev",
            "default",
            "x",
            serde_json::json!({}),
        ))
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    assert_eq!(err.status(), Some(409));
    assert_eq!(
        err.to_string(),
        "version mismatch: have 3, got 2 (conflict)"
    );
}

#[tokio::test]
async fn connection_refused_names_the_endpoint() {
    // Bind and drop to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = Client::new(&endpoint, Some("hunter2".into())).unwrap();
    let err = client
        .list("Clusters.omni.sidero.dev", "default", None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("cannot reach omni at {endpoint}"));
    let mut chain = format!("{err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&s.to_string());
        source = s.source();
    }
    assert!(!chain.contains("hunter2"), "{chain}");
}

#[tokio::test]
async fn watch_streams_events() {
    let body = format!("{{\"event\":\"created\",\"resource\":{CLUSTER}}}\n{{\"event\":\"bootstrapped\",\"resource\":null}}\n");
    let (endpoint, req) = serve_once("200 OK", &body).await;
    let client = Client::new(&endpoint, None).unwrap();
    let events: Vec<_> = client
        .watch("Clusters.omni.sidero.dev", "default", None, Some("c1"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(events.len(), 2);
    assert!(matches!(events[1], Ok(WatchEvent::Bootstrapped)));
    assert!(req
        .await
        .unwrap()
        .starts_with("GET /api/v1/watch/Clusters.omni.sidero.dev/default?id=c1 "));
}

#[tokio::test]
async fn get_stream_keeps_the_path_prefix() {
    let (endpoint, req) = serve_once("200 OK", "abc").await;
    let client = Client::new(&format!("{endpoint}/omni"), None).unwrap();
    let download = client.get_stream("/api/v1/download?x=1").await.unwrap();
    assert_eq!(download.content_length, Some(3));
    let bytes: Vec<Bytes> = download.body.try_collect().await.unwrap();
    assert_eq!(bytes.concat(), b"abc");
    assert!(req
        .await
        .unwrap()
        .starts_with("GET /omni/api/v1/download?x=1 "));
}

#[test]
fn token_is_redacted_and_endpoints_validated() {
    let client = Client::new("http://127.0.0.1:8099", Some("hunter2".into())).unwrap();
    let dbg = format!("{client:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
    assert!(matches!(
        Client::new("ftp://x", None),
        Err(ClientError::InvalidEndpoint { .. })
    ));
    assert!(matches!(
        Client::new("127.0.0.1:8099", None),
        Err(ClientError::InvalidEndpoint { .. })
    ));
    assert!(matches!(
        Client::new("http://x", Some("a\nb".into())),
        Err(ClientError::InvalidToken)
    ));
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_named_a_tls_failure() {
    // Answers whatever comes (a ClientHello here) with plain HTTP.
    let endpoint = serve_seq(vec![("200 OK", "")]).await;
    let endpoint = endpoint.replace("http://", "https://");
    let client = Client::new(&endpoint, None).unwrap();
    let err = client.list("T", "default", None).await.unwrap_err();
    let mut chain = format!("{err:?}");
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain.push_str(&format!("\n-> {c:?}"));
        cause = c.source();
    }
    assert!(matches!(err, ClientError::Tls { .. }), "{chain}");
    assert!(err.to_string().contains("did not answer with TLS"), "{err}");
}

/// Answers each connection in turn with the next of `responses` (status,
/// extra headers); counts the requests.
async fn serve_seq(responses: Vec<(&'static str, &'static str)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for (status, headers) in responses {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 8192];
            let _ = sock.read(&mut buf).await;
            let body = if status.starts_with("200") {
                r#"{"items":[]}"#
            } else {
                r#"{"error":{"code":"too_many_requests","message":"exceeded 50 requests per second; slow down"}}"#
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\n{headers}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn too_many_requests_is_retried_after_the_servers_delay() {
    let endpoint = serve_seq(vec![
        ("429 Too Many Requests", "retry-after: 0\r\n"),
        ("429 Too Many Requests", ""),
        ("200 OK", ""),
    ])
    .await;
    let client = Client::new(&endpoint, None).unwrap();
    let items = client.list("T", "default", None).await.unwrap();
    assert!(items.is_empty());
}

#[tokio::test]
async fn too_many_requests_gives_up_after_bounded_retries() {
    let endpoint = serve_seq(vec![("429 Too Many Requests", "retry-after: 0\r\n"); 13]).await;
    let client = Client::new(&endpoint, None).unwrap();
    let err = client.list("T", "default", None).await.unwrap_err();
    assert_eq!(err.status(), Some(429), "{err}");
}
