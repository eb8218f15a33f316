//! Page layout and the fleet overview (HTML by maud: escaped by default).

use maud::{html, Markup, DOCTYPE};
use omni_api::auth::Role;

use crate::model::{human_bytes, human_duration, status_word, utc, Health, Row};

/// What every signed-in page needs to know about its user.
pub struct Viewer<'a> {
    pub role: Role,
    pub csrf: &'a str,
}

impl Viewer<'_> {
    pub fn can(&self, role: Role) -> bool {
        self.role >= role
    }
}

pub const ASSET_JS: &str = "/ui/assets/console.js";
pub const ASSET_CSS: &str = "/ui/assets/console.css";

pub fn layout(title: &str, viewer: Option<&Viewer>, active: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · omni" }
                link rel="stylesheet" href=(ASSET_CSS);
                script src=(ASSET_JS) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "omni · etcd backups" }
                    @if let Some(v) = viewer {
                        nav aria-label="Main" {
                            a href="/" aria-current=[(active == "fleet").then_some("page")] { "Fleet" }
                            a href="/ui/store" aria-current=[(active == "store").then_some("page")] { "Store" }
                            @if v.can(Role::Admin) {
                                a href="/ui/tokens" aria-current=[(active == "tokens").then_some("page")] { "Tokens" }
                            }
                        }
                        span.role { "signed in as " strong { (v.role.as_str()) } }
                        form.inline method="post" action="/ui/logout" {
                            (csrf_field(v))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

pub fn csrf_field(v: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.csrf); }
}

pub fn login(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        "",
        html! {
            h1 { "Sign in" }
            p { "Paste an API token (the first admin token is in " code { "omni-data/admin-token" } "). It stays on the server; the browser only gets a session cookie." }
            form.card method="post" action="/ui/login" {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required
                    aria-describedby=[error.map(|_| "token-error")];
                @if let Some(e) = error {
                    p.error #token-error role="alert" { (e) }
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// The state column: a coloured badge that also says it in words.
pub fn health_badge(h: Health) -> Markup {
    html! { span class={"badge " (h.as_str())} { (h.as_str()) } }
}

fn age_cell(ts: i64, now: i64) -> Markup {
    html! {
        @if ts == 0 {
            "never"
        } @else {
            span title=(utc(ts)) data-ago=(ts) { (human_duration(now - ts)) " ago" }
        }
    }
}

fn due_cell(due: Option<i64>, now: i64) -> Markup {
    html! {
        @match due {
            None => span.muted { "manual only" },
            Some(d) if d <= now => strong { "now" },
            Some(d) => span title=(utc(d)) { "in " (human_duration(d - now)) },
        }
    }
}

/// One table row; the live updates send the same markup.
pub fn row(r: &Row, now: i64) -> Markup {
    html! {
        tr id={"row-" (r.cluster)} data-cluster=(r.cluster) data-health=(r.health.as_str()) {
            th scope="row" { a href={"/ui/clusters/" (r.cluster)} { (r.cluster) } }
            td { (health_badge(r.health)) }
            td.status data-status=(status_word(r.status)) { (status_word(r.status)) }
            td { (age_cell(r.last_backup, now)) }
            td { @if let Some(i) = r.interval { (human_duration(i)) } @else { span.muted { "off" } } }
            td { (due_cell(r.next_due, now)) }
            td { @if let Some(s) = r.size { (human_bytes(s)) } @else { span.muted { "—" } } }
            td { @match r.drill { None => span.muted { "—" }, Some(d) => (status_word(d)) } }
            td.problem { (r.problem) }
        }
    }
}

pub fn rows_table(rows: &[Row], now: i64, caption: &str) -> Markup {
    html! {
        div.scroll {
            table #fleet {
                caption.sr { (caption) }
                thead { tr {
                    th scope="col" { "Cluster" } th scope="col" { "State" } th scope="col" { "Status" }
                    th scope="col" { "Last backup" } th scope="col" { "Interval" } th scope="col" { "Next due" }
                    th scope="col" { "Size" } th scope="col" { "Drill" } th scope="col" { "Problem" }
                } }
                tbody { @for r in rows { (row(r, now)) } }
            }
        }
    }
}

/// Search, filter and sort of the overview, from the query string.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct FleetQuery {
    pub q: String,
    pub state: String,
    pub sort: String,
}

pub const SORTS: [(&str, &str); 5] = [
    ("state", "worst first"),
    ("name", "name"),
    ("age", "oldest backup first"),
    ("next", "next due first"),
    ("size", "largest first"),
];

impl FleetQuery {
    pub fn apply(&self, rows: &mut Vec<Row>) {
        let q = self.q.trim().to_lowercase();
        let wanted = Health::parse(&self.state);
        rows.retain(|r| {
            (q.is_empty() || r.cluster.to_lowercase().contains(&q))
                && wanted.is_none_or(|h| r.health == h)
        });
        match self.sort.as_str() {
            "name" => {}
            "age" => rows.sort_by_key(|r| r.last_backup),
            "next" => rows.sort_by_key(|r| r.next_due.unwrap_or(i64::MAX)),
            "size" => rows.sort_by_key(|r| std::cmp::Reverse(r.size.unwrap_or(0))),
            _ => rows.sort_by_key(|r| r.health),
        }
    }
}

pub struct StoreLine {
    pub name: String,
    pub error: String,
}

pub fn overview(
    v: &Viewer,
    all: &[Row],
    shown: &[Row],
    query: &FleetQuery,
    store: &StoreLine,
    now: i64,
) -> Markup {
    let count = |h| all.iter().filter(|r| r.health == h).count();
    let body = html! {
        h1 { "Fleet" }
        p.summary #summary {
            strong { (all.len()) (if all.len() == 1 { " cluster" } else { " clusters" }) } ": "
            span.badge.red { (count(Health::Red)) " red" } " "
            span.badge.amber { (count(Health::Amber)) " amber" } " "
            span.badge.green { (count(Health::Green)) " green" }
            " · store " strong { (store.name) }
            @if !store.error.is_empty() { " · " span.error { "store error: " (store.error) } }
        }
        form.filters #filters method="get" action="/" role="search" {
            label { "Search " input #q type="search" name="q" value=(query.q) placeholder="cluster name"; }
            label { "State "
                select #state name="state" {
                    option value="" selected[query.state.is_empty()] { "all" }
                    @for h in ["red", "amber", "green"] {
                        option value=(h) selected[query.state == h] { (h) }
                    }
                }
            }
            label { "Sort "
                select #sort name="sort" {
                    @for (k, label) in SORTS {
                        option value=(k) selected[query.sort == k] { (label) }
                    }
                }
            }
            button type="submit" { "Apply" }
        }
        p.muted #shown aria-live="polite" { "showing " (shown.len()) " of " (all.len()) }
        (rows_table(shown, now, "Backup state of every cluster"))
        @if v.can(Role::Operator) {
            p.muted { "Open a cluster to back it up now or download a backup." }
        }
    };
    layout("Fleet", Some(v), "fleet", body)
}

/// Text for an error page: a refused or failed action, said plainly.
pub fn message(v: Option<&Viewer>, title: &str, text: &str) -> Markup {
    layout(
        title,
        v,
        "",
        html! {
            h1 { (title) }
            p.error role="alert" { (text) }
            p { a href="/" { "Back to the fleet" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, health: Health, last: i64, size: u64) -> Row {
        Row {
            cluster: name.into(),
            health,
            status: 1,
            last_backup: last,
            interval: None,
            next_due: None,
            size: Some(size),
            drill: None,
            problem: String::new(),
        }
    }

    #[test]
    fn search_filter_and_sort() {
        let all = vec![
            row("prod-a", Health::Green, 30, 5),
            row("prod-b", Health::Red, 10, 1),
            row("dev", Health::Red, 20, 9),
        ];
        let names = |q: FleetQuery| {
            let mut rows = all.clone();
            q.apply(&mut rows);
            rows.into_iter().map(|r| r.cluster).collect::<Vec<_>>()
        };
        let q = |q: &str, state: &str, sort: &str| FleetQuery {
            q: q.into(),
            state: state.into(),
            sort: sort.into(),
        };
        assert_eq!(names(q("PROD", "", "name")), ["prod-a", "prod-b"]);
        assert_eq!(names(q("", "red", "age")), ["prod-b", "dev"]);
        assert_eq!(names(q("", "", "size")), ["dev", "prod-a", "prod-b"]);
        assert_eq!(names(q("", "", "")), ["prod-b", "dev", "prod-a"]);
    }

    #[test]
    fn markup_is_escaped() {
        let mut r = row("a", Health::Red, 0, 0);
        r.problem = "<script>alert(1)</script>".into();
        let html = super::row(&r, 100).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
    }
}
