#!/usr/bin/env node
'use strict';
// Server memory per idle connection as real socket.io clients make them:
// socket.io-client 4 and 2 on each transport list (websocket only; polling
// then upgrade to websocket, the clients' default; polling only). ao-bench's
// `conns` speaks websocket only; this shows what the other transports cost.
//
//   node bench/idle-memory.js [--server-bin target/release/always-online] [--conns 2000]
//
// Uses the socket.io clients installed for the compatibility tests
// (`cd tests/clients && npm ci`). For every row it starts a fresh server
// (`--dev`, free ports, temporary data directory), opens the connections
// (each authenticates with its own uid and joins one of 100 rooms, 32 set-ups
// in flight), waits two seconds and reads the server's RSS from /proc.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const clients = path.resolve(__dirname, '../tests/clients/node_modules');
const io2 = require(path.join(clients, 'sio2'));
const { io: io4 } = require(path.join(clients, 'sio4'));

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const BIN = path.resolve(arg('--server-bin', path.resolve(__dirname, '../target/release/always-online')));
const CONNS = Number(arg('--conns', '2000'));
const IN_FLIGHT = 32;
const MODES = {
  websocket: ['websocket'],
  upgrade: ['polling', 'websocket'],
  polling: ['polling'],
};

const rssKiB = (pid) => Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startServer() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ao-idle-'));
  const port = await freePort();
  const apiPort = await freePort();
  const child = spawn(BIN, ['--dev', '--listen', `127.0.0.1:${port}`, '--api-listen', `127.0.0.1:${apiPort}`, '--data-dir', path.join(dir, 'data')], {
    env: { ...process.env, RUST_LOG: 'error' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (up) return { child, port, dir };
    await sleep(50);
  }
  child.kill();
  throw new Error(`the server did not listen on ${port}`);
}

function once(socket, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within 10 s`)), 10000);
    socket.once(event, (v) => { clearTimeout(timer); resolve(v); });
  });
}

async function connect(generation, transports, port, uid) {
  const url = `http://127.0.0.1:${port}`;
  const opts = { transports, reconnection: false, forceNew: true };
  const s = generation === 4 ? io4(url, opts) : io2(url, opts);
  await Promise.race([once(s, 'connect'), once(s, 'connect_error').then((e) => { throw e; })]);
  s.emit('authenticate', { uid, token: 'dev' });
  await once(s, 'authenticate');
  s.emit('join', { room: `room-${uid % 100}` });
  await once(s, 'join');
  if (transports.length > 1 && s.io.engine.transport.name !== 'websocket') {
    await once(s.io.engine, 'upgrade');
  }
  return s;
}

async function measure(generation, mode) {
  const server = await startServer();
  try {
    await sleep(500);
    const before = rssKiB(server.child.pid);
    const sockets = [];
    let next = 0;
    const worker = async () => {
      while (next < CONNS) {
        const uid = 10000 + next++;
        sockets.push(await connect(generation, MODES[mode], server.port, uid));
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    await sleep(2000);
    const after = rssKiB(server.child.pid);
    for (const s of sockets) s.close();
    return { generation, mode, conns: sockets.length, before, after };
  } finally {
    server.child.kill();
    fs.rmSync(server.dir, { recursive: true, force: true });
  }
}

(async () => {
  console.log(`server ${BIN}, ${CONNS} connections per row`);
  console.log('| client | transports | RSS before (MiB) | RSS after (MiB) | KiB per connection |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const generation of [4, 2]) {
    for (const mode of Object.keys(MODES)) {
      const r = await measure(generation, mode);
      const per = (r.after - r.before) / r.conns;
      console.log(`| socket.io-client ${generation} | ${MODES[mode].join(', ')} | ${(r.before / 1024).toFixed(1)} | ${(r.after / 1024).toFixed(1)} | ${per.toFixed(1)} |`);
    }
  }
  process.exit(0);
})().catch((e) => {
  console.error(`idle-memory: ${e.stack || e}`);
  process.exit(1);
});
