'use strict';
// Test harness for the client-compatibility tests: starts an always-online
// server on free ports, creates users with its CLI, and wraps real
// socket.io-client sockets of generation 2 (engine.io protocol 3) and
// generation 4 (engine.io protocol 4) so tests can await the events they
// receive, in order, and assert that nothing else arrives.
//
// Environment:
//   AO_BIN            the server binary (default ../../target/debug/always-online)
//   AO_TEST_VERBOSE=1 copy the server's log lines to stderr
//   AO_REDIS_SERVER   the redis-server binary for cluster runs (default redis-server)
//
// Cluster runs: startCluster({ nodes: 2 }) starts a private redis-server and
// several nodes sharing it; the Cluster object stands in for a Server, and
// hands out the nodes' URLs in turn so the members of a room are spread over
// the nodes.

const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const assert = require('node:assert/strict');
const zlib = require('node:zlib');

const io2 = require('sio2');
const { io: io4 } = require('sio4');

const BIN = process.env.AO_BIN || path.resolve(__dirname, '../../target/debug/always-online');

/** How long an awaited event may take. */
const EVENT_TIMEOUT = 5000;
/** How long "nothing arrives" is watched for. */
const QUIET_MS = 300;

/** The transports lists a client can be made with. */
const MODES = {
  websocket: ['websocket'],
  polling: ['polling'],
  upgrade: ['polling', 'websocket'],
};

/** Events the server sends, recorded on every client. */
const SERVER_EVENTS = [
  'authenticate',
  'join',
  'msg',
  'sync',
  'remote_join',
  'remote_leave',
  'remote_disconnect',
  'remote_sync',
  'kickout',
  'system',
];

/** Client lifecycle events recorded alongside. */
const LIFECYCLE_EVENTS = ['connect', 'disconnect', 'connect_error'];

// ---------------------------------------------------------------- server

/** A running server: its ports, its log, users created with its CLI. */
class Server {
  constructor(child, dir, port, apiPort, lines, cliEnv = {}) {
    this.child = child;
    /** The AO_* settings the CLI needs to reach the same account store (Redis in a cluster). */
    this.cliEnv = cliEnv;
    this.dir = dir;
    this.port = port;
    this.apiPort = apiPort;
    this.url = `http://127.0.0.1:${port}`;
    this.lines = lines;
    this.tokens = new Map();
    this.stopping = false;
    this.died = null;
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    child.once('exit', (code, signal) => {
      if (!this.stopping) this.died = { code, signal };
    });
  }

  /**
   * '' while the server runs as it should, else what went wrong (exited,
   * stopped by a signal it was not sent by stop(), panicked), for failure messages.
   */
  health() {
    const out = [];
    if (this.died) out.push(`exited unexpectedly (code ${this.died.code}, signal ${this.died.signal})`);
    if (!this.stopping) {
      const stop = this.lines.find((l) => l.includes('"shutting down"'));
      if (stop) out.push(`was told to stop by someone else than the test: ${stop}`);
    }
    const panic = this.lines.findIndex((l) => l.includes('panicked at'));
    if (panic >= 0) out.push(`panicked: ${this.lines.slice(panic, panic + 2).join(' ')}`);
    return out.length ? `server :${this.port} (pid ${this.child.pid}) ${out.join('; ')}` : '';
  }

  /** Creates user `uid` with `always-online user create` and returns its token (cached). */
  async user(uid) {
    const key = String(uid);
    if (!this.tokens.has(key)) {
      this.tokens.set(key, createUser(key, this.dir, this.cliEnv));
    }
    return this.tokens.get(key);
  }

  /** The URL a new client connects to (`uid`: the user it logs in as, if known). */
  clientUrl() {
    return this.url;
  }

  /** The server's last log lines, for failure messages. */
  tail(n = 30) {
    return this.lines.slice(-n).join('\n');
  }

  /** SIGTERM, wait for the exit (SIGKILL after 8 s), remove the data dir. */
  async stop() {
    this.stopping = true;
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      let timer;
      const killed = new Promise((resolve) => {
        timer = setTimeout(() => {
          this.child.kill('SIGKILL');
          resolve();
        }, 8000);
      });
      await Promise.race([this.exited, killed]);
      clearTimeout(timer);
      await this.exited;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function checkBinary() {
  if (!fs.existsSync(BIN)) {
    throw new Error(
      `server binary not found at ${BIN}: run \`cargo build\` in the repository root, or set AO_BIN`,
    );
  }
}

function createUser(uid, dir, env = {}) {
  return new Promise((resolve, reject) => {
    execFile(
      BIN,
      ['user', 'create', uid, '--data-dir', dir],
      { env: serverEnv(env), timeout: 10000 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`user create ${uid} failed: ${err.message}\n${stderr}`));
          return;
        }
        const token = stdout.trim();
        if (!/^\S+$/.test(token)) {
          reject(new Error(`user create ${uid} printed ${JSON.stringify(stdout)}`));
          return;
        }
        resolve(token);
      },
    );
  });
}

/** The environment of a server process: ours without inherited AO_* settings, plus `env`. */
function serverEnv(env) {
  const out = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('AO_')) out[k] = v;
  }
  return { ...out, AO_LOG_FORMAT: 'json', ...env };
}

/**
 * Starts `always-online` on 127.0.0.1:0 with a fresh data dir.
 * `env`: extra AO_* settings; `dev`: pass --dev.
 */
async function startServer({ env = {}, dev = false, cliEnv = {}, name = 'server' } = {}) {
  checkBinary();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ao-clients-'));
  const args = ['--listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--data-dir', dir];
  if (dev) args.push('--dev');
  const child = spawn(BIN, args, {
    env: serverEnv(env),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  adopt(child);
  const lines = [];
  const verbose = process.env.AO_TEST_VERBOSE === '1';
  const rl = readline.createInterface({ input: child.stderr });
  return new Promise((resolve, reject) => {
    let done = false;
    const fail = (why) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
      reject(new Error(`${why}\nserver log:\n${lines.join('\n')}`));
    };
    const timer = setTimeout(() => fail('server did not report listening within 15 s'), 15000);
    child.once('error', (e) => fail(`cannot start ${BIN}: ${e.message}`));
    child.once('exit', (code, sig) => fail(`server exited early (code ${code}, signal ${sig})`));
    // Keep draining stderr for the whole run, or the server would block on a full pipe.
    rl.on('line', (line) => {
      lines.push(line);
      if (lines.length > 2000) lines.splice(0, lines.length - 1000);
      if (verbose) process.stderr.write(`[${name} ${child.pid}] ${line}\n`);
      if (done || !line.includes('always-online listening')) return;
      const m = /"addr":"127\.0\.0\.1:(\d+)"/.exec(line);
      const api = /"api_addr":"127\.0\.0\.1:(\d+)"/.exec(line);
      if (!m) return;
      done = true;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolve(new Server(child, dir, Number(m[1]), api ? Number(api[1]) : null, lines, cliEnv));
    });
  });
}

// ---------------------------------------------------------------- cluster

/** Children to SIGKILL if this process exits without stopping them. */
const orphans = new Set();
let exitHooked = false;

function killOrphans() {
  for (const child of orphans) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  orphans.clear();
}

function adopt(child) {
  orphans.add(child);
  child.once('exit', () => orphans.delete(child));
  if (exitHooked) return;
  exitHooked = true;
  process.once('exit', killOrphans);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      killOrphans();
      process.kill(process.pid, sig);
    });
  }
}

/** A free TCP port on 127.0.0.1 (free when asked: the caller retries if it is taken). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const REDIS_BIN = process.env.AO_REDIS_SERVER || 'redis-server';

/** A private redis-server: no persistence, its own temp dir, killed at exit. */
class Redis {
  constructor(child, dir, port, lines) {
    this.child = child;
    this.dir = dir;
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
    this.lines = lines;
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
  }

  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function startRedisOnce(port) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ao-redis-'));
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'no',
    '--dir', dir,
    '--daemonize', 'no',
    '--protected-mode', 'no',
    '--logfile', '',
  ];
  const child = spawn(REDIS_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  adopt(child);
  const lines = [];
  const verbose = process.env.AO_TEST_VERBOSE === '1';
  return new Promise((resolve, reject) => {
    let done = false;
    const fail = (why) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
      reject(new Error(`${why}\nredis log:\n${lines.join('\n')}`));
    };
    const timer = setTimeout(() => fail('redis-server not ready within 10 s'), 10000);
    child.once('error', (e) => fail(`cannot start ${REDIS_BIN}: ${e.message}`));
    child.once('exit', (code, sig) => fail(`redis-server exited early (code ${code}, signal ${sig})`));
    for (const stream of [child.stdout, child.stderr]) {
      readline.createInterface({ input: stream }).on('line', (line) => {
        lines.push(line);
        if (lines.length > 500) lines.splice(0, lines.length - 250);
        if (verbose) process.stderr.write(`[redis ${child.pid}] ${line}\n`);
        if (done || !line.includes('Ready to accept connections')) return;
        done = true;
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve(new Redis(child, dir, port, lines));
      });
    }
  });
}

/** Starts a private redis-server on a free port of 127.0.0.1. */
async function startRedis() {
  let last;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return await startRedisOnce(await freePort());
    } catch (e) {
      last = e; // most likely the port was taken meanwhile
    }
  }
  throw last;
}

let clusterCounter = 0;

/**
 * Nodes sharing one Redis, standing in for a Server: users are created with
 * node 0's CLI (the token hashes live in Redis, so every node knows them), and
 * clientUrl() hands out the nodes' URLs in turn. A uid that logs in again is
 * sent to the node after the one of its previous connection, so kickouts and
 * reconnections cross nodes. Node-local things (url, port, apiPort, dir,
 * lines) are node 0's.
 */
class Cluster {
  constructor(nodes, redis, ownsRedis, prefix) {
    this.nodes = nodes;
    this.redis = redis;
    this.ownsRedis = ownsRedis;
    this.prefix = prefix;
    this.turn = 0;
    this.nodeOfUid = new Map();
  }

  get url() {
    return this.nodes[0].url;
  }

  get port() {
    return this.nodes[0].port;
  }

  get apiPort() {
    return this.nodes[0].apiPort;
  }

  get dir() {
    return this.nodes[0].dir;
  }

  get lines() {
    return this.nodes[0].lines;
  }

  get tokens() {
    return this.nodes[0].tokens;
  }

  user(uid) {
    return this.nodes[0].user(uid);
  }

  clientUrl(uid) {
    const n = this.nodes.length;
    let i;
    if (uid !== undefined && this.nodeOfUid.has(uid)) i = (this.nodeOfUid.get(uid) + 1) % n;
    else i = this.turn++ % n;
    if (uid !== undefined) this.nodeOfUid.set(uid, i);
    return this.nodes[i].url;
  }

  /** 'n0', 'n1', … for a node's URL (client labels show where they are). */
  nodeName(url) {
    const i = this.nodes.findIndex((s) => s.url === url);
    return i >= 0 ? `n${i}` : url;
  }

  health() {
    return this.nodes.map((s, i) => s.health() && `node ${i}: ${s.health()}`).filter(Boolean).join('\n');
  }

  tail(n = 30) {
    return this.nodes.map((s, i) => `--- node ${i} (:${s.port})\n${s.tail(n)}`).join('\n');
  }

  async stop() {
    await Promise.all(this.nodes.map((s) => s.stop()));
    if (this.ownsRedis) await this.redis.stop();
  }
}

/**
 * Starts `nodes` always-online processes clustered through Redis: a private
 * redis-server (or `redisUrl`), a fresh AO_REDIS_PREFIX, `env` and `dev` as
 * for startServer.
 */
async function startCluster({ nodes = 2, env = {}, dev = false, redisUrl } = {}) {
  checkBinary();
  const redis = redisUrl ? { url: redisUrl } : await startRedis();
  const prefix = `ao-test-${process.pid}-${++clusterCounter}`;
  const shared = { AO_REDIS_URL: redis.url, AO_REDIS_PREFIX: prefix };
  const started = await Promise.allSettled(
    Array.from({ length: nodes }, (_, i) =>
      startServer({ env: { ...env, ...shared }, dev, cliEnv: shared, name: `node${i}` }),
    ),
  );
  const ok = started.filter((r) => r.status === 'fulfilled').map((r) => r.value);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(ok.map((s) => s.stop()));
    if (!redisUrl) await redis.stop();
    throw failed.reason;
  }
  return new Cluster(ok, redis, !redisUrl, prefix);
}

// ---------------------------------------------------------------- clients

/**
 * A socket of generation `gen`: socket.io-client 2.x or 4.x, or a WeChat
 * mini program client, weapp.socket.io 2.1 (socket.io 2 protocol) or 3.x
 * (socket.io 4 protocol), running on the `wx` stand-in of wx.js.
 */
function makeSocket(gen, url, options) {
  if (gen === 2) return io2(url, options);
  if (gen === 4) return io4(url, options);
  require('./wx').install();
  const weapp = require(gen);
  return weapp(url, options);
}

let clientCounter = 0;

/**
 * One socket.io client of generation `gen` (2 or 4) over `mode`
 * ('websocket', 'polling' or 'upgrade'), recording every event it receives.
 */
class Client {
  constructor(gen, mode, url, opts = {}) {
    if (![2, 4, 'weapp2', 'weapp3'].includes(gen)) throw new Error(`unknown client generation ${gen}`);
    if (String(gen).startsWith('weapp') && mode !== 'websocket') {
      throw new Error('mini programs have websocket only');
    }
    if (!MODES[mode]) throw new Error(`unknown transport mode ${mode}`);
    this.gen = gen;
    this.mode = mode;
    this.label = `${typeof gen === 'number' ? `sio${gen}` : gen}/${mode}#${++clientCounter}`;
    this.entries = [];
    this.waiters = [];
    this.counter = 0;
    this.openedWith = null;
    const options = {
      transports: MODES[mode],
      forceNew: true,
      // Reconnect fast if it ever happens, so "does not reconnect" is observable quickly.
      reconnectionDelay: 100,
      reconnectionDelayMax: 200,
      randomizationFactor: 0,
      timeout: EVENT_TIMEOUT,
      ...opts,
    };
    this.socket = makeSocket(gen, url, options);
    for (const ev of [...SERVER_EVENTS, ...LIFECYCLE_EVENTS]) {
      this.socket.on(ev, (...args) => this.record(ev, args));
    }
    const manager = this.socket.io;
    manager.on('reconnect_attempt', () => this.record('reconnect_attempt', []));
    this.watchEngine(manager.engine);
    manager.on('open', () => this.watchEngine(manager.engine));
  }

  watchEngine(engine) {
    if (!engine || engine === this.engine) return;
    this.engine = engine;
    engine.on('open', () => {
      if (this.openedWith === null) this.openedWith = engine.transport.name;
    });
    engine.on('upgrade', (t) => this.record('upgrade', [t && t.name]));
  }

  /** The name of the transport in use now. */
  get transport() {
    const engine = this.socket.io.engine;
    return engine && engine.transport ? engine.transport.name : null;
  }

  /** The engine.io protocol revision the client speaks (3 for generation 2, 4 for 4). */
  get eio() {
    const engine = this.socket.io.engine;
    return engine && engine.transport ? Number(engine.transport.query.EIO) : null;
  }

  record(event, args) {
    const entry = { event, args, data: args[0], i: this.counter++, taken: false };
    this.entries.push(entry);
    const w = this.waiters.findIndex((x) => x.event === event);
    if (w >= 0) {
      const [waiter] = this.waiters.splice(w, 1);
      entry.taken = true;
      clearTimeout(waiter.timer);
      waiter.resolve(entry);
    }
  }

  /** The next not yet consumed `event` (in arrival order), as its whole entry. */
  nextEntry(event, timeoutMs = EVENT_TIMEOUT) {
    const entry = this.entries.find((e) => !e.taken && e.event === event);
    if (entry) {
      entry.taken = true;
      return Promise.resolve(entry);
    }
    return new Promise((resolve, reject) => {
      const waiter = { event, resolve, reject, timer: null };
      waiter.timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(
          new Error(
            `${this.label}: no '${event}' within ${timeoutMs} ms; received: ${this.describe()}`,
          ),
        );
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** The payload (first argument) of the next not yet consumed `event`. */
  async next(event, timeoutMs = EVENT_TIMEOUT) {
    return (await this.nextEntry(event, timeoutMs)).data;
  }

  /** Resolves if no unconsumed event named in `events` is there after `ms`. */
  async expectNone(events, ms = QUIET_MS) {
    const names = Array.isArray(events) ? events : [events];
    await delay(ms);
    const extra = this.entries.filter((e) => !e.taken && names.includes(e.event));
    assert.equal(
      extra.length,
      0,
      `${this.label}: expected no ${names.join('/')} but got ${extra
        .map((e) => `${e.event} ${short(e.args)}`)
        .join(', ')}`,
    );
  }

  /** Every recorded event, for failure messages. */
  describe() {
    return this.entries.map((e) => `${e.event}${e.taken ? '' : '*'} ${short(e.args)}`).join(' | ') || '(nothing)';
  }

  emit(event, data) {
    this.socket.emit(event, data);
  }

  /** Emits with an ack callback and resolves with the ack's payload. */
  emitAck(event, data, timeoutMs = EVENT_TIMEOUT) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.label}: no ack for '${event}' within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.socket.emit(event, data, (ack) => {
        clearTimeout(timer);
        resolve(ack);
      });
    });
  }

  /** Resolves once connected. */
  async connected(timeoutMs = EVENT_TIMEOUT) {
    if (this.socket.connected) return;
    const e = await Promise.race([
      this.nextEntry('connect', timeoutMs),
      this.nextEntry('connect_error', timeoutMs).then((x) => {
        throw new Error(`${this.label}: connect_error ${short(x.args)}`);
      }),
    ]);
    return e;
  }

  /** Asserts the server closed this socket with a socket.io disconnect packet and it stays closed. */
  async expectServerDisconnect(timeoutMs = EVENT_TIMEOUT) {
    const entry = await this.nextEntry('disconnect', timeoutMs);
    assert.equal(entry.data, 'io server disconnect', `${this.label}: disconnect reason`);
    assert.equal(this.socket.connected, false);
    // Reconnection is on with a 100 ms delay: a reconnecting client would show it now.
    await this.expectNone(['connect', 'reconnect_attempt']);
    assert.equal(this.socket.connected, false, `${this.label}: reconnected`);
    return entry;
  }

  close() {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new Error(`${this.label}: closed while waiting for '${w.event}'`));
    }
    this.socket.close();
  }
}

/** Creates clients against one server and closes them all at once. */
class Pool {
  constructor(server) {
    this.server = server;
    this.clients = new Set();
  }

  /**
   * A new client, not yet awaited as connected. `uid`: the user it will log
   * in as, if known (a cluster uses it to pick the node).
   */
  raw(gen, mode, opts, uid) {
    const url = this.server.clientUrl(uid);
    const c = new Client(gen, mode, url, opts);
    if (this.server.nodeName) c.label += `@${this.server.nodeName(url)}`;
    this.clients.add(c);
    return c;
  }

  /** A new connected client. */
  async client(gen, mode, opts, uid) {
    const c = this.raw(gen, mode, opts, uid);
    try {
      await c.connected();
    } catch (e) {
      const health = this.server.health ? this.server.health() : '';
      if (health) e.message += `\n${health}`;
      throw e;
    }
    return c;
  }

  /**
   * A connected, authenticated client of user `uid` (created with the CLI).
   * `asNumber`: send the uid as a JSON number.
   */
  async login(gen, mode, uid, { asNumber = false, opts } = {}) {
    const token = await this.server.user(uid);
    const c = await this.client(gen, mode, opts, String(uid));
    c.uid = asNumber ? Number(uid) : String(uid);
    c.emit('authenticate', { uid: c.uid, token });
    assert.deepEqual(await c.next('authenticate'), { status: 0, data: 'auth success' }, c.label);
    return c;
  }

  /** login + join `roomId`, asserting the join ack. */
  async member(gen, mode, uid, roomId, opts) {
    const c = await this.login(gen, mode, uid, opts);
    await join(c, roomId);
    return c;
  }

  closeAll() {
    for (const c of this.clients) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    this.clients.clear();
  }
}

// ---------------------------------------------------------------- helpers

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function short(args) {
  const s = JSON.stringify(args);
  if (s === undefined) return 'undefined';
  return s.length > 160 ? `${s.slice(0, 160)}…(${s.length} chars)` : s;
}

/** `next(client, event, timeoutMs)`: the payload of the client's next `event`. */
function next(client, event, timeoutMs) {
  return client.next(event, timeoutMs);
}

/** `expectNone(client | clients, events, ms)`: nothing of `events` arrives at any of them. */
function expectNone(clients, events, ms = QUIET_MS) {
  const list = Array.isArray(clients) ? clients : [clients];
  return Promise.all(list.map((c) => c.expectNone(events, ms)));
}

/** Emits join and asserts the success ack. */
async function join(c, roomId, extra = {}) {
  c.emit('join', { roomId, ...extra });
  assert.deepEqual(await c.next('join'), { status: 0, data: 'join success' }, c.label);
}

/** Emits sync and returns the reply. */
async function sync(c, request) {
  c.emit('sync', request);
  return c.next('sync');
}

/** Decodes the `data` of a gzip sync reply. */
function gunzipData(b64) {
  return JSON.parse(zlib.gunzipSync(Buffer.from(b64, 'base64')).toString('utf8'));
}

/**
 * GET /metrics of a server (or one node of a cluster; it is on the main
 * listener) and parse the Prometheus/OpenMetrics text into
 * { 'name{labels}': value } (comments and the EOF line left out).
 */
async function scrapeMetrics(server) {
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 200, `GET ${server.url}/metrics`);
  const samples = {};
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    if (at > 0) samples[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return samples;
}

/**
 * A counter family with a `reason` label (e.g. `ao_messages_dropped_total`)
 * summed over the nodes of a cluster (or of one server): { reason: count }
 * for every exported reason; {} if the server does not export it.
 */
async function countsByReason(server, family) {
  const nodes = server.nodes || [server];
  const out = {};
  const re = new RegExp(`^${family.replace(/\W/g, '\\$&')}\\{reason="([^"]*)"\\}$`);
  for (const node of nodes) {
    const samples = await scrapeMetrics(node);
    for (const [k, v] of Object.entries(samples)) {
      const m = re.exec(k);
      if (m) out[m[1]] = (out[m[1]] || 0) + v;
    }
  }
  return out;
}

/** `ao_messages_dropped_total` by reason (see countsByReason). */
function droppedMessages(server) {
  return countsByReason(server, 'ao_messages_dropped_total');
}

/** Sorts messages by their msgId key `"1"` (or `msgId`), for comparing update sets. */
function byMsgId(list) {
  const id = (m) => String(m['1'] ?? m.msgId);
  return [...list].sort((a, b) => (id(a) < id(b) ? -1 : id(a) > id(b) ? 1 : 0));
}

module.exports = {
  BIN,
  EVENT_TIMEOUT,
  QUIET_MS,
  MODES,
  Client,
  Pool,
  Server,
  startServer,
  Redis,
  startRedis,
  Cluster,
  startCluster,
  next,
  expectNone,
  join,
  sync,
  gunzipData,
  byMsgId,
  delay,
  freePort,
  scrapeMetrics,
  countsByReason,
  droppedMessages,
};
