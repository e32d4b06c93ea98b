//! The suite's report as a Markdown file, named and headed by the date of
//! its run.

use crate::Result;
use std::path::PathBuf;

/// The current UTC date and time, `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    stamp(time::OffsetDateTime::now_utc())
}

/// `at` as `YYYY-MM-DD HH:MM UTC`.
fn stamp(at: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// Writes `report` (as [`run`] returns it) as a Markdown file in `dir`,
/// named by the run's date and `suffix` (`2026-12-05.md`,
/// `2026-12-05-stalls.md`, or with the time added when that name is taken
/// already); returns its path.
pub fn write_markdown(
    dir: &std::path::Path,
    report: &str,
    command: &str,
    suffix: Option<&str>,
) -> Result<PathBuf> {
    let stamp = report
        .lines()
        .next()
        .and_then(|l| l.split(" — ").nth(1))
        .map_or_else(utc_now, str::to_owned);
    let day = stamp.get(..10).unwrap_or("undated").to_owned();
    let time = stamp.get(11..16).unwrap_or("0000").replace(':', "");
    std::fs::create_dir_all(dir)?;
    let suffix = suffix.map(|s| format!("-{s}")).unwrap_or_default();
    let mut path = dir.join(format!("{day}{suffix}.md"));
    if path.exists() {
        path = dir.join(format!("{day}-{time}{suffix}.md"));
    }
    std::fs::write(&path, markdown(report, command, &stamp))?;
    Ok(path)
}

/// The report as Markdown: its header lines, the table as a table, and the
/// lines under it (every round and step) as a block.
fn markdown(report: &str, command: &str, stamp: &str) -> String {
    let mut head = Vec::new();
    let mut table = Vec::new();
    let mut rest = Vec::new();
    for line in report.lines() {
        if line.starts_with('|') && rest.is_empty() {
            table.push(line);
        } else if table.is_empty() {
            head.push(line);
        } else {
            rest.push(line);
        }
    }
    let mut out = format!("# ao-bench suite, {stamp}\n\n`ao-bench {command}`\n\n");
    for line in head.iter().filter(|l| !l.trim().is_empty()) {
        out.push_str(line.trim());
        out.push_str("  \n");
    }
    out.push('\n');
    for line in &table {
        out.push_str(line);
        out.push('\n');
    }
    if !rest.is_empty() {
        out.push_str("\nEvery round and step:\n\n```text\n");
        for line in &rest {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("```\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let at = |secs| time::OffsetDateTime::from_unix_timestamp(secs).expect("in range");
        assert_eq!(stamp(at(0)), "1970-01-01 00:00 UTC");
        assert_eq!(stamp(at(19_782 * 86_400 + 3_723)), "2024-02-29 01:02 UTC");
    }

    #[test]
    fn the_markdown_report_keeps_the_table_as_a_table() {
        let report = "ao-bench suite — 2026-12-05 15:45 UTC — 2 CPUs, X — engine.io 4 — 898 s\nload average 1 2 3\n\n| figure | server |\n| --- | --- |\n| a | 1 |\nround 1: ok\n";
        let md = markdown(report, "suite", "2026-12-05 15:45 UTC");
        assert!(
            md.starts_with("# ao-bench suite, 2026-12-05 15:45 UTC\n"),
            "{md}"
        );
        assert!(
            md.contains("\n| figure | server |\n| --- | --- |\n| a | 1 |\n"),
            "{md}"
        );
        assert!(md.contains("```text\nround 1: ok\n```"), "{md}");
        let dir = tempfile::tempdir().expect("dir");
        let first = write_markdown(dir.path(), report, "suite", None).expect("write");
        assert!(first.ends_with("2026-12-05.md"));
        let second = write_markdown(dir.path(), report, "suite", None).expect("write again");
        assert!(second.ends_with("2026-12-05-1545.md"));
        let stalls = write_markdown(dir.path(), report, "suite", Some("stalls")).expect("write");
        assert!(stalls.ends_with("2026-12-05-stalls.md"));
    }
}
