//! Headless Chromium driven over WebDriver (chromedriver + fantoccini), and
//! a plain HTTP client that signs in to the console like a browser would.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::common::WAIT;

/// Where the tests leave their screenshots.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver from `OMNI_TEST_CHROMEDRIVER` (scripts/setup-test-deps.sh
/// prints it); `None`, said out loud, when unset.
pub fn chromedriver_bin(test: &str) -> Option<String> {
    match std::env::var("OMNI_TEST_CHROMEDRIVER") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            eprintln!(
                "SKIPPED {test}: OMNI_TEST_CHROMEDRIVER is not set \
                 (run scripts/test.sh, or eval \"$(scripts/setup-test-deps.sh)\")"
            );
            None
        }
    }
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium at 1280×900.
    pub async fn start(driver_bin: &str) -> Browser {
        let port = omni_testkit::free_port().unwrap();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        let http = reqwest::Client::new();
        omni_testkit::wait_until(WAIT, || {
            let http = http.clone();
            let status = status.clone();
            async move {
                http.get(&status)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await
        .expect("chromedriver did not come up");
        let profile = tempfile::tempdir().unwrap();
        let mut opts = json!({
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        if let Ok(bin) = std::env::var("OMNI_TEST_CHROMIUM") {
            opts["binary"] = json!(bin);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), opts);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("starting headless chromium");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Waits for an element matching `css` and returns its text.
    pub async fn text(&self, css: &str) -> String {
        let el = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"));
        el.text().await.unwrap()
    }

    /// Waits until the text of `css` satisfies `pred`; returns it.
    pub async fn wait_text(&self, css: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if let Ok(t) = el.text().await {
                    if pred(&t) {
                        return t;
                    }
                }
            }
            if std::time::Instant::now() > deadline {
                let page = self.client.source().await.unwrap_or_default();
                panic!("timed out waiting for {what} ({css}); page:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let el = self.client.find(Locator::Css(css)).await.unwrap();
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Writes a PNG of the viewport to `target/console-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// A full-page screenshot: the window grows to the page's height first.
    pub async fn screenshot_full(&self, name: &str, width: u32) -> PathBuf {
        let h = self
            .js("return document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 4000) as u32;
        self.client.set_window_size(width, h + 140).await.unwrap();
        let p = self.screenshot(name).await;
        self.client.set_window_size(1280, 900).await.unwrap();
        p
    }

    /// Signs in on the console's page with `token`.
    pub async fn sign_in(&self, endpoint: &str, token: &str) {
        self.goto(&format!("{endpoint}/")).await;
        self.text("#token").await;
        self.fill("#token", token).await;
        self.click("form.card button[type=submit]").await;
        self.text("#fleet").await;
    }

    /// The session cookie the console set.
    pub async fn session_cookie(&self) -> String {
        self.client
            .get_named_cookie("omni_console")
            .await
            .unwrap()
            .value()
            .to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The console as a scripted client sees it: no redirects followed,
/// cookies by hand.
pub struct ConsoleHttp {
    pub http: reqwest::Client,
    pub endpoint: String,
    pub cookie: String,
}

impl ConsoleHttp {
    pub fn origin(&self) -> String {
        self.endpoint.clone()
    }

    /// Signs in with `token`; panics unless the console sets a session.
    pub async fn sign_in(endpoint: &str, token: &str) -> ConsoleHttp {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = http
            .post(format!("{endpoint}/ui/login"))
            .header("origin", endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "sign-in failed");
        let cookie = resp
            .headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        ConsoleHttp {
            http,
            endpoint: endpoint.to_string(),
            cookie,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.endpoint))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The CSRF token of the session, read from a page's hidden field.
    pub async fn csrf(&self) -> String {
        let (_, page) = self.get("/").await;
        let at = page.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
        page[at..at + 64].to_string()
    }

    /// POSTs a form with `origin` (None: no Origin header at all).
    pub async fn post(
        &self,
        path: &str,
        origin: Option<&str>,
        form: &[(&str, &str)],
    ) -> (u16, String) {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = self
            .http
            .post(format!("{}{path}", self.endpoint))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
