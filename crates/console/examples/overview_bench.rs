//! Times the fleet overview with 1,000 clusters: the server-side render
//! (request to last byte, through the real router) and the page's weight;
//! with OMNI_TEST_CHROMEDRIVER set, also the load in headless Chromium
//! (Navigation Timing). Prints figures; asserts nothing about speed.
//!
//! `cargo run --release -p omni-console --example overview_bench [CLUSTERS]`

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request};
use http_body_util::BodyExt;
use omni_api::auth::{create_token, Role};
use omni_api::{Api, ApiSettings};
use omni_resources::duration::ProtoDuration;
use omni_resources::specs::backup::EtcdBackupStatusSpec;
use omni_resources::specs::backup_drill::EtcdBackupDrillStatusSpec;
use omni_resources::specs::cluster::{BackupConfiguration, ClusterSpec, RestoreDrill};
use omni_resources::specs::Kind;
use omni_resources::{Resource, Timestamp, NS_DEFAULT, NS_EPHEMERAL};
use omni_state::State;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:8099";

async fn fill(state: &State, fleet: &omni_console::Fleet, n: usize) {
    let now = Timestamp::now().seconds;
    for i in 0..n {
        let id = format!("cluster-{i:04}");
        let interval = [3600u64, 6 * 3600, 24 * 3600][i % 3];
        let spec = ClusterSpec {
            kubernetesversion: "1.28.2".into(),
            talosversion: "1.5.5".into(),
            backupconfiguration: Some(BackupConfiguration {
                interval: Some(ProtoDuration::from_std(Duration::from_secs(interval))),
                keeplast: 7,
                restoredrill: if i % 4 == 0 {
                    RestoreDrill::AfterEachBackup
                } else {
                    RestoreDrill::Off
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        state
            .create(Resource::from_spec(
                ClusterSpec::TYPE,
                NS_DEFAULT,
                &id,
                &spec,
            ))
            .await
            .unwrap();
        // A mix: most fine, some overdue, some failing, a few never backed up.
        let (code, ago, error) = match i % 10 {
            0 => (
                2,
                7200,
                "etcd member 10.0.0.1:2379 unreachable: connection refused",
            ),
            1 => (1, 3 * interval as i64, ""),
            2 => (3, 600, ""),
            9 if i % 20 == 9 => (0, now, ""),
            _ => (1, (i as i64 * 37) % interval as i64, ""),
        };
        let status = EtcdBackupStatusSpec {
            status: code,
            error: error.into(),
            lastbackuptime: Timestamp::from_unix(if ago == now { 0 } else { now - ago }),
            lastbackupattempt: Timestamp::from_unix(now - ago.min(now) + 5),
            ..Default::default()
        };
        let mut r = Resource::from_spec(EtcdBackupStatusSpec::TYPE, NS_EPHEMERAL, &id, &status);
        r.metadata.owner = "EtcdBackupController".into();
        state.create(r).await.unwrap();
        if i % 4 == 0 {
            let drill = EtcdBackupDrillStatusSpec {
                status: if i % 40 == 0 { 2 } else { 1 },
                error: if i % 40 == 0 {
                    "restored etcd did not become healthy".into()
                } else {
                    String::new()
                },
                finishedat: Timestamp::from_unix(now - 300),
                ..Default::default()
            };
            let mut r =
                Resource::from_spec(EtcdBackupDrillStatusSpec::TYPE, NS_EPHEMERAL, &id, &drill);
            r.metadata.owner = "EtcdBackupDrillController".into();
            state.create(r).await.unwrap();
        }
        fleet.set_size(&id, 20_000_000 + (i as u64 * 7919) % 5_000_000);
    }
}

async fn get(app: &axum::Router, cookie: &str, path: &str) -> (Duration, usize) {
    let req = Request::get(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let t = Instant::now();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (t.elapsed(), body.len())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "min {:.1} ms, median {:.1} ms, max {:.1} ms ({} runs)",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let state = State::memory();
    let api = Api::new(state.clone(), ApiSettings::default());
    let app = api.clone().router();
    let console = omni_console::Console::new(api, None, app.clone());
    let t = Instant::now();
    fill(&state, console.fleet(), n).await;
    println!(
        "filled the state with {n} clusters in {:.0} ms",
        ms(t.elapsed())
    );
    let app = app.merge(console.routes());
    let (_, token) = create_token(&state, Role::Admin, "bench").await.unwrap();

    let login = Request::post("/ui/login")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, format!("http://{HOST}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={token}")))
        .unwrap();
    let resp = app.clone().oneshot(login).await.unwrap();
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    for (label, path) in [
        ("overview", "/"),
        ("overview, red only", "/?state=red&sort=age"),
        ("cluster page", "/ui/clusters/cluster-0001"),
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..20 {
            let (d, b) = get(&app, &cookie, path).await;
            times.push(d);
            bytes = b;
        }
        println!(
            "{label} ({path}): {bytes} bytes; server render {}",
            summary(times)
        );
    }
    let js = include_str!("../assets/console.js").len();
    let css = include_str!("../assets/console.css").len();
    println!("assets: console.js {js} bytes, console.css {css} bytes");

    if let Ok(driver) = std::env::var("OMNI_TEST_CHROMEDRIVER") {
        browser(app, &driver, &token).await;
    } else {
        println!("browser timing skipped: OMNI_TEST_CHROMEDRIVER is not set");
    }
}

async fn browser(app: axum::Router, driver: &str, token: &str) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let profile = std::env::temp_dir().join(format!("omni-bench-chrome-{}", std::process::id()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900",
            format!("--user-data-dir={}", profile.display())]}),
    );
    let c =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
    let base = format!("http://{addr}");
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    let field = c.find(fantoccini::Locator::Css("#token")).await.unwrap();
    field.send_keys(token).await.unwrap();
    c.find(fantoccini::Locator::Css("form.card button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(fantoccini::Locator::Css("#fleet"))
        .await
        .unwrap();
    let mut loads = Vec::new();
    let mut dcl = Vec::new();
    for _ in 0..5 {
        c.goto(&format!("{base}/")).await.unwrap();
        c.wait()
            .for_element(fantoccini::Locator::Css("#row-cluster-0999, #fleet"))
            .await
            .unwrap();
        let v = c
            .execute(
                "const n = performance.getEntriesByType('navigation')[0];
                 return [n.domContentLoadedEventEnd - n.startTime, n.loadEventEnd - n.startTime,
                         n.transferSize, document.querySelectorAll('#fleet tbody tr').length];",
                vec![],
            )
            .await
            .unwrap();
        dcl.push(Duration::from_secs_f64(
            v[0].as_f64().unwrap_or(0.0) / 1000.0,
        ));
        loads.push(Duration::from_secs_f64(
            v[1].as_f64().unwrap_or(0.0) / 1000.0,
        ));
        if loads.len() == 1 {
            println!(
                "browser: {} rows rendered, {} bytes transferred",
                v[3], v[2]
            );
        }
    }
    println!("browser DOMContentLoaded: {}", summary(dcl));
    println!("browser load event: {}", summary(loads));
    let _ = c.close().await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(profile);
}
