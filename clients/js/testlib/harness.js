'use strict';
// Starts the real always-online server (as tests/clients/harness.js does),
// creates users with its CLI, and gives tests sockets, rooms, a cuttable TCP
// proxy and event waiters.

const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const readline = require('node:readline');

const { io: io4 } = require('socket.io-client');
const io2 = require('sio2');
const { createRoom } = require('..');

const BIN = process.env.AO_BIN || path.resolve(__dirname, '../../../target/debug/always-online');
const TIMEOUT = 5000;

function serverEnv(env) {
  const out = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AO_')) out[k] = v;
  return { ...out, AO_LOG_FORMAT: 'json', ...env };
}

class Server {
  constructor(child, dir, port, lines) {
    this.child = child;
    this.dir = dir;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.lines = lines;
    this.tokens = new Map();
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', resolve);
    });
  }

  /** Token of user `uid`, created with `always-online user create`. */
  user(uid) {
    const key = String(uid);
    if (!this.tokens.has(key)) {
      this.tokens.set(
        key,
        new Promise((resolve, reject) => {
          execFile(
            BIN,
            ['user', 'create', key, '--data-dir', this.dir],
            { env: serverEnv({}), timeout: 10000 },
            (err, stdout, stderr) => {
              if (err) reject(new Error(`user create ${key}: ${err.message}\n${stderr}`));
              else resolve(stdout.trim());
            },
          );
        }),
      );
    }
    return this.tokens.get(key);
  }

  /** POST to the admin API (server started with AO_ADMIN_UID=root AO_ADMIN_TOKEN=secret). */
  async admin(route, body) {
    const res = await fetch(`${this.url}${route}?uid=root&token=secret`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return res.json();
  }

  tail(n = 20) {
    return this.lines.slice(-n).join('\n');
  }

  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(t);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts the server on 127.0.0.1:0 with a fresh data dir and extra AO_* `env`. */
function startServer(env = {}) {
  if (!fs.existsSync(BIN)) throw new Error(`server binary not found at ${BIN}: cargo build, or set AO_BIN`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ao-jsclient-'));
  const child = spawn(
    BIN,
    ['--listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--data-dir', dir],
    { env: serverEnv({ AO_ADMIN_UID: 'root', AO_ADMIN_TOKEN: 'secret', ...env }), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const lines = [];
  const rl = readline.createInterface({ input: child.stderr });
  return new Promise((resolve, reject) => {
    let done = false;
    const fail = (why) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
      reject(new Error(`${why}\n${lines.join('\n')}`));
    };
    const timer = setTimeout(() => fail('server did not start within 15 s'), 15000);
    child.once('error', (e) => fail(`cannot start ${BIN}: ${e.message}`));
    child.once('exit', (code) => fail(`server exited early (${code})`));
    rl.on('line', (line) => {
      lines.push(line);
      if (lines.length > 2000) lines.splice(0, 1000);
      if (process.env.AO_TEST_VERBOSE === '1') process.stderr.write(`[server] ${line}\n`);
      if (done || !line.includes('always-online listening')) return;
      const m = /"addr":"127\.0\.0\.1:(\d+)"/.exec(line);
      if (!m) return;
      done = true;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolve(new Server(child, dir, Number(m[1]), lines));
    });
  });
}

/** A TCP proxy to `port` whose connections can all be cut at once. */
function startProxy(port) {
  const conns = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    const pair = { client, upstream };
    conns.add(pair);
    const end = () => {
      conns.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        /** Cuts every connection (both directions, no goodbye). */
        cut() {
          const n = conns.size;
          for (const { client, upstream } of conns) {
            client.destroy();
            upstream.destroy();
          }
          conns.clear();
          return n;
        },
        close() {
          this.cut();
          return new Promise((r) => server.close(() => r()));
        },
      });
    });
  });
}

/** A socket.io socket of generation `gen` (2 or 4), reconnecting fast. */
function socket(url, { gen = 4, transports = ['websocket'], ...opts } = {}) {
  const options = {
    transports,
    forceNew: true,
    reconnectionDelay: 50,
    reconnectionDelayMax: 200,
    randomizationFactor: 0,
    timeout: TIMEOUT,
    ...opts,
  };
  return gen === 2 ? io2(url, options) : io4(url, options);
}

/**
 * A room of user `uid` on a new socket, recording every message. Resolves
 * once it is live (history synced). `opts`: createRoom options, plus
 * `url`, `gen`, `transports`, `wrap(socket)` (called before createRoom).
 */
async function room(server, uid, roomId, { url, gen, transports, live = true, wrap, ...opts } = {}) {
  const token = await server.user(uid);
  const sock = socket(url || server.url, { gen, transports });
  if (wrap) wrap(sock);
  const r = createRoom(sock, { uid, token, roomId, ...opts });
  r.sock = sock;
  r.got = [];
  r.states = [];
  r.resets = 0;
  r.on('message', (m, meta) => r.got.push({ m, meta }));
  r.on('state', (s) => r.states.push(s));
  r.on('reset', () => r.resets++);
  if (live) await waitFor(() => r.state === 'live', `${uid} live`);
  return r;
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `cond` every 5 ms until true; rejects after `ms`. */
async function waitFor(cond, what = 'condition', ms = TIMEOUT) {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

/** The next `event` of emitter `e`. */
function once(e, event, ms = TIMEOUT) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    e.once(event, (...args) => {
      clearTimeout(t);
      resolve(args[0]);
    });
  });
}

/** Makes `sock` hand the acks of its `msg` emits over `ms` late. */
function delayAcks(sock, ms) {
  const emit = sock.emit.bind(sock);
  sock.emit = (event, ...args) => {
    const cb = args[args.length - 1];
    if (event === 'msg' && typeof cb === 'function') {
      args[args.length - 1] = (...reply) => setTimeout(() => cb(...reply), ms);
    }
    return emit(event, ...args);
  };
}

module.exports = { BIN, delayAcks, startServer, startProxy, socket, room, delay, waitFor, once };
