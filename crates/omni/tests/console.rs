//! The web console against the real server, real etcd and s3s-fs: in
//! headless Chromium (when OMNI_TEST_CHROMEDRIVER is set), and as a
//! scripted cross-site attacker or a reader forcing admin actions.

mod browser;
mod common;
mod ops;

use browser::{chromedriver_bin, Browser, ConsoleHttp};
use common::*;
use omni_testkit::{etcd_bins, EtcdCluster, S3Server};

const CLUSTER: &str = "talos-default";

fn s3_secret(omni: &Omni) -> serde_json::Value {
    let out = omni.ctl_ok(&[
        "get",
        "etcdbackups3config",
        "etcd-backup-s3-conf",
        "-o",
        "json",
    ]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["spec"]["secretaccesskey"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn console_in_a_real_browser() {
    let Some(driver) = chromedriver_bin("console_in_a_real_browser") else {
        return;
    };
    let etcd = EtcdCluster::start(1).await.unwrap();
    etcd.put("/console/key", "value").await.unwrap();
    let s3 = S3Server::start().await.unwrap();
    let omni = Omni::start(&["--etcd-backup-s3", "--etcd-backup-tick", "1s"]).await;
    ops::configure_s3(&omni, &s3).await;
    register_members(&omni, CLUSTER, &etcd);
    create_cluster(&omni, CLUSTER);
    let b = Browser::start(&driver).await;
    let ep = omni.endpoint();

    // Not signed in: the console asks for a token.
    b.goto(&format!("{ep}/")).await;
    assert!(b.text("h1").await.contains("Sign in"));
    b.screenshot("01-sign-in").await;
    b.fill("#token", "omni-000000000000-wrong").await;
    b.click("form.card button[type=submit]").await;
    b.wait_text("#token-error", "the sign-in error", |t| {
        t.contains("invalid or revoked")
    })
    .await;
    b.sign_in(&ep, &omni.token).await;
    // The token is in no URL and in no storage the page's script can read.
    let url = b.client.current_url().await.unwrap().to_string();
    assert!(!url.contains(&omni.token), "{url}");
    let readable = b
        .js("return document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
        .await;
    assert!(!readable.to_string().contains("omni_console"), "{readable}");
    assert!(!readable.to_string().contains(&omni.token));

    // The seed cluster is in the overview with its status.
    let row = format!("#row-{CLUSTER}");
    b.text(&row).await;
    let status = b.text(&format!("{row} td.status")).await;
    assert!(
        ["unknown", "ok", "running", "error"].contains(&status.as_str()),
        "{status}"
    );
    b.screenshot_full("02-fleet-overview", 1280).await;

    // Back up now, on the cluster page: the row turns ok in place, and the
    // new backup appears in the list, without a reload.
    b.click(&format!("{row} th a")).await;
    b.text("#backup-now").await;
    let loaded = b.js("return window.omniConsoleLoadedAt").await;
    assert!(
        loaded.is_number(),
        "the console script did not run: {loaded}"
    );
    b.js("window.seenStatuses = [];
         new MutationObserver(() => {
           const s = document.querySelector('#fleet td.status');
           if (s) window.seenStatuses.push(s.textContent);
         }).observe(document.querySelector('#fleet tbody'), {childList: true, subtree: true});
         return 1")
        .await;
    b.click("#backup-now").await;
    b.wait_text(&format!("{row} td.status"), "the row to turn ok", |t| {
        t == "ok"
    })
    .await;
    let link = b
        .wait_text(
            "#backup-list a.download",
            "the new backup in the list",
            |t| t.starts_with("snapshot"),
        )
        .await;
    assert!(!link.is_empty());
    assert_eq!(
        b.js("return window.omniConsoleLoadedAt").await,
        loaded,
        "the page reloaded"
    );
    let seen = b.js("return window.seenStatuses").await;
    eprintln!("statuses the row went through: {seen}");
    assert!(seen.to_string().contains("ok"), "{seen}");
    b.screenshot_full("03-cluster-after-backup", 1280).await;

    // Download: the file is a snapshot etcdutl accepts.
    let href = b
        .client
        .find(fantoccini::Locator::Css("#backup-list a.download"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let cookie = format!("omni_console={}", b.session_cookie().await);
    let bytes = reqwest::Client::new()
        .get(format!("{ep}{href}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let file = omni.write_file("console-download.db", "");
    std::fs::write(&file, &bytes).unwrap();
    let status = std::process::Command::new(etcd_bins().unwrap().etcdutl)
        .args(["snapshot", "status", path_str(&file), "-w", "json"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).contains("totalKey"), "{}", stdout(&status));

    // An interval below the server's minimum: the API's message, inline.
    b.fill("#interval", "30m").await;
    b.click("#settings button[type=submit]").await;
    b.wait_text("#interval-error", "the interval error", |t| {
        t.contains("backup interval must be greater than 1h0m0s, actual 30m0s")
    })
    .await;
    b.screenshot_full("04-cluster-settings-error", 1280).await;
    let cluster = omni.ctl_ok(&["get", "cluster", CLUSTER, "-o", "json"]);
    assert!(!cluster.contains("backupconfiguration"), "{cluster}");

    // A wrong S3 secret: the store's error inline, the stored config kept.
    let before = s3_secret(&omni);
    b.goto(&format!("{ep}/ui/store")).await;
    let page = b.client.source().await.unwrap();
    assert!(
        !page.contains(s3.secret_key()),
        "a secret was sent to the page"
    );
    b.fill("#secretaccesskey", "wrong-secret").await;
    b.click("#s3 button[type=submit]").await;
    b.wait_text("#store-error", "the store error", |t| {
        t.contains("incorrect settings for s3 client")
    })
    .await;
    assert!(!b.client.source().await.unwrap().contains("wrong-secret"));
    b.screenshot_full("05-store-wrong-secret", 1280).await;
    assert_eq!(s3_secret(&omni), before);

    // Phone width.
    b.client.set_window_size(390, 844).await.unwrap();
    b.goto(&format!("{ep}/")).await;
    b.text(&row).await;
    b.screenshot("06-fleet-phone").await;
    b.client.set_window_size(1280, 900).await.unwrap();
    b.goto(&format!("{ep}/ui/tokens")).await;
    b.text("#tokens").await;
    b.screenshot("07-tokens").await;

    // The overview after the backups: the size column shows the newest one's.
    b.goto(&format!("{ep}/")).await;
    let size = b
        .wait_text(
            &format!("{row} td:nth-of-type(6)"),
            "the newest backup's size",
            |t| t.ends_with('B'),
        )
        .await;
    eprintln!("size column: {size}");
    b.screenshot_full("08-fleet-after-backup", 1280).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reader_sees_no_admin_controls_in_a_browser() {
    let Some(driver) = chromedriver_bin("reader_sees_no_admin_controls_in_a_browser") else {
        return;
    };
    let omni = Omni::start(&[]).await;
    create_cluster(&omni, CLUSTER);
    let reader = omni
        .ctl_ok(&["token", "create", "--role", "reader"])
        .trim()
        .to_string();
    let b = Browser::start(&driver).await;
    let ep = omni.endpoint();
    b.sign_in(&ep, &reader).await;
    assert!(!b.exists("a[href='/ui/tokens']").await);
    b.goto(&format!("{ep}/ui/clusters/{CLUSTER}")).await;
    b.text("#settings-view").await;
    for css in [
        "#backup-now",
        "#settings",
        "#drill-form",
        "form[action$='/key']",
    ] {
        assert!(!b.exists(css).await, "a reader sees {css}");
    }
    b.screenshot_full("08-cluster-as-reader", 1280).await;
    b.goto(&format!("{ep}/ui/store")).await;
    b.text("#store-state").await;
    assert!(!b.exists("#s3").await);
}

/// Forced admin actions by a reader, and cross-site requests, are refused
/// by the server and change nothing. No browser needed.
#[tokio::test(flavor = "multi_thread")]
async fn console_refuses_forced_and_cross_site_actions() {
    let omni = Omni::start(&[]).await;
    create_cluster(&omni, CLUSTER);
    let ep = omni.endpoint();
    let reader_token = omni
        .ctl_ok(&["token", "create", "--role", "reader"])
        .trim()
        .to_string();
    let manual = || {
        omni.ctl(&["get", "etcdmanualbackup", CLUSTER])
            .status
            .success()
    };
    let tokens = || omni.ctl_ok(&["token", "list"]);

    // A reader forcing admin and operator actions with a valid session.
    let reader = ConsoleHttp::sign_in(&ep, &reader_token).await;
    let csrf = reader.csrf().await;
    let (status, _) = reader.get("/ui/tokens").await;
    assert_eq!(status, 403);
    let tokens_before = tokens();
    let forced: [(&str, Vec<(&str, &str)>); 5] = [
        (
            "/ui/clusters/talos-default/settings",
            vec![("interval", "2h")],
        ),
        ("/ui/clusters/talos-default/backup", vec![]),
        ("/ui/clusters/talos-default/key", vec![]),
        (
            "/ui/store",
            vec![("bucket", "b"), ("endpoint", "http://127.0.0.1:1")],
        ),
        ("/ui/tokens", vec![("role", "admin")]),
    ];
    for (path, fields) in &forced {
        let mut form = fields.clone();
        form.push(("csrf", &csrf));
        let (status, body) = reader.post(path, Some(&ep), &form).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("requires the"), "{path}: {body}");
    }
    let cluster = omni.ctl_ok(&["get", "cluster", CLUSTER, "-o", "json"]);
    assert!(!cluster.contains("backupconfiguration"), "{cluster}");
    assert!(!manual());
    assert_eq!(tokens(), tokens_before);

    // An admin session, but requests without this session's CSRF token or
    // from another origin: refused, nothing requested.
    let admin = ConsoleHttp::sign_in(&ep, &omni.token).await;
    let csrf = admin.csrf().await;
    let path = "/ui/clusters/talos-default/backup";
    for (origin, token) in [
        (Some(ep.as_str()), ""),
        (Some(ep.as_str()), csrf.replace(&csrf[..1], "x").as_str()),
        (Some("http://evil.example"), csrf.as_str()),
        (None, csrf.as_str()),
    ] {
        let (status, body) = admin.post(path, origin, &[("csrf", token)]).await;
        assert_eq!(status, 403, "origin {origin:?}: {body}");
        assert!(!manual(), "a refused request asked for a backup");
    }
    // Sign-in from another site is refused too.
    let (status, _) = reqwest::Client::new()
        .post(format!("{ep}/ui/login"))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", omni.token))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 403);
    // The same request from the console's page works.
    let (status, body) = admin.post(path, Some(&ep), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303, "{body}");
    assert!(manual());

    // The session cookie is HttpOnly and SameSite=Strict; a page without
    // a session goes to sign-in.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{ep}/ui/login"))
        .header("origin", ep.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", omni.token))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let anonymous = ConsoleHttp {
        http: admin.http.clone(),
        endpoint: ep.clone(),
        cookie: String::new(),
    };
    let (status, _) = anonymous.get("/").await;
    assert_eq!(status, 303);
    // Signing out ends the session on the server.
    let (status, _) = admin
        .post("/ui/logout", Some(&ep), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303);
    let (status, _) = admin.get("/").await;
    assert_eq!(status, 303);
}

/// A page left open keeps an event stream; SIGTERM must still stop the
/// server (a graceful shutdown waits for open connections).
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_open_live_streams() {
    let mut omni = Omni::start(&[]).await;
    let ep = omni.endpoint();
    let admin = ConsoleHttp::sign_in(&ep, &omni.token).await;
    let stream = admin
        .http
        .get(format!("{ep}/ui/events"))
        .header("cookie", &admin.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let stopped = tokio::task::spawn_blocking(move || omni.stop());
    let status = tokio::time::timeout(WAIT, stopped)
        .await
        .expect("omni did not stop while a console page was open")
        .unwrap();
    assert!(status.success(), "{status:?}");
    drop(stream);
}
