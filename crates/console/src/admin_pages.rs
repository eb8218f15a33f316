//! The store page and the token page.

use maud::{html, Markup};
use omni_api::auth::Role;
use omni_resources::specs::backup::EtcdBackupS3ConfigSpec;

use crate::cluster_page::FormErrors;
use crate::pages::{csrf_field, layout, Viewer};

/// The S3 form as sent. Secrets left empty keep the stored ones: they are
/// never sent to the page, so the page cannot send them back.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct StoreForm {
    pub bucket: String,
    pub region: String,
    pub endpoint: String,
    pub accesskeyid: String,
    pub secretaccesskey: String,
    pub sessiontoken: String,
}

impl StoreForm {
    pub fn from_spec(s: &EtcdBackupS3ConfigSpec) -> StoreForm {
        StoreForm {
            bucket: s.bucket.clone(),
            region: s.region.clone(),
            endpoint: s.endpoint.clone(),
            accesskeyid: s.accesskeyid.clone(),
            ..StoreForm::default()
        }
    }

    /// The spec to apply: the form, with the stored secrets where the form
    /// left them empty.
    pub fn into_spec(self, stored: Option<&EtcdBackupS3ConfigSpec>) -> EtcdBackupS3ConfigSpec {
        let keep = |new: String, old: Option<&String>| {
            if new.is_empty() {
                old.cloned().unwrap_or_default()
            } else {
                new
            }
        };
        EtcdBackupS3ConfigSpec {
            secretaccesskey: keep(self.secretaccesskey, stored.map(|s| &s.secretaccesskey)),
            sessiontoken: keep(self.sessiontoken, stored.map(|s| &s.sessiontoken)),
            bucket: self.bucket.trim().to_string(),
            region: self.region.trim().to_string(),
            endpoint: self.endpoint.trim().to_string(),
            accesskeyid: self.accesskeyid.trim().to_string(),
        }
    }
}

pub struct StoreView {
    pub name: String,
    pub error: String,
    pub has_secret: bool,
    pub form: StoreForm,
    pub errors: FormErrors,
    pub notice: Option<String>,
}

const S3_FIELDS: [(&str, &str, &str); 4] = [
    ("bucket", "Bucket", "text"),
    ("region", "Region", "text"),
    (
        "endpoint",
        "Endpoint (http:// or https:// URL; empty for AWS)",
        "url",
    ),
    ("accesskeyid", "Access key ID", "text"),
];

fn value<'a>(f: &'a StoreForm, name: &str) -> &'a str {
    match name {
        "bucket" => &f.bucket,
        "region" => &f.region,
        "endpoint" => &f.endpoint,
        _ => &f.accesskeyid,
    }
}

pub fn store(v: &Viewer, s: &StoreView) -> Markup {
    let err = |f: &str| s.errors.fields.get(&format!("spec.{f}"));
    let body = html! {
        h1 { "Backup store" }
        p #store-state {
            "The server stores backups in " strong { (s.name) } "."
            @if !s.error.is_empty() { " " span.error { "Store error: " (s.error) } }
        }
        @if let Some(n) = &s.notice { p.notice role="status" { (n) } }
        @if let Some(e) = &s.errors.general { p.error #store-error role="alert" { (e) } }
        h2 { "S3 configuration" }
        @if v.can(Role::Admin) {
            form.card #s3 method="post" action="/ui/store" novalidate {
                (csrf_field(v))
                @for (name, label, kind) in S3_FIELDS {
                    (input(name, label, kind, value(&s.form, name), err(name)))
                }
                (input("secretaccesskey",
                    if s.has_secret { "Secret access key (stored; leave empty to keep it)" } else { "Secret access key" },
                    "password", "", err("secretaccesskey")))
                (input("sessiontoken", "Session token (optional; leave empty to keep the stored one)",
                    "password", "", err("sessiontoken")))
                p.muted { "The server lists the bucket before it stores a new configuration; a failing one changes nothing. Secrets are write-only." }
                button type="submit" { "Save and test" }
            }
        } @else {
            dl.card {
                @for (name, label, _) in S3_FIELDS {
                    dt { (label) } dd { (value(&s.form, name)) }
                }
            }
            p.muted { "Only admins change the store configuration." }
        }
    };
    layout("Store", Some(v), "store", body)
}

fn input(name: &str, label: &str, kind: &str, value: &str, error: Option<&String>) -> Markup {
    let err_id = format!("{name}-error");
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) name=(name) type=(kind) value=(value)
                autocomplete=[(kind == "password").then_some("new-password")]
                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| err_id.as_str())];
            @if let Some(e) = error { p.error id=(err_id) role="alert" { (e) } }
        }
    }
}

pub struct TokenRow {
    pub id: String,
    pub role: String,
    pub description: String,
}

/// The token list; `created` shows a new token once, right after it was
/// made (in the page body, never in a URL).
pub fn tokens(
    v: &Viewer,
    list: &[TokenRow],
    created: Option<(&str, &str)>,
    error: Option<&str>,
    own: &str,
) -> Markup {
    let body = html! {
        h1 { "API tokens" }
        @if let Some((id, token)) = created {
            div.notice role="status" {
                p { "Token " code { (id) } " created. Copy it now: it is not shown again." }
                label for="new-token" { "New token" }
                input #new-token type="text" readonly value=(token);
            }
        }
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form.card #new-token-form method="post" action="/ui/tokens" {
            (csrf_field(v))
            div.field {
                label for="role" { "Role" }
                select #role name="role" {
                    option value="reader" { "reader: sees" }
                    option value="operator" { "operator: requests backups and drills, downloads" }
                    option value="admin" { "admin: everything" }
                }
            }
            div.field {
                label for="description" { "Description" }
                input #description type="text" name="description" maxlength="256";
            }
            button type="submit" { "Create token" }
        }
        div.scroll { table #tokens {
            caption.sr { "API tokens" }
            thead { tr { th scope="col" { "ID" } th scope="col" { "Role" } th scope="col" { "Description" } th scope="col" { "Revoke" } } }
            tbody { @for t in list { tr {
                th scope="row" { code { (t.id) } }
                td { (t.role) } td { (t.description) }
                td { @if t.id == own { span.muted { "this session" } } @else {
                    form.inline method="post" action={"/ui/tokens/" (t.id) "/revoke"} {
                        (csrf_field(v))
                        button type="submit" { "Revoke" span.sr { " token " (t.id) } }
                    }
                } }
            } } }
        } }
    };
    layout("Tokens", Some(v), "tokens", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_secrets_keep_the_stored_ones_and_are_never_shown() {
        let stored = EtcdBackupS3ConfigSpec {
            bucket: "b".into(),
            accesskeyid: "id".into(),
            secretaccesskey: "s3cr3t".into(),
            sessiontoken: "tok".into(),
            ..Default::default()
        };
        let shown = StoreForm::from_spec(&stored);
        assert!(shown.secretaccesskey.is_empty() && shown.sessiontoken.is_empty());
        let kept = shown.clone().into_spec(Some(&stored));
        assert_eq!(kept, stored);
        let changed = StoreForm {
            secretaccesskey: "new".into(),
            ..shown
        }
        .into_spec(Some(&stored));
        assert_eq!(changed.secretaccesskey, "new");
        assert_eq!(changed.sessiontoken, "tok");
    }
}
