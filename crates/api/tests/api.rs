//! The API in-process: auth, roles, validation, versions, watch. Every bad
//! input must get a 4xx naming the problem and leave the state unchanged.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use omni_api::auth::{create_token, Role};
use omni_api::{Api, ApiSettings};
use omni_state::State;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Fixture {
    state: State,
    router: axum::Router,
    admin: String,
    operator: String,
    reader: String,
}

async fn fixture() -> Fixture {
    let state = State::memory();
    let (_, admin) = create_token(&state, Role::Admin, "").await.unwrap();
    let (_, operator) = create_token(&state, Role::Operator, "").await.unwrap();
    let (_, reader) = create_token(&state, Role::Reader, "").await.unwrap();
    let router = Api::new(state.clone(), ApiSettings::default()).router();
    Fixture {
        state,
        router,
        admin,
        operator,
        reader,
    }
}

impl Fixture {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .header("content-type", "application/json")
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn apply(&self, token: &str, doc: Value) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/api/v1/apply",
            Some(token),
            Some(doc.to_string()),
        )
        .await
    }

    /// Everything in the state, to prove a rejected request changed nothing.
    async fn snapshot(&self) -> Vec<omni_resources::Resource> {
        let mut all = Vec::new();
        for t in omni_resources::registry() {
            for ns in ["default", "ephemeral", "external", "auth"] {
                all.extend(
                    self.state
                        .list(ns, t.name, &Default::default())
                        .await
                        .unwrap(),
                );
            }
        }
        all
    }
}

fn cluster(id: &str) -> Value {
    json!({"metadata": {"namespace": "default", "type": "Clusters.omni.sidero.dev", "id": id},
           "spec": {"kubernetesversion": "1.28.2", "talosversion": "1.5.5"}})
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn apply_creates_updates_and_reports_unchanged() {
    let f = fixture().await;
    let (s, v) = f.apply(&f.operator, cluster("talos-default")).await;
    assert_eq!((s, v["result"].as_str()), (StatusCode::OK, Some("created")));
    assert_eq!(v["resource"]["metadata"]["version"], 1);
    let (_, v) = f.apply(&f.operator, cluster("talos-default")).await;
    assert_eq!(v["result"], "unchanged");
    let mut changed = cluster("talos-default");
    changed["spec"]["backupconfiguration"] = json!({"interval": {"seconds": 3600, "nanos": 0}});
    let (_, v) = f.apply(&f.operator, changed).await;
    assert_eq!(v["result"], "updated");
    assert_eq!(v["resource"]["metadata"]["version"], 2);
    assert_eq!(
        v["resource"]["spec"]["backupconfiguration"]["interval"]["seconds"],
        3600
    );
    let (s, v) = f
        .call(
            Method::GET,
            "/api/v1/resources/cluster/default/talos-default",
            Some(&f.reader),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["spec"]["kubernetesversion"], "1.28.2");
}

#[tokio::test]
async fn bad_input_is_rejected_with_the_field_named_and_changes_nothing() {
    let f = fixture().await;
    f.apply(&f.operator, cluster("c1")).await;
    let before = f.snapshot().await;
    let cases: Vec<(&str, Option<String>, StatusCode, &str)> = vec![
        ("malformed json", Some("{\"metadata\": ".into()), StatusCode::BAD_REQUEST, "EOF while parsing"),
        ("unknown type", Some(json!({"metadata": {"type": "Nope", "id": "x"}, "spec": {}}).to_string()), StatusCode::BAD_REQUEST, "metadata.type: unknown resource type"),
        ("unknown spec field", Some(json!({"metadata": {"type": "cluster", "id": "c1"}, "spec": {"talosversion": "1", "bogus": 1}}).to_string()), StatusCode::BAD_REQUEST, "spec.bogus: unknown field `bogus`"),
        ("unknown metadata field", Some(json!({"metadata": {"type": "cluster", "id": "c1", "nmespace": "x"}, "spec": {}}).to_string()), StatusCode::BAD_REQUEST, "metadata.nmespace"),
        ("wrong field type", Some(json!({"metadata": {"type": "cluster", "id": "c1"}, "spec": {"talosversion": 5}}).to_string()), StatusCode::BAD_REQUEST, "spec.talosversion: invalid type"),
        ("missing id", Some(json!({"metadata": {"type": "cluster"}, "spec": {}}).to_string()), StatusCode::BAD_REQUEST, "metadata.id: is required"),
        ("path in id", Some(json!({"metadata": {"type": "cluster", "id": "../etc"}, "spec": {}}).to_string()), StatusCode::BAD_REQUEST, "metadata.id"),
        ("stale version", Some(json!({"metadata": {"type": "cluster", "id": "c1", "version": 7}, "spec": {}}).to_string()), StatusCode::CONFLICT, "version conflict"),
        ("wrong namespace", Some(json!({"metadata": {"type": "cluster", "namespace": "ephemeral", "id": "c9"}, "spec": {}}).to_string()), StatusCode::BAD_REQUEST, "metadata.namespace"),
        ("owner set", Some(json!({"metadata": {"type": "cluster", "id": "c9", "owner": "me"}, "spec": {}}).to_string()), StatusCode::BAD_REQUEST, "metadata.owner"),
        ("bad label", Some(json!({"metadata": {"type": "cluster", "id": "c9", "labels": {"a b": "c"}}, "spec": {}}).to_string()), StatusCode::BAD_REQUEST, "metadata.labels"),
        ("interval too short", Some(json!({"metadata": {"type": "cluster", "id": "c1"}, "spec": {"backupconfiguration": {"interval": {"seconds": 1800}}}}).to_string()), StatusCode::BAD_REQUEST, "backup interval must be greater than 1h0m0s, actual 30m0s"),
        ("duplicate spec key", Some(r#"{"metadata": {"type": "cluster", "id": "c1"}, "spec": {"talosversion": "1.5.5", "talosversion": "1.6.0"}}"#.into()), StatusCode::BAD_REQUEST, "spec: duplicate key \"talosversion\""),
        ("duplicate nested key", Some(r#"{"metadata": {"type": "cluster", "id": "c1"}, "spec": {"backupconfiguration": {"interval": {"seconds": 3600}, "interval": {"seconds": 7200}}}}"#.into()), StatusCode::BAD_REQUEST, "duplicate key \"interval\""),
        ("duplicate metadata key", Some(r#"{"metadata": {"type": "cluster", "id": "c1", "id": "c2"}, "spec": {}}"#.into()), StatusCode::BAD_REQUEST, "duplicate field `id`"),
        ("duplicate label", Some(r#"{"metadata": {"type": "cluster", "id": "c1", "labels": {"a": "1", "a": "2"}}, "spec": {}}"#.into()), StatusCode::BAD_REQUEST, "metadata.labels: duplicate key \"a\""),
        ("zero interval", Some(json!({"metadata": {"type": "cluster", "id": "c1"}, "spec": {"backupconfiguration": {"interval": {"seconds": 0}}}}).to_string()), StatusCode::BAD_REQUEST, "spec.backupconfiguration.interval: backup interval must be greater than 1h0m0s, actual 0s"),
        ("controller-owned type", Some(json!({"metadata": {"type": "etcdbackupstatus", "id": "c1"}, "spec": {}}).to_string()), StatusCode::FORBIDDEN, "written only by EtcdBackupController"),
        ("external type", Some(json!({"metadata": {"type": "etcdbackup", "id": "c1-1"}, "spec": {}}).to_string()), StatusCode::FORBIDDEN, "cannot be written"),
        ("manual backup in the past", Some(json!({"metadata": {"type": "etcdmanualbackup", "id": "c1"}, "spec": {"backupat": {"seconds": 1000, "nanos": 0}}}).to_string()), StatusCode::BAD_REQUEST, "backup time must not be more than 1 minute in the past"),
        ("deeply nested", Some(format!("{{\"metadata\": {{\"type\": \"cluster\", \"id\": \"c1\"}}, \"spec\": {}{}}}", "[".repeat(5000), "]".repeat(5000))), StatusCode::BAD_REQUEST, "recursion limit exceeded"),
    ];
    for (name, body, status, needle) in cases {
        let (s, v) = f
            .call(Method::POST, "/api/v1/apply", Some(&f.operator), body)
            .await;
        assert_eq!(s, status, "{name}: {v}");
        assert!(
            message(&v).contains(needle),
            "{name}: {:?} lacks {needle:?}",
            message(&v)
        );
    }
    assert_eq!(
        f.snapshot().await,
        before,
        "a rejected request changed the state"
    );
}

#[tokio::test]
async fn tokens_and_roles_are_enforced() {
    let f = fixture().await;
    let (s, v) = f
        .call(Method::GET, "/api/v1/resources/cluster/default", None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, _) = f
        .call(
            Method::GET,
            "/api/v1/resources/cluster/default",
            Some("omni-000000000000-00"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = f.apply(&f.reader, cluster("c1")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(message(&v).contains("requires the operator role"), "{v}");
    let s3 = json!({"metadata": {"type": "EtcdBackupS3Configs.omni.sidero.dev", "namespace": "default", "id": "etcd-backup-s3-conf"},
                    "spec": {"bucket": "b", "accesskeyid": "AK", "secretaccesskey": "SUPERSECRET"}});
    let (s, _) = f.apply(&f.operator, s3.clone()).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "operators may not change the store"
    );
    let (s, _) = f.apply(&f.admin, s3).await;
    assert_eq!(s, StatusCode::OK);
    // Secrets: redacted for non-admins, visible to admins.
    let path = "/api/v1/resources/etcdbackups3config/default/etcd-backup-s3-conf";
    let (_, v) = f.call(Method::GET, path, Some(&f.operator), None).await;
    assert_eq!(v["spec"]["secretaccesskey"], "<redacted>");
    assert!(!v.to_string().contains("SUPERSECRET"));
    let (_, v) = f.call(Method::GET, path, Some(&f.admin), None).await;
    assert_eq!(v["spec"]["secretaccesskey"], "SUPERSECRET");
    // The auth namespace is admins only.
    let (s, _) = f
        .call(
            Method::GET,
            "/api/v1/resources/apitokens/auth",
            Some(&f.operator),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Token management.
    let (s, v) = f
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&f.admin),
            Some(json!({"role": "reader"}).to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let new_token = v["token"].as_str().unwrap().to_string();
    let id = v["id"].as_str().unwrap().to_string();
    let (s, _) = f
        .call(
            Method::GET,
            "/api/v1/resources/cluster/default",
            Some(&new_token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = f
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&f.operator),
            Some(json!({"role": "admin"}).to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = f
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = f
        .call(
            Method::GET,
            "/api/v1/resources/cluster/default",
            Some(&new_token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn update_needs_the_version_read_and_delete_honours_finalizers() {
    let f = fixture().await;
    let (_, v) = f.apply(&f.operator, cluster("c1")).await;
    let mut doc = v["resource"].clone();
    doc["metadata"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| ["namespace", "type", "id", "version"].contains(&k.as_str()));
    doc["spec"]["talosversion"] = json!("1.6.0");
    let path = "/api/v1/resources/Clusters.omni.sidero.dev/default/c1";
    let (s, v) = f
        .call(Method::PUT, path, Some(&f.operator), Some(doc.to_string()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = f
        .call(Method::PUT, path, Some(&f.operator), Some(doc.to_string()))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let key = omni_resources::meta::ResourceKey::new("default", "Clusters.omni.sidero.dev", "c1");
    f.state
        .add_finalizer(&key, "ClusterController")
        .await
        .unwrap();
    let (s, v) = f.call(Method::DELETE, path, Some(&f.operator), None).await;
    assert_eq!(
        (s, v["destroyed"].as_bool()),
        (StatusCode::ACCEPTED, Some(false))
    );
    f.state
        .remove_finalizer(&key, "ClusterController")
        .await
        .unwrap();
    let (s, _) = f.call(Method::GET, path, Some(&f.reader), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let f = fixture().await;
    let big = json!({"metadata": {"type": "cluster", "id": "c1"}, "spec": {"installimage": "x".repeat(2 * 1024 * 1024)}});
    let (s, v) = f
        .call(
            Method::POST,
            "/api/v1/apply",
            Some(&f.operator),
            Some(big.to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // The documented JSON error, like every other error.
    assert_eq!(v["error"]["code"], "too_large", "{v}");
    assert!(message(&v).contains("1048576 bytes"), "{v}");
    assert!(f
        .state
        .get_opt(&omni_resources::meta::ResourceKey::new(
            "default",
            "Clusters.omni.sidero.dev",
            "c1"
        ))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn watch_streams_initial_items_then_changes() {
    let f = fixture().await;
    f.apply(&f.operator, cluster("a")).await;
    let req = Request::builder()
        .uri("/api/v1/watch/cluster/default")
        .header("authorization", format!("Bearer {}", f.reader))
        .body(Body::empty())
        .unwrap();
    let resp = f.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    use futures::StreamExt;
    let mut lines = Vec::new();
    let mut buf = String::new();
    f.apply(&f.operator, cluster("b")).await;
    while lines.len() < 3 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(pos) = buf.find('\n') {
            lines.push(serde_json::from_str::<Value>(&buf[..pos]).unwrap());
            buf.drain(..=pos);
        }
    }
    assert_eq!(lines[0]["event"], "created");
    assert_eq!(lines[0]["resource"]["metadata"]["id"], "a");
    assert_eq!(lines[1]["event"], "bootstrapped");
    assert_eq!(lines[2]["event"], "created");
    assert_eq!(lines[2]["resource"]["metadata"]["id"], "b");
}

#[tokio::test]
async fn openapi_and_health_are_served() {
    let f = fixture().await;
    let (s, v) = f.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["openapi"], "3.0.3");
    assert!(v["paths"]["/api/v1/apply"].is_object());
    let (s, _) = f.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = f.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn each_token_is_rate_limited_on_its_own() {
    let state = State::memory();
    let (_, a) = create_token(&state, Role::Reader, "").await.unwrap();
    let (_, b) = create_token(&state, Role::Reader, "").await.unwrap();
    let settings = ApiSettings {
        rate_limit: omni_api::RateLimit {
            per_second: 0.001,
            burst: 3.0,
        },
        ..ApiSettings::default()
    };
    let router = Api::new(state, settings).router();
    let get = |token: String| {
        let router = router.clone();
        async move {
            let req = Request::builder()
                .uri("/api/v1/resources/cluster/default")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            router.oneshot(req).await.unwrap()
        }
    };
    for _ in 0..3 {
        assert_eq!(get(a.clone()).await.status(), StatusCode::OK);
    }
    let refused = get(a.clone()).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // 0.001/s refills one request in 1,000 s: the client is told so.
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap(),
        "1000"
    );
    assert_eq!(
        get(b.clone()).await.status(),
        StatusCode::OK,
        "another token is not slowed down"
    );
}
