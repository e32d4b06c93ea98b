//! The suite's table: one row per figure, with its ratio and target, and
//! the report around it.

use super::*;
use crate::disk_probe::DiskSync;
use crate::log_metrics;
use crate::proc_stats;
use crate::scenarios::conns::ConnsResult;
use crate::scenarios::fanout::{FindMaxResult, StepResult};
use crate::scenarios::sync::{median, SyncResult};
use std::fmt::Write as _;
use std::time::Duration;

/// One row of the table.
struct Row {
    figure: String,
    server: Option<f64>,
    floor: Option<f64>,
    target: &'static str,
    /// Whether the figure meets its target; `None` for information only.
    check: Option<Check>,
    /// The verdict whatever the figure says: a miss for another reason
    /// (messages not returned), or why the figure was not measured.
    verdict: Option<String>,
}

#[derive(Clone, Copy)]
enum Check {
    /// server / floor ≥ x.
    RatioAtLeast(f64),
    /// server ≤ x.
    AtMost(f64),
    /// server ≤ floor + x.
    AtMostFloorPlus(f64),
}

impl Row {
    fn new(
        figure: String,
        server: Option<f64>,
        floor: Option<f64>,
        target: &'static str,
        check: Option<Check>,
    ) -> Self {
        Self {
            figure,
            server,
            floor,
            target,
            check,
            verdict: None,
        }
    }

    fn ratio(&self) -> Option<f64> {
        match (self.server, self.floor) {
            (Some(s), Some(f)) if f != 0.0 => Some(s / f),
            _ => None,
        }
    }

    fn result(&self) -> String {
        if let Some(v) = &self.verdict {
            return v.clone();
        }
        let Some(check) = self.check else {
            return "info".into();
        };
        let ok = match check {
            Check::RatioAtLeast(x) => self.ratio().map(|r| r >= x),
            Check::AtMost(x) => self.server.map(|s| s <= x),
            Check::AtMostFloorPlus(x) => self.server.zip(self.floor).map(|(s, f)| s <= f + x),
        };
        match ok {
            Some(true) => "pass",
            Some(false) => "miss",
            None => "not run",
        }
        .into()
    }
}

/// A number with a precision fit for its size.
fn num(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if !v.is_finite() => "—".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub(super) fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// A sync row: the median ms of one encoding; with a target, it misses
/// when the preload did not complete or a sync returned fewer messages
/// than were sent.
fn sync_row(figure: String, r: Option<&SyncResult>, gzip: bool, check: Option<Check>) -> Row {
    let ms = r
        .and_then(|s| median(if gzip { &s.gzip } else { &s.plain }))
        .map(|m| m.ms);
    let target = if check.is_some() {
        "≤ 100 ms, all returned"
    } else {
        "—"
    };
    let mut row = Row::new(figure, ms, None, target, check);
    if let (Some(s), Some(_)) = (r, check) {
        row.verdict = match (&s.not_completed, s.returned()) {
            (Some(why), _) => Some(format!("not completed: {why}")),
            (None, Some(n)) if n != s.inserted as u64 => {
                Some(format!("miss: {n} of {} returned", s.inserted))
            }
            _ => None,
        };
    }
    row
}

/// The sum of a count over every run, `None` unless every run has it.
fn total_of(values: impl Iterator<Item = Option<u64>>) -> Option<f64> {
    let mut sum = 0u64;
    let mut any = false;
    for v in values {
        sum += v?;
        any = true;
    }
    any.then_some(sum as f64)
}

fn rows(cfg: &SuiteConfig, f: &Figures) -> Vec<Row> {
    use Against::{Durable, Floor, Inserts, Relay};
    let rate = cfg.rate;
    // Each figure's median over the rounds.
    let fan = |a: Against, fig: &dyn Fn(&StepResult) -> Option<f64>| {
        median_of(f.fanout[a.slot()].iter().filter_map(fig))
    };
    let best = |a: Against| f.find_max[a.slot()].as_ref().and_then(|r| r.best.as_ref());
    let cluster_best = |i: usize| f.cluster_find_max[i].as_ref().and_then(|r| r.best.as_ref());
    let cn = |i: usize, fig: &dyn Fn(&ConnsResult) -> Option<f64>| {
        median_of(f.conns[i].iter().filter_map(fig))
    };
    // What the server did, and against which floor.
    let mode = |a: Against| match a {
        Inserts | Durable => "inserts vs durable floor",
        Relay | Floor => "relay only",
    };
    // A fanout figure of the server storing or relaying only, against its
    // floor's; `unit` follows the mode.
    let fan_row = |a: Against,
                   (figure, unit): (&str, &str),
                   fig: &dyn Fn(&StepResult) -> Option<f64>,
                   target: &'static str,
                   check: Option<Check>| {
        Row::new(
            format!("{figure}, {}{unit}", mode(a)),
            fan(a, fig),
            fan(a.reference(), fig),
            target,
            check,
        )
    };
    let find_max_row = |a: Against, target: &'static str, check: Option<Check>| {
        Row::new(
            format!("find-max sent rate, {} (msg/s)", mode(a)),
            best(a).map(StepResult::sent_rate),
            best(a.reference()).map(StepResult::sent_rate),
            target,
            check,
        )
    };
    let stalls = |a: Against| total_of(f.log[a.slot()].iter().map(|l| l.stalls));
    let mut stall_row = Row::new(
        format!(
            "commit stalls (group > 50 ms) in {} fanout run(s) @ {rate:.0} msg/s, inserts vs durable floor",
            f.log[Inserts.slot()].len()
        ),
        stalls(Inserts),
        stalls(Durable),
        "≤ durable floor",
        Some(Check::AtMostFloorPlus(0.0)),
    );
    if stall_row.server.is_none() && !f.log[Inserts.slot()].is_empty() {
        stall_row.verdict = Some(format!(
            "n/a: the server has no {}",
            log_metrics::STALLS_TOTAL
        ));
    }
    let at = format!("@ {rate:.0} msg/s");
    let deliveries = format!("deliveries per server CPU-s {at}");
    let p99 = format!("p99 latency {at}");
    let p99_of = |r: &StepResult| Some(r.latency_ms(0.99));
    let mut rows = vec![
        find_max_row(
            Inserts,
            "≥ 0.85 × durable floor",
            Some(Check::RatioAtLeast(0.85)),
        ),
        find_max_row(Relay, "≥ 0.85 × floor", Some(Check::RatioAtLeast(0.85))),
        Row::new(
            "2 nodes on Redis, relay only: find-max sent rate (msg/s)".into(),
            cluster_best(0).map(StepResult::sent_rate),
            best(Floor).map(StepResult::sent_rate),
            "≥ 0.4 × floor",
            Some(Check::RatioAtLeast(0.4)),
        ),
        Row::new(
            "2 nodes on Redis, inserts vs 1-node durable floor: find-max sent rate (msg/s)".into(),
            cluster_best(1).map(StepResult::sent_rate),
            best(Durable).map(StepResult::sent_rate),
            "≥ 0.5 × durable floor",
            Some(Check::RatioAtLeast(0.5)),
        ),
        fan_row(
            Inserts,
            (&deliveries, ""),
            &StepResult::deliveries_per_cpu_s,
            "≥ 1.0 × durable floor",
            Some(Check::RatioAtLeast(1.0)),
        ),
        fan_row(
            Relay,
            (&deliveries, ""),
            &StepResult::deliveries_per_cpu_s,
            "≥ 1.0 × floor",
            Some(Check::RatioAtLeast(1.0)),
        ),
        fan_row(
            Inserts,
            (&p99, " (ms)"),
            &p99_of,
            "≤ durable floor + 1 ms",
            Some(Check::AtMostFloorPlus(1.0)),
        ),
        fan_row(
            Relay,
            (&p99, " (ms)"),
            &p99_of,
            "≤ 1 ms",
            Some(Check::AtMost(1.0)),
        ),
        stall_row,
        fan_row(
            Inserts,
            (&format!("disk bytes written per stored msg {at}"), ""),
            &StepResult::disk_bytes_per_stored,
            "≤ 2 KiB",
            Some(Check::AtMost(2048.0)),
        ),
        Row::new(
            format!("RSS per idle connection @ {} conns (KiB)", cfg.conns),
            cn(0, &|r| r.rss_per_conn().map(|b| b / 1024.0)),
            cn(1, &|r| r.rss_per_conn().map(|b| b / 1024.0)),
            "≤ 4 KiB",
            Some(Check::AtMost(4.0)),
        ),
        Row::new(
            format!("set-ups/s @ {} conns", cfg.conns),
            cn(0, &|r| Some(r.setups_per_s())),
            cn(1, &|r| Some(r.setups_per_s())),
            "≥ 1.0 × floor",
            Some(Check::RatioAtLeast(1.0)),
        ),
        sync_row(
            format!(
                "sync of {} msgs stored with acks, no gzip (ms)",
                cfg.sync_messages
            ),
            f.sync.as_ref(),
            false,
            Some(Check::AtMost(100.0)),
        ),
        sync_row(
            format!(
                "sync of {} msgs preloaded without acks, no gzip (ms)",
                cfg.sync_messages
            ),
            f.sync_unacked.as_ref(),
            false,
            Some(Check::AtMost(100.0)),
        ),
        Row::new(
            format!(
                "connections lost of {} held {} s",
                cfg.hold_conns,
                cfg.hold_time.as_secs()
            ),
            f.hold.as_ref().map(|r| r.lost as f64),
            None,
            "0",
            Some(Check::AtMost(0.0)),
        ),
        fan_row(
            Inserts,
            (&format!("CPU per stored msg {at}"), " (µs)"),
            &StepResult::cpu_us_per_stored,
            "—",
            None,
        ),
        Row::new(
            format!("group commit p99 {at}, inserts vs durable floor (ms)"),
            median_of(f.log[Inserts.slot()].iter().filter_map(|l| l.sync_ms(0.99))),
            median_of(f.log[Durable.slot()].iter().filter_map(|l| l.sync_ms(0.99))),
            "—",
            None,
        ),
        sync_row(
            format!(
                "sync of {} msgs stored with acks, gzip (ms)",
                cfg.sync_messages
            ),
            f.sync.as_ref(),
            true,
            None,
        ),
    ];
    for a in [Inserts, Relay] {
        rows.push(fan_row(
            a,
            (&format!("delivered/s {at}"), ""),
            &|r| Some(r.delivered_rate()),
            "—",
            None,
        ));
    }
    for a in [Inserts, Relay] {
        rows.push(fan_row(
            a,
            (&format!("deliveries received {at}"), " (%)"),
            &|r| Some(r.delivery_ratio() * 100.0),
            "—",
            None,
        ));
    }
    for a in [Inserts, Relay] {
        rows.push(fan_row(
            a,
            (&format!("p50 latency {at}"), " (ms)"),
            &|r| Some(r.latency_ms(0.5)),
            "—",
            None,
        ));
    }
    for a in [Inserts, Relay] {
        rows.push(Row::new(
            format!("find-max p99 at the best step, {} (ms)", mode(a)),
            best(a).map(|r| r.latency_ms(0.99)),
            best(a.reference()).map(|r| r.latency_ms(0.99)),
            "—",
            None,
        ));
    }
    rows.push(Row::new(
        format!("server CPU per set-up @ {} conns (µs)", cfg.conns),
        cn(0, &ConnsResult::cpu_per_setup_us),
        cn(1, &ConnsResult::cpu_per_setup_us),
        "—",
        None,
    ));
    rows
}

/// A report's first lines: the command, when, on what machine, how long,
/// the load average at start and end, and the disk's own `fdatasync`.
pub(crate) fn report_header(
    out: &mut String,
    command: &str,
    eio: impl std::fmt::Display,
    took: Duration,
    load_at_start: Option<&str>,
    disk: Option<&DiskSync>,
) {
    let (cpus, model) = proc_stats::machine_facts();
    let _ = writeln!(
        out,
        "{command} — {} — {cpus} CPUs, {model} — engine.io {eio} — {:.0} s",
        utc_now(),
        took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "load average (1/5/15 min) at start {}, at end {}",
        load_at_start.unwrap_or("?"),
        proc_stats::load_average().as_deref().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "{}",
        disk.map_or_else(
            || "disk fdatasync: not measured".to_owned(),
            DiskSync::summary
        )
    );
}

pub(super) fn report(cfg: &SuiteConfig, f: &Figures, took: Duration) -> String {
    let mut out = String::new();
    let command = format!("ao-bench suite{}", if cfg.quick { " --quick" } else { "" });
    report_header(
        &mut out,
        &command,
        cfg.eio,
        took,
        f.load_at_start.as_deref(),
        f.disk.as_ref(),
    );
    let rows = rows(cfg, f);
    let header = ["figure", "server", "floor", "ratio", "target", "pass/miss"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.figure.clone(),
                num(r.server),
                num(r.floor),
                num(r.ratio()),
                r.target.to_owned(),
                r.result(),
            ]
        })
        .collect();
    let mut width = header.map(|h| h.chars().count());
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c.iter()) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |cols: [&str; 6]| {
        let mut l = String::from("|");
        for (i, (c, w)) in cols.iter().zip(width).enumerate() {
            let pad = w - c.chars().count();
            // Figures left-aligned, numbers right-aligned.
            if (1..=3).contains(&i) {
                l.push_str(&format!(" {}{} |", " ".repeat(pad), c));
            } else {
                l.push_str(&format!(" {}{} |", c, " ".repeat(pad)));
            }
        }
        l
    };
    let _ = writeln!(out, "{}", line(header));
    let sep: Vec<String> = width.iter().map(|&w| "-".repeat(w)).collect();
    let _ = writeln!(out, "|-{}-|", sep.join("-|-"));
    for c in &cells {
        let _ = writeln!(out, "{}", line([&c[0], &c[1], &c[2], &c[3], &c[4], &c[5]]));
    }
    let find_max_steps = |out: &mut String, name: &str, fm: &FindMaxResult| {
        for (step, verdict) in &fm.steps {
            let v = match verdict {
                Ok(()) => "ok".to_owned(),
                Err(why) => format!("fails: {why}"),
            };
            let _ = writeln!(out, "find-max {name} step {:.0}/s: {v}", step.rate);
        }
    };
    for a in Against::ALL {
        for (round, r) in f.fanout[a.slot()].iter().enumerate() {
            let log = match f.log[a.slot()].get(round) {
                Some(log) if a.storage() == 0 => format!("; {}", log.summary()),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "fanout @ {:.0} msg/s, {}, round {}: {}{log}",
                cfg.rate,
                a.name(),
                round + 1,
                r.summary()
            );
        }
        if let Some(fm) = &f.find_max[a.slot()] {
            find_max_steps(&mut out, a.name(), fm);
        }
    }
    for (fm, a) in f
        .cluster_find_max
        .iter()
        .zip([Against::Relay, Against::Inserts])
    {
        if let Some(fm) = fm {
            let name = format!("2 nodes on Redis, {},", cluster_mode(a));
            find_max_steps(&mut out, &name, fm);
        }
    }
    for side in [Side::Server, Side::Floor] {
        let i = slot(side);
        for (round, r) in f.conns[i].iter().enumerate() {
            let _ = writeln!(
                out,
                "conns, {}, round {}: {}",
                side.name(),
                round + 1,
                r.summary()
            );
        }
    }
    if let Some(s) = &f.sync {
        let _ = writeln!(out, "sync with acks, server: {}", s.summary());
    }
    if let Some(s) = &f.sync_unacked {
        let _ = writeln!(out, "sync without acks, server: {}", s.summary());
    }
    for n in &f.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_over_rounds() {
        assert_eq!(median_of([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median_of([4.0, 1.0].into_iter()), Some(2.5));
        assert_eq!(median_of([f64::NAN, 5.0].into_iter()), Some(5.0));
        assert_eq!(median_of(std::iter::empty()), None);
    }

    #[test]
    fn verdicts() {
        let row = |server, floor, check| Row::new(String::new(), server, floor, "", check);
        assert_eq!(
            row(Some(8.0), Some(10.0), Some(Check::RatioAtLeast(0.7))).result(),
            "pass"
        );
        assert_eq!(
            row(Some(6.0), Some(10.0), Some(Check::RatioAtLeast(0.7))).result(),
            "miss"
        );
        assert_eq!(
            row(None, Some(10.0), Some(Check::RatioAtLeast(0.7))).result(),
            "not run"
        );
        assert_eq!(
            row(Some(4.0), None, Some(Check::AtMost(5.0))).result(),
            "pass"
        );
        assert_eq!(
            row(Some(6.0), None, Some(Check::AtMost(5.0))).result(),
            "miss"
        );
        assert_eq!(row(Some(6.0), None, None).result(), "info");
        assert_eq!(num(Some(1234.4)), "1234");
        assert_eq!(num(Some(12.34)), "12.3");
        assert_eq!(num(Some(1.234)), "1.23");
        assert_eq!(num(None), "—");
    }

    #[test]
    fn empty_report_lists_every_figure_as_not_run() {
        let cfg = SuiteConfig::new(PathBuf::from("/nonexistent"), true);
        let out = report(&cfg, &Figures::default(), Duration::from_secs(1));
        assert!(out.contains("| figure"));
        // The commit stalls too: no run, so not "n/a".
        assert_eq!(out.matches("not run").count(), 15);
        assert!(out.contains("disk fdatasync: not measured"), "{out}");
    }

    fn sync_result(not_completed: Option<&str>, returned: &[u64]) -> SyncResult {
        let run = |messages| sync::SyncRun {
            ms: 50.0,
            pages: 50,
            messages,
            bytes: 1,
        };
        SyncResult {
            preload: Preload::Unacked,
            inserted: 10_000,
            insert_s: 1.0,
            resends: 0,
            not_completed: not_completed.map(str::to_owned),
            plain: returned.iter().map(|&n| run(n)).collect(),
            gzip: Vec::new(),
        }
    }

    #[test]
    fn sync_rows_miss_when_messages_are_missing_or_the_preload_failed() {
        let check = Some(Check::AtMost(100.0));
        let all = sync_result(None, &[10_000, 10_000]);
        assert_eq!(
            sync_row(String::new(), Some(&all), false, check).result(),
            "pass"
        );
        let short = sync_result(None, &[10_000, 9_744]);
        assert_eq!(
            sync_row(String::new(), Some(&short), false, check).result(),
            "miss: 9744 of 10000 returned"
        );
        let failed = sync_result(
            Some("disconnected by the server after 300 of 10000 sent"),
            &[],
        );
        let row = sync_row(String::new(), Some(&failed), false, check);
        assert_eq!(row.server, None);
        assert_eq!(
            row.result(),
            "not completed: disconnected by the server after 300 of 10000 sent"
        );
        assert_eq!(
            sync_row(String::new(), None, false, check).result(),
            "not run"
        );
        assert_eq!(
            sync_row(String::new(), Some(&short), true, None).result(),
            "info"
        );
    }

    #[test]
    fn report_lists_inserts_relay_and_floor_figures() {
        let cfg = SuiteConfig::new(PathBuf::from("/nonexistent"), true);
        let out = report(&cfg, &Figures::default(), Duration::from_secs(1));
        for figure in [
            "find-max sent rate, inserts",
            "find-max sent rate, relay only",
            "2 nodes on Redis, relay only",
            "2 nodes on Redis, inserts vs 1-node durable floor",
            "deliveries per server CPU-s @ 2000 msg/s, inserts vs durable floor",
            "deliveries per server CPU-s @ 2000 msg/s, relay only",
            "p99 latency @ 2000 msg/s, inserts vs durable floor",
            "commit stalls (group > 50 ms)",
            "disk bytes written per stored msg @ 2000 msg/s, inserts vs durable floor",
            "CPU per stored msg @ 2000 msg/s, inserts vs durable floor",
            "group commit p99",
            "sync of 10000 msgs preloaded without acks",
        ] {
            assert!(out.contains(figure), "{figure} missing from\n{out}");
        }
    }

    fn fan_step(storage: u8, p99_us: u64, cpu_s: f64, written: u64) -> StepResult {
        let mut latency = crate::histogram::Histogram::new();
        for _ in 0..100 {
            latency.record(p99_us * 1_000);
        }
        StepResult {
            rate: 2_000.0,
            storage,
            window_s: 10.0,
            sent: 20_000,
            expected: 180_000,
            received: 180_000,
            latency,
            send_lag: crate::histogram::Histogram::new(),
            server_cpu_s: Some(cpu_s),
            server_write_bytes: Some(written),
            server_rss: None,
            loadgen_cpu_s: None,
            others_cpu_s: None,
            lost_conns: 0,
        }
    }

    fn row<'a>(rows: &'a [Row], starts: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.figure.starts_with(starts))
            .unwrap_or_else(|| panic!("no row {starts}"))
    }

    fn log(stalls: Option<u64>) -> LogFigures {
        LogFigures {
            stalls,
            syncs: None,
        }
    }

    #[test]
    fn inserts_are_compared_with_the_durable_floor_and_relays_with_the_floor() {
        let cfg = SuiteConfig::new(PathBuf::from("/nonexistent"), true);
        let mut f = Figures::default();
        // Inserts: 2.5 ms p99, 2 s CPU, 1 KiB a msg; the durable floor 2 ms,
        // 1.6 s, 2 KiB; relay only 1 s CPU against the floor's 2 s.
        f.fanout[Against::Inserts.slot()].push(fan_step(0, 2_500, 2.0, 20_000 * 1024));
        f.fanout[Against::Durable.slot()].push(fan_step(0, 2_000, 1.6, 20_000 * 2048));
        f.fanout[Against::Relay.slot()].push(fan_step(2, 500, 1.0, 0));
        f.fanout[Against::Floor.slot()].push(fan_step(2, 500, 2.0, 0));
        f.log[Against::Inserts.slot()].push(log(Some(2)));
        f.log[Against::Durable.slot()].push(log(Some(1)));
        let rows = rows(&cfg, &f);
        let deliveries = row(&rows, "deliveries per server CPU-s @ 2000 msg/s, inserts");
        assert_eq!(deliveries.ratio(), Some(0.8));
        assert_eq!(deliveries.result(), "miss");
        let relay = row(
            &rows,
            "deliveries per server CPU-s @ 2000 msg/s, relay only",
        );
        assert_eq!(relay.ratio(), Some(2.0));
        assert_eq!(relay.result(), "pass");
        let bytes = row(&rows, "disk bytes written per stored msg");
        assert_eq!((bytes.server, bytes.floor), (Some(1024.0), Some(2048.0)));
        assert_eq!(bytes.result(), "pass");
        let p99 = row(&rows, "p99 latency @ 2000 msg/s, inserts");
        let (server, floor) = (p99.server.expect("p99"), p99.floor.expect("p99"));
        assert!(server > floor && server <= floor + 1.0, "{server} {floor}");
        assert_eq!(p99.result(), "pass");
        let stalls = row(&rows, "commit stalls");
        assert_eq!((stalls.server, stalls.floor), (Some(2.0), Some(1.0)));
        assert_eq!(stalls.result(), "miss");
        assert!(
            stalls.figure.contains("in 1 fanout run(s)"),
            "{}",
            stalls.figure
        );
    }

    #[test]
    fn stalls_are_not_available_from_a_server_without_the_metric() {
        let cfg = SuiteConfig::new(PathBuf::from("/nonexistent"), true);
        let mut f = Figures::default();
        f.log[Against::Inserts.slot()].push(log(Some(0)));
        f.log[Against::Inserts.slot()].push(log(None));
        f.log[Against::Durable.slot()].push(log(Some(0)));
        let rows = rows(&cfg, &f);
        let stalls = row(&rows, "commit stalls");
        assert_eq!(stalls.server, None);
        assert_eq!(
            stalls.result(),
            "n/a: the server has no ao_store_log_stalls_total"
        );
        f.log[Against::Inserts.slot()].pop();
        f.log[Against::Durable.slot()].push(log(Some(3)));
        let rows = super::rows(&cfg, &f);
        let stalls = row(&rows, "commit stalls");
        assert_eq!((stalls.server, stalls.floor), (Some(0.0), Some(3.0)));
        assert_eq!(stalls.result(), "pass");
    }

    #[test]
    fn counts_add_up_only_when_every_run_has_them() {
        assert_eq!(total_of([Some(1), Some(2)].into_iter()), Some(3.0));
        assert_eq!(total_of([Some(1), None].into_iter()), None);
        assert_eq!(total_of(std::iter::empty()), None);
        let row = |server, floor| {
            Row::new(
                String::new(),
                server,
                floor,
                "",
                Some(Check::AtMostFloorPlus(1.0)),
            )
        };
        assert_eq!(row(Some(6.0), Some(5.0)).result(), "pass");
        assert_eq!(row(Some(6.1), Some(5.0)).result(), "miss");
        assert_eq!(row(Some(6.0), None).result(), "not run");
    }

    #[test]
    fn the_header_shows_what_the_disk_allows() {
        let cfg = SuiteConfig::new(PathBuf::from("/nonexistent"), true);
        let dir = tempfile::tempdir().expect("dir");
        let disk = disk_probe::measure(dir.path(), Duration::from_millis(20)).expect("probe");
        let f = Figures {
            disk: Some(disk),
            ..Figures::default()
        };
        let out = report(&cfg, &f, Duration::from_secs(1));
        let header: Vec<&str> = out.lines().take(3).collect();
        assert!(
            header[2].starts_with("disk fdatasync after 4 KiB appends: p50 "),
            "{out}"
        );
    }
}
