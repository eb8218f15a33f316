//! JSON output: each resource as pretty JSON; watch events as
//! `{"event": ..., "resource": ...}`.

use std::io::{self, Write};

use omni_resources::Resource;
use serde_json::json;

use super::{Change, Printer};

pub struct JsonPrinter;

fn pretty(out: &mut dyn Write, value: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    out.write_all(b"\n")
}

impl Printer for JsonPrinter {
    fn list(&mut self, out: &mut dyn Write, items: &[Resource]) -> io::Result<()> {
        items.iter().try_for_each(|r| pretty(out, r))
    }

    fn watch_start(&mut self, out: &mut dyn Write, items: &[Resource]) -> io::Result<()> {
        items
            .iter()
            .try_for_each(|r| pretty(out, &json!({"event": "created", "resource": r})))
    }

    fn watch_event(&mut self, out: &mut dyn Write, change: Change, r: &Resource) -> io::Result<()> {
        pretty(out, &json!({"event": change.as_str(), "resource": r}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_per_resource() {
        let mut r = Resource::new(
            "Clusters.omni.sidero.dev",
            "default",
            "c",
            json!({"talosversion": "1.5.5"}),
        );
        r.metadata.version = 3;
        let mut out = Vec::new();
        JsonPrinter.list(&mut out, &[r.clone(), r]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let one = "{\n  \"metadata\": {\n    \"namespace\": \"default\",\n    \"type\": \"Clusters.omni.sidero.dev\",\n    \"id\": \"c\",\n    \"version\": 3,\n    \"phase\": \"running\"\n  },\n  \"spec\": {\n    \"talosversion\": \"1.5.5\"\n  }\n}\n";
        assert_eq!(text, format!("{one}{one}"));
    }
}
