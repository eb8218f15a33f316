//! Aligned tables, kubectl/tabwriter style: every column but the last is
//! padded to its widest cell plus three spaces; trailing spaces are trimmed.

use std::io::{self, Write};

use omni_resources::{Resource, TypeInfo};

use super::{Change, Printer};

/// Spaces between columns.
const GAP: usize = 3;

/// Column widths, growing as rows are seen.
#[derive(Debug, Default, Clone)]
pub struct Widths(Vec<usize>);

impl Widths {
    pub fn fit(&mut self, row: &[String]) {
        if self.0.len() < row.len() {
            self.0.resize(row.len(), 0);
        }
        for (w, cell) in self.0.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    /// One line, ending in a newline, trailing spaces trimmed.
    pub fn line(&self, row: &[String]) -> String {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let width = self.0.get(i).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count()) + GAP;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let mut line = line.trim_end().to_string();
        line.push('\n');
        line
    }
}

/// Renders rows (the first is the header) as an aligned table.
pub fn render(rows: &[Vec<String>]) -> String {
    let mut widths = Widths::default();
    rows.iter().for_each(|r| widths.fit(r));
    rows.iter().map(|r| widths.line(r)).collect()
}

/// Keeps a cell on one line.
fn clean(cell: String) -> String {
    if cell.chars().any(char::is_control) {
        cell.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    } else {
        cell
    }
}

/// Prints resources of one type as a table.
pub struct TablePrinter {
    info: &'static TypeInfo,
    /// Watch mode: widths so far (rows are printed as they come).
    watch: Widths,
}

impl TablePrinter {
    pub fn new(info: &'static TypeInfo) -> Self {
        TablePrinter {
            info,
            watch: Widths::default(),
        }
    }

    pub fn header(&self) -> Vec<String> {
        let fixed = ["NAMESPACE", "TYPE", "ID", "VERSION"]
            .into_iter()
            .map(String::from);
        fixed
            .chain(self.info.columns.iter().map(|c| c.header.to_string()))
            .collect()
    }

    pub fn row(&self, r: &Resource) -> Vec<String> {
        let version = match r.metadata.version {
            0 => "undefined".to_string(),
            v => v.to_string(),
        };
        let fixed = [
            r.metadata.namespace.clone(),
            self.info.short_name(),
            r.metadata.id.clone(),
            version,
        ];
        fixed
            .into_iter()
            .chain(self.info.columns.iter().map(|c| c.render(&r.spec)))
            .map(clean)
            .collect()
    }

    fn marked(marker: &str, row: Vec<String>) -> Vec<String> {
        std::iter::once(marker.to_string()).chain(row).collect()
    }
}

impl Printer for TablePrinter {
    fn list(&mut self, out: &mut dyn Write, items: &[Resource]) -> io::Result<()> {
        let rows: Vec<Vec<String>> = std::iter::once(self.header())
            .chain(items.iter().map(|r| self.row(r)))
            .collect();
        out.write_all(render(&rows).as_bytes())
    }

    /// Watch tables get a leading marker column: blank for items that
    /// existed, `+` created, `*` updated, `-` destroyed.
    fn watch_start(&mut self, out: &mut dyn Write, items: &[Resource]) -> io::Result<()> {
        // The marker column is one character wide from the start.
        self.watch.fit(&["+".to_string()]);
        let mut rows = vec![Self::marked("", self.header())];
        rows.extend(items.iter().map(|r| Self::marked("", self.row(r))));
        rows.iter().for_each(|r| self.watch.fit(r));
        for r in &rows {
            out.write_all(self.watch.line(r).as_bytes())?;
        }
        Ok(())
    }

    fn watch_event(&mut self, out: &mut dyn Write, change: Change, r: &Resource) -> io::Result<()> {
        let marker = match change {
            Change::Created => "+",
            Change::Updated => "*",
            Change::Destroyed => "-",
        };
        let row = Self::marked(marker, self.row(r));
        self.watch.fit(&row);
        out.write_all(self.watch.line(&row).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_resources::kinds::lookup;
    use serde_json::json;

    fn print(kind: &str, items: &[Resource]) -> String {
        let mut out = Vec::new();
        TablePrinter::new(lookup(kind).unwrap())
            .list(&mut out, items)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn overall_status_matches_the_seed() {
        let mut r = Resource::new(
            "EtcdBackupOverallStatuses.omni.sidero.dev",
            "ephemeral",
            "etcdbackup-overall-status",
            json!({
                "configurationname": "s3",
                "configurationerror": "not initialized",
                "lastbackupstatus": {"status": 0, "error": "", "lastbackuptime": null, "lastbackupattempt": null},
                "configurationattempt": 0
            }),
        );
        r.metadata.version = 1;
        let expected = "\
NAMESPACE   TYPE                      ID                          VERSION   CONFIGURATION NAME   CONFIGURATION ERROR   LAST BACKUP STATUS   LAST BACKUP ERROR   LAST BACKUP TIME   CONFIGURATION ATTEMPT
ephemeral   EtcdBackupOverallStatus   etcdbackup-overall-status   1         s3                   not initialized
";
        assert_eq!(print("etcdbackupoverallstatus", &[r.clone()]), expected);

        r.metadata.version = 2;
        r.spec["configurationerror"] = json!("");
        let expected = "\
NAMESPACE   TYPE                      ID                          VERSION   CONFIGURATION NAME   CONFIGURATION ERROR   LAST BACKUP STATUS   LAST BACKUP ERROR   LAST BACKUP TIME   CONFIGURATION ATTEMPT
ephemeral   EtcdBackupOverallStatus   etcdbackup-overall-status   2         s3
";
        assert_eq!(
            print("EtcdBackupOverallStatuses.omni.sidero.dev", &[r]),
            expected
        );
    }

    #[test]
    fn etcd_backup_matches_the_seed() {
        let mut r = Resource::new(
            "EtcdBackups.omni.sidero.dev",
            "external",
            "talos-default-1702166400",
            json!({"createdat": {"seconds": 1702166400, "nanos": 0}, "snapshot": "x.snapshot", "size": 1024}),
        );
        r.metadata
            .labels
            .insert("omni.sidero.dev/cluster".into(), "talos-default".into());
        let expected = "\
NAMESPACE   TYPE         ID                         VERSION     CREATED AT
external    EtcdBackup   talos-default-1702166400   undefined   {\"nanos\":0,\"seconds\":1702166400}
";
        assert_eq!(print("etcdbackup", &[r]), expected);
    }

    #[test]
    fn empty_list_prints_the_header_and_cells_stay_on_one_line() {
        assert_eq!(
            print("cluster", &[]),
            "NAMESPACE   TYPE   ID   VERSION   KUBERNETES VERSION   TALOS VERSION\n"
        );
        let r = Resource::new(
            "EtcdBackupStatuses.omni.sidero.dev",
            "ephemeral",
            "c",
            json!({"status": 2, "error": "a\nb"}),
        );
        let out = print("etcdbackupstatus", &[r]);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains("   2        a b"), "{out}");
    }

    #[test]
    fn watch_rows_are_marked_and_aligned() {
        let mut p = TablePrinter::new(lookup("cluster").unwrap());
        let mut out = Vec::new();
        let mut c = Resource::new(
            "Clusters.omni.sidero.dev",
            "default",
            "talos-default",
            json!({"kubernetesversion": "1.28.2", "talosversion": "1.5.5"}),
        );
        c.metadata.version = 1;
        p.watch_start(&mut out, &[c.clone()]).unwrap();
        c.metadata.version = 2;
        p.watch_event(&mut out, Change::Updated, &c).unwrap();
        p.watch_event(&mut out, Change::Destroyed, &c).unwrap();
        let expected = "    \
NAMESPACE   TYPE      ID              VERSION   KUBERNETES VERSION   TALOS VERSION
    default     Cluster   talos-default   1         1.28.2               1.5.5
*   default     Cluster   talos-default   2         1.28.2               1.5.5
-   default     Cluster   talos-default   2         1.28.2               1.5.5
";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
