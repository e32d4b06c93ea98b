//! Splits a perf profile's samples by the crate whose code ran, and groups
//! the crates into the layers the README compares (this server, the floor,
//! socket.io/engine.io, websocket and HTTP, the tokio runtime, the kernel).
//!
//! Input is `perf script -F ip,sym,dso` of a recording with call graphs
//! (`perf record --call-graph dwarf`) of a binary with debug info, so that
//! inlined frames are printed as frames of their own.
//!
//! A sample whose innermost frame is in the kernel counts as kernel time
//! (system calls, TCP, page faults). Any other sample counts for the
//! innermost frame of a crate that is not a utility crate: std, serde_json,
//! hashbrown, the allocator and the like are charged to the crate that
//! called them, so a malloc inside socketioxide's broadcast counts for
//! socketioxide, not for whoever asked for the broadcast.

use std::collections::HashMap;

/// Crates charged to their caller: they only do what the caller asked for.
const UTILITY: &[&str] = &[
    "std",
    "core",
    "alloc",
    "__rustc",
    "compiler_builtins",
    "hashbrown",
    "serde",
    "serde_core",
    "serde_json",
    "itoa",
    "ryu",
    "memchr",
    "smallvec",
    "bytes",
    "indexmap",
    "parking_lot",
    "parking_lot_core",
    "lock_api",
    "futures_util",
    "futures_core",
    "futures_sink",
    "futures_task",
    "pin_project_lite",
    "tracing",
    "tracing_core",
    "log",
    "once_cell",
    "base64",
];

/// The layers, each with its crates; a crate in none is "other crates".
const LAYERS: &[(&str, &[&str])] = &[
    ("this server", &["always_online"]),
    ("the floor (ao-bench)", &["ao_bench"]),
    ("socket.io / engine.io", &["ao_socketio"]),
    (
        "websocket, HTTP",
        &[
            "tungstenite",
            "tokio_tungstenite",
            "hyper",
            "hyper_util",
            "http",
            "http_body",
            "http_body_util",
            "httparse",
            "axum",
            "axum_core",
            "tower",
            "tower_http",
            "matchit",
            "sha1",
            "data_encoding",
        ],
    ),
    (
        "tokio runtime and channels",
        &["tokio", "tokio_util", "mio"],
    ),
];

/// What a sample is charged to when its innermost frame is in the kernel.
pub const KERNEL: &str = "kernel";
/// What a sample is charged to when none of its frames names a crate.
pub const UNATTRIBUTED: &str = "unattributed";

/// One stack frame: the demangled symbol and the object it is in.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The symbol, without its offset.
    pub symbol: String,
    /// The object (`[kernel.kallsyms]`, a binary, a library).
    pub dso: String,
}

/// The crate a demangled Rust symbol belongs to, if it names one
/// (`<socketioxide::Foo as Bar>::baz` belongs to socketioxide).
pub fn crate_of(symbol: &str) -> Option<&str> {
    let s = symbol.trim_start_matches(['<', '&', '(', '*']);
    let s = s.strip_prefix("dyn ").unwrap_or(s);
    let s = s.strip_prefix("mut ").unwrap_or(s);
    let end = s.find("::")?;
    let name = &s[..end];
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    valid.then_some(name)
}

/// Who a sample (frames innermost first) is charged to: [`KERNEL`], a
/// crate name or [`UNATTRIBUTED`].
pub fn owner(frames: &[Frame]) -> &str {
    if frames.first().is_some_and(|f| f.dso == "[kernel.kallsyms]") {
        return KERNEL;
    }
    frames
        .iter()
        .filter_map(|f| crate_of(&f.symbol))
        .find(|c| !UTILITY.contains(c))
        .unwrap_or(UNATTRIBUTED)
}

/// The layer a crate belongs to; [`KERNEL`] and [`UNATTRIBUTED`] are layers of their own.
pub fn layer_of(owner: &str) -> &'static str {
    if owner == KERNEL || owner == UNATTRIBUTED {
        return if owner == KERNEL {
            KERNEL
        } else {
            UNATTRIBUTED
        };
    }
    LAYERS
        .iter()
        .find(|(_, crates)| crates.contains(&owner))
        .map_or("other crates", |(name, _)| name)
}

/// Parses one frame line of `perf script -F ip,sym,dso`:
/// `\t  ffffffff8202798e tcp_write_xmit ([kernel.kallsyms])`.
fn parse_frame(line: &str) -> Option<Frame> {
    let (_ip, rest) = line.trim().split_once(' ')?;
    let (symbol, dso) = match rest.strip_suffix(')').and_then(|r| r.rsplit_once(" (")) {
        Some((symbol, dso)) => (symbol, dso),
        None => (rest, ""),
    };
    Some(Frame {
        symbol: symbol.to_owned(),
        dso: dso.to_owned(),
    })
}

/// Samples counted per owner.
#[derive(Debug, Default)]
pub struct Split {
    counts: HashMap<String, u64>,
    total: u64,
}

impl Split {
    /// Reads `perf script -F ip,sym,dso` output: samples are blocks of
    /// indented frame lines, innermost first, separated by blank lines.
    pub fn from_perf_script(text: &str) -> Split {
        let mut split = Split::default();
        let mut frames = Vec::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                split.add(&frames);
                frames.clear();
            } else if line.starts_with(char::is_whitespace) {
                frames.extend(parse_frame(line));
            }
        }
        split.add(&frames);
        split
    }

    fn add(&mut self, frames: &[Frame]) {
        if frames.is_empty() {
            return;
        }
        *self.counts.entry(owner(frames).to_owned()).or_default() += 1;
        self.total += 1;
    }

    /// Samples read.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// (owner, samples), most samples first.
    pub fn by_crate(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<_> = self.counts.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// (layer, samples), most samples first.
    pub fn by_layer(&self) -> Vec<(&'static str, u64)> {
        let mut layers: HashMap<&'static str, u64> = HashMap::new();
        for (owner, n) in &self.counts {
            *layers.entry(layer_of(owner)).or_default() += n;
        }
        let mut v: Vec<_> = layers.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// The report: share of each layer, then of each crate; with `cost_us`
    /// (CPU µs per unit of work, e.g. per delivery) also each layer's µs.
    pub fn report(&self, cost_us: Option<f64>) -> String {
        let total = self.total.max(1) as f64;
        let mut out = format!("{} samples\n", self.total);
        for (layer, n) in self.by_layer() {
            let share = n as f64 / total;
            match cost_us {
                Some(c) => {
                    out += &format!("{:5.1} %  {:7.2} µs  {layer}\n", share * 100.0, share * c)
                }
                None => out += &format!("{:5.1} %  {layer}\n", share * 100.0),
            }
        }
        out += "\n";
        for (owner, n) in self.by_crate() {
            out += &format!("{:5.1} %  {owner}\n", n as f64 * 100.0 / total);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "
\t          16d800 __memcpy_avx512_unaligned_erms (inlined)
\t          8960cf socketioxide::operators::BroadcastOperators<A>::emit (inlined)
\t          8960cf always_online::realtime::bus::Bus::emit_local (/x/always-online)
\t ffffffffffffffff [unknown] ([unknown])

\tffffffff8202798e tcp_write_xmit ([kernel.kallsyms])
\tffffffff81000130 entry_SYSCALL_64_after_hwframe ([kernel.kallsyms])
\t          10aba4 __libc_send (inlined)
\t         12cf4c0 <&mio::net::tcp::stream::TcpStream as std::io::Write>::write (/x/always-online)

\t          5a0000 <alloc::vec::Vec<T> as core::clone::Clone>::clone (/x/always-online)
\t          5a0001 <serde_json::value::Value as core::clone::Clone>::clone (/x/always-online)
\t          5a0002 always_online::realtime::message::<impl always_online::realtime::session::Session>::msg::{{closure}} (inlined)

\t          5a0003 malloc (/lib/libc.so.6)
\t ffffffffffffffff [unknown] ([unknown])
";

    #[test]
    fn crate_names_come_from_the_first_path_segment() {
        assert_eq!(crate_of("tokio::runtime::task::raw::poll"), Some("tokio"));
        assert_eq!(
            crate_of("<&mio::net::tcp::stream::TcpStream as std::io::Write>::write"),
            Some("mio")
        );
        assert_eq!(crate_of("<dyn core::any::Any>::type_id"), Some("core"));
        assert_eq!(crate_of("malloc"), None);
        assert_eq!(crate_of("[unknown]"), None);
        assert_eq!(crate_of("Foo::bar"), None);
    }

    #[test]
    fn samples_are_charged_to_the_innermost_non_utility_crate_or_the_kernel() {
        let split = Split::from_perf_script(SCRIPT);
        assert_eq!(split.total(), 4);
        let by_crate: HashMap<_, _> = split.by_crate().into_iter().collect();
        // memcpy inside socketioxide's broadcast counts for socketioxide.
        assert_eq!(by_crate.get("socketioxide"), Some(&1));
        assert_eq!(by_crate.get(KERNEL), Some(&1));
        // serde_json and alloc are charged to the server code that called them.
        assert_eq!(by_crate.get("always_online"), Some(&1));
        assert_eq!(by_crate.get(UNATTRIBUTED), Some(&1));
    }

    #[test]
    fn crates_group_into_layers() {
        assert_eq!(layer_of("ao_socketio"), "socket.io / engine.io");
        assert_eq!(layer_of("mio"), "tokio runtime and channels");
        assert_eq!(layer_of("always_online"), "this server");
        assert_eq!(layer_of(KERNEL), KERNEL);
        assert_eq!(layer_of(UNATTRIBUTED), UNATTRIBUTED);
        assert_eq!(layer_of("indexmap_like"), "other crates");
        let split = Split::from_perf_script(SCRIPT);
        let report = split.report(Some(10.0));
        assert!(report.starts_with("4 samples\n"), "{report}");
        assert!(report.contains(" 25.0 %     2.50 µs  kernel\n"), "{report}");
    }
}
