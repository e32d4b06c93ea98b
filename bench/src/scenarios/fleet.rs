//! A fleet of member connections, one task each: set up (connect,
//! authenticate, join), then idle, or send at a scheduled rate while
//! timing every `msg` they receive.
//!
//! The controller drives the fleet with a `watch` channel of [`Command`]s;
//! every task counts into the shared [`StepStats`] of the current step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

use crate::client::Conn;
use crate::clock;
use crate::engineio::{self, Eio, Packet, SioPacket};
use crate::histogram::AtomicHistogram;
use crate::payload::{stamp_of, MsgTemplate};
use crate::{proc_stats, Result};

/// Who connects where: members `0..conns`, member `i` in room `i / members`,
/// on node `i % nodes.len()` (round-robin), as uid `<prefix>-u<i>`.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Server addresses (`host:port`); members are spread round-robin.
    pub nodes: Vec<String>,
    /// Number of connections.
    pub conns: usize,
    /// Members per room.
    pub members: usize,
    /// Prefix of uids and room ids, unique per run (the server rate-limits
    /// authentications per uid and kicks out older logins of a uid).
    pub prefix: String,
}

impl Layout {
    /// A layout with a fresh run prefix.
    pub fn new(nodes: Vec<String>, conns: usize, members: usize) -> Self {
        Self {
            nodes,
            conns,
            members: members.max(1),
            prefix: run_prefix(),
        }
    }

    fn member(&self, i: usize) -> Member {
        Member {
            index: i,
            addr: self.nodes[i % self.nodes.len()].clone(),
            uid: format!("{}-u{i}", self.prefix),
            room: format!("{}-r{}", self.prefix, i / self.members),
        }
    }
}

/// A prefix unique to this process and moment, e.g. `b4242x1a2b3c`.
pub fn run_prefix() -> String {
    format!(
        "b{}x{:x}",
        std::process::id(),
        (clock::now_ns() / 1_000) & 0xff_ffff
    )
}

#[derive(Debug, Clone)]
struct Member {
    index: usize,
    addr: String,
    uid: String,
    room: String,
}

/// What the fleet should be doing.
#[derive(Clone)]
pub enum Command {
    /// Hold the connections, answer pings, count deliveries.
    Idle,
    /// Send per the step's schedule.
    Run(Step),
    /// Close the connections and end.
    Stop,
}

/// One measured period at a fixed aggregate rate.
#[derive(Clone)]
pub struct Step {
    /// Where every task counts.
    pub stats: Arc<StepStats>,
    /// When sending starts (warm-up first).
    pub start: Instant,
    /// Messages stamped in `[window_start_ns, window_end_ns)` are measured.
    pub window_start_ns: u64,
    /// End of the measured window; sending stops here.
    pub window_end_ns: u64,
    /// When sending stops.
    pub send_end: Instant,
    /// Aggregate messages per second over all senders.
    pub rate: f64,
    /// Number of senders sharing `rate`.
    pub senders: usize,
}

impl Step {
    fn in_window(&self, t: u64) -> bool {
        t >= self.window_start_ns && t < self.window_end_ns
    }
}

/// Counters of one step, shared by all tasks.
#[derive(Debug, Default)]
pub struct StepStats {
    /// Messages sent with a stamp inside the window.
    pub sent: AtomicU64,
    /// Messages sent in the whole step (warm-up included).
    pub sent_total: AtomicU64,
    /// Deliveries of messages stamped inside the window.
    pub received: AtomicU64,
    /// Receive latency of those deliveries, ns.
    pub latency: AtomicHistogram,
    /// How late sends went out against their schedule, ns.
    pub send_lag: AtomicHistogram,
}

/// Counters that outlive steps.
#[derive(Debug, Default)]
pub struct FleetCounters {
    /// Benchmark messages received, ever.
    pub deliveries: AtomicU64,
    /// Connections lost after set-up.
    pub lost: AtomicU64,
    /// The last error that ended a connection.
    pub last_error: Mutex<Option<String>>,
}

impl FleetCounters {
    fn lose(&self, why: String) {
        self.lost.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(why);
        }
    }
}

/// Connected members and the channel that drives them.
pub struct Fleet {
    cmd: watch::Sender<Command>,
    tasks: JoinSet<()>,
    /// Counters that outlive steps.
    pub counters: Arc<FleetCounters>,
    /// How long setting up every connection took.
    pub setup_time: Duration,
    /// The layout the fleet was built from.
    pub layout: Layout,
}

impl Fleet {
    /// Connects, authenticates and joins every member of `layout`, at most
    /// `concurrency` set-ups at a time; fails if any member fails.
    pub async fn start(
        layout: Layout,
        eio: Eio,
        template: MsgTemplate,
        concurrency: usize,
    ) -> Result<Fleet> {
        // This process holds one descriptor per connection.
        if let Ok(limit) = proc_stats::nofile_limit() {
            if layout.conns as u64 + 64 > limit {
                return Err(format!(
                    "{} connections need more open files than this process may have ({limit})",
                    layout.conns
                )
                .into());
            }
        }
        let (cmd, cmd_rx) = watch::channel(Command::Idle);
        let (ready_tx, mut ready_rx) = mpsc::channel::<std::result::Result<(), String>>(1024);
        let counters = Arc::new(FleetCounters::default());
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let template = Arc::new(template);
        let mut tasks = JoinSet::new();
        let started = Instant::now();
        for i in 0..layout.conns {
            let task = MemberTask {
                member: layout.member(i),
                eio,
                template: template.clone(),
                counters: counters.clone(),
            };
            tasks.spawn(task.run(cmd_rx.clone(), ready_tx.clone(), permits.clone()));
        }
        drop(ready_tx);
        // Generous: a stuck set-up times out per step (client::STEP_TIMEOUT).
        let limit = Duration::from_secs(60) + Duration::from_millis(layout.conns as u64 * 5);
        let mut fleet = Fleet {
            cmd,
            tasks,
            counters,
            setup_time: Duration::ZERO,
            layout,
        };
        let mut ok = 0usize;
        let deadline = started + limit;
        while ok < fleet.layout.conns {
            match timeout(
                deadline.saturating_duration_since(Instant::now()),
                ready_rx.recv(),
            )
            .await
            {
                Ok(Some(Ok(()))) => ok += 1,
                Ok(Some(Err(e))) => {
                    fleet.stop().await;
                    return Err(
                        format!("set-up of a connection failed after {ok} succeeded: {e}").into(),
                    );
                }
                Ok(None) => break,
                Err(_) => {
                    fleet.stop().await;
                    return Err(format!("set-up timed out after {ok} connections").into());
                }
            }
        }
        fleet.setup_time = started.elapsed();
        Ok(fleet)
    }

    /// Tells every member what to do next.
    pub fn command(&self, c: Command) {
        self.cmd.send_replace(c);
    }

    /// Connections lost so far.
    pub fn lost(&self) -> u64 {
        self.counters.lost.load(Ordering::Relaxed)
    }

    /// Why the last connection was lost.
    pub fn last_error(&self) -> Option<String> {
        self.counters.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Waits until no benchmark message has arrived for `quiet`, at most `max`.
    pub async fn settle(&self, quiet: Duration, max: Duration) {
        let end = Instant::now() + max;
        let mut last = self.counters.deliveries.load(Ordering::Relaxed);
        let mut last_change = Instant::now();
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.counters.deliveries.load(Ordering::Relaxed);
            if now != last {
                last = now;
                last_change = Instant::now();
            } else if last_change.elapsed() >= quiet {
                return;
            }
        }
    }

    /// Closes every connection and waits for the tasks (aborting stragglers).
    pub async fn stop(mut self) {
        self.command(Command::Stop);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if timeout(Duration::from_secs(15), all).await.is_err() {
            self.tasks.abort_all();
        }
    }
}

struct MemberTask {
    member: Member,
    eio: Eio,
    template: Arc<MsgTemplate>,
    counters: Arc<FleetCounters>,
}

impl MemberTask {
    async fn setup(&self) -> Result<Conn> {
        let mut conn = Conn::connect(&self.member.addr, self.eio).await?;
        conn.authenticate(&self.member.uid).await?;
        conn.join(&self.member.room).await?;
        Ok(conn)
    }

    async fn run(
        self,
        mut cmd: watch::Receiver<Command>,
        ready: mpsc::Sender<std::result::Result<(), String>>,
        permits: Arc<Semaphore>,
    ) {
        let setup = {
            let _permit = permits.acquire().await;
            self.setup().await
        };
        let mut conn = match setup {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(format!("{}: {e}", self.member.uid))).await;
                return;
            }
        };
        if ready.send(Ok(())).await.is_err() {
            return;
        }
        drop(ready);
        if let Err(e) = self.serve(&mut conn, &mut cmd).await {
            self.counters.lose(format!("{}: {e}", self.member.uid));
            return;
        }
        conn.close().await;
    }

    /// The steady state: one loop over commands, frames and two timers.
    async fn serve(&self, conn: &mut Conn, cmd: &mut watch::Receiver<Command>) -> Result<()> {
        let far = || Instant::now() + Duration::from_secs(86_400);
        let send_timer = tokio::time::sleep_until(far());
        tokio::pin!(send_timer);
        let ping_every = conn.ping_interval();
        let ping_timer = tokio::time::sleep_until(Instant::now() + ping_every);
        tokio::pin!(ping_timer);
        let client_pings = conn.eio().client_pings();
        let mut step: Option<Step> = None;
        let mut sending = false;
        let mut next_send = Instant::now();
        let mut interval = Duration::ZERO;
        // The current command may already be set (a late joiner).
        cmd.mark_changed();
        loop {
            tokio::select! {
                changed = cmd.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let c = cmd.borrow_and_update().clone();
                    match c {
                        Command::Stop => return Ok(()),
                        Command::Idle => {
                            step = None;
                            sending = false;
                        }
                        Command::Run(s) => {
                            sending = false;
                            if s.rate > 0.0 && s.senders > 0 {
                                // Even spacing: sender i goes i/rate seconds into each round.
                                interval = Duration::from_secs_f64(s.senders as f64 / s.rate);
                                let offset = Duration::from_secs_f64(self.member.index as f64 / s.rate);
                                next_send = s.start + offset.min(interval);
                                if next_send < s.send_end {
                                    sending = true;
                                    send_timer.as_mut().reset(next_send);
                                }
                            }
                            step = Some(s);
                        }
                    }
                }
                frame = conn.next_text() => {
                    let frame = frame?;
                    self.on_frame(conn, &frame, step.as_ref()).await?;
                }
                () = &mut send_timer, if sending => {
                    let Some(s) = step.as_ref() else {
                        sending = false;
                        continue;
                    };
                    let lag = Instant::now().saturating_duration_since(next_send);
                    let t = clock::now_ns();
                    conn.send(self.template.render(t, None)).await?;
                    s.stats.sent_total.fetch_add(1, Ordering::Relaxed);
                    if s.in_window(t) {
                        s.stats.sent.fetch_add(1, Ordering::Relaxed);
                        s.stats.send_lag.record(lag.as_nanos() as u64);
                    }
                    next_send += interval;
                    if next_send >= s.send_end {
                        sending = false;
                    } else {
                        send_timer.as_mut().reset(next_send);
                    }
                }
                () = &mut ping_timer, if client_pings => {
                    conn.ping().await?;
                    conn.flush().await?;
                    ping_timer.as_mut().reset(Instant::now() + ping_every);
                }
            }
        }
    }

    async fn on_frame(&self, conn: &mut Conn, frame: &str, step: Option<&Step>) -> Result<()> {
        if conn.answer_ping(frame).await? {
            return Ok(());
        }
        match engineio::decode(frame) {
            Ok(Packet::Message(SioPacket::Event { nsp: "/", data, .. })) => {
                let Ok(args) = engineio::event_args(data) else {
                    return Ok(());
                };
                match args.name.as_ref() {
                    "msg" => {
                        let Some(t) = args.arg.and_then(stamp_of) else {
                            return Ok(());
                        };
                        self.counters.deliveries.fetch_add(1, Ordering::Relaxed);
                        if let Some(s) = step {
                            if s.in_window(t) {
                                s.stats.received.fetch_add(1, Ordering::Relaxed);
                                s.stats.latency.record(clock::now_ns().saturating_sub(t));
                            }
                        }
                        Ok(())
                    }
                    "kickout" => Err("kicked out".into()),
                    _ => Ok(()),
                }
            }
            Ok(Packet::Message(SioPacket::Disconnect { .. }) | Packet::Close) => {
                Err("disconnected by the server".into())
            }
            _ => Ok(()),
        }
    }
}
