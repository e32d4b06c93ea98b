//! The soak run's report, as text and as a Markdown file.

use crate::Result;
use std::path::{Path, PathBuf};

/// What a soak run measured.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The report text.
    pub text: String,
    /// Acked msgs missing from the final check.
    pub lost: u64,
    /// Acked msgs missing from a periodic full sync started after their ack.
    pub lost_periodic: u64,
    /// Rooms (× nodes) the final check could not sync.
    pub failed_checks: u64,
}

impl SoakReport {
    /// Whether every acked msg was found by every check.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.lost_periodic == 0 && self.failed_checks == 0
    }
}

pub(super) fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}

pub(super) fn signed_mib(b: f64) -> String {
    format!("{:+.1} MiB", b / (1024.0 * 1024.0))
}

/// Writes the report as `<dir>/<date>-soak[-label].md` (with the time
/// when that file exists) and returns its path.
pub fn write_markdown(
    dir: &Path,
    report: &str,
    command: &str,
    label: Option<&str>,
) -> Result<PathBuf> {
    let stamp = report
        .lines()
        .next()
        .and_then(|l| l.split(" — ").nth(1))
        .map_or_else(crate::suite::utc_now, str::to_owned);
    let day = stamp.get(..10).unwrap_or("undated");
    let time = stamp.get(11..16).unwrap_or("0000").replace(':', "");
    let label = label.map_or(String::new(), |l| format!("-{l}"));
    std::fs::create_dir_all(dir)?;
    let mut path = dir.join(format!("{day}-soak{label}.md"));
    if path.exists() {
        path = dir.join(format!("{day}-{time}-soak{label}.md"));
    }
    let mut md = format!("# ao-bench soak, {stamp}\n\n`ao-bench {command}`\n\n");
    let mut in_table = false;
    let mut block = false;
    for line in report.lines().skip(1) {
        if line.starts_with('|') {
            if !in_table {
                md.push('\n');
            }
            in_table = true;
            md.push_str(line);
            md.push('\n');
        } else if line.starts_with("samples") {
            md.push_str("\n```\n");
            block = true;
            md.push_str(line);
            md.push('\n');
        } else if block {
            md.push_str(line);
            md.push('\n');
        } else if !line.trim().is_empty() {
            if in_table {
                md.push('\n');
                in_table = false;
            }
            md.push_str(line);
            md.push_str("  \n");
        }
    }
    if block {
        md.push_str("```\n");
    }
    std::fs::write(&path, md)?;
    Ok(path)
}
