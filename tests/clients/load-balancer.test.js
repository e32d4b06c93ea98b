'use strict';
// Two nodes sharing one Redis behind a real load balancer, configured as
// deploy/ ships it: Debian's nginx (deploy/nginx/always-online.conf), then
// HAProxy (deploy/haproxy/haproxy.cfg). Everything goes through the
// balancer: socket.io-client 2.x and 4.x on websocket and on their default
// transports (polling, then the upgrade) from two source addresses that it
// sends to different nodes, msgs across the nodes, then the node of one
// client killed: that client reconnects through the balancer to the other
// node, and sync returns every acknowledged message.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const io2 = require('sio2');
const { io: io4 } = require('sio4');
const h = require('./harness');

const DEPLOY = path.resolve(__dirname, '../../deploy');
const NGINX = process.env.AO_NGINX || '/usr/sbin/nginx';
const HAPROXY = process.env.AO_HAPROXY || '/usr/sbin/haproxy';
/** Loopback source addresses tried for the two clients. */
const SOURCES = Array.from({ length: 30 }, (_, i) => `127.0.0.${i + 2}`);

/** Resolves once something listens on `port`. */
async function listening(port, what) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port}`);
    await h.delay(100);
  }
}

/** The shipped config with the test's nodes and port in place of the examples. */
function withNodes(text, ports, listen, from) {
  const out = text
    .replace('127.0.0.1:3001', `127.0.0.1:${ports[0]}`)
    .replace('127.0.0.1:3002', `127.0.0.1:${ports[1]}`)
    .replace(from, listen);
  assert.ok(out.includes(`127.0.0.1:${ports[1]}`) && out.includes(listen), 'config rewritten');
  return out;
}

/** nginx with deploy/nginx/always-online.conf inside a minimal main config. */
async function startNginx(ports) {
  const port = await h.freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ao-nginx-'));
  // The workers (nobody, when started as root) write their temp files here.
  fs.chmodSync(dir, 0o777);
  const site = withNodes(
    fs.readFileSync(path.join(DEPLOY, 'nginx/always-online.conf'), 'utf8'),
    ports,
    `listen 127.0.0.1:${port};`,
    'listen 8080;',
  );
  fs.writeFileSync(path.join(dir, 'site.conf'), site);
  const main = [
    'daemon off;',
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    'events { worker_connections 4096; }',
    'http {',
    '  access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/${t};`),
    `  include ${dir}/site.conf;`,
    '}',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'nginx.conf'), main);
  const child = spawn(NGINX, ['-c', `${dir}/nginx.conf`, '-p', dir, '-e', `${dir}/error.log`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await listening(port, 'nginx');
  return { name: 'nginx', port, child, dir };
}

/** HAProxy with deploy/haproxy/haproxy.cfg. */
async function startHaproxy(ports) {
  const port = await h.freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ao-haproxy-'));
  const cfg = withNodes(
    fs.readFileSync(path.join(DEPLOY, 'haproxy/haproxy.cfg'), 'utf8'),
    ports,
    `bind 127.0.0.1:${port}`,
    'bind :8080',
  );
  fs.writeFileSync(path.join(dir, 'haproxy.cfg'), cfg);
  const child = spawn(HAPROXY, ['-db', '-f', `${dir}/haproxy.cfg`], { stdio: ['ignore', 'ignore', 'pipe'] });
  await listening(port, 'haproxy');
  // Both nodes pass their first health checks.
  await h.delay(2500);
  return { name: 'haproxy', port, child, dir };
}

async function stopBalancer(b) {
  if (!b) return;
  if (b.child.exitCode === null) {
    const exited = new Promise((r) => b.child.once('exit', r));
    b.child.kill('SIGKILL');
    await exited;
  }
  fs.rmSync(b.dir, { recursive: true, force: true });
}

/** A client of generation `gen` through the balancer from `source`. */
function client(gen, mode, url, source) {
  const opts = {
    forceNew: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 500,
    agent: new http.Agent({ localAddress: source, keepAlive: true }),
  };
  if (mode === 'websocket') opts.transports = ['websocket'];
  return gen === 2 ? io2(url, opts) : io4(url, opts);
}

function once(socket, event, ms = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    socket.once(event, (v) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

/** Authenticates (dev mode: any token) and joins; resolves the socket id. */
async function enter(socket, uid, room) {
  if (!socket.connected) await once(socket, 'connect');
  socket.emit('authenticate', { uid, token: 'dev' });
  assert.equal((await once(socket, 'authenticate')).status, 0);
  socket.emit('join', { roomId: room });
  assert.equal((await once(socket, 'join')).status, 0);
}

/** The node (index) whose log names connection `sid`. */
function nodeOf(cluster, sid) {
  return cluster.nodes.findIndex((n) => n.lines.some((l) => l.includes(sid) && l.includes('"connected"')));
}

/**
 * The node (index) where `uid` authenticated (uids are unique per test).
 * Logs quote client strings, so in a JSON line the uid's value is the
 * quoted uid as a JSON string.
 */
function nodeOfUid(cluster, uid) {
  const field = `"uid":${JSON.stringify(JSON.stringify(uid))}`;
  return cluster.nodes.findIndex((n) => n.lines.some((l) => l.includes(field) && l.includes('"authenticated"')));
}

/**
 * The socket id a 4.x client was given in the server's connect packet (the
 * one the server logs; it is not the engine.io session id). 2.x clients
 * are never told it: find their node by uid.
 */
function sidOf(socket) {
  return socket.id;
}

/** Two source addresses that the balancer sends to different nodes. */
async function splitSources(cluster, url) {
  const seen = new Map();
  for (const source of SOURCES) {
    const s = client(4, 'websocket', url, source);
    await once(s, 'connect');
    await h.delay(100);
    const node = nodeOf(cluster, sidOf(s));
    s.close();
    if (node >= 0 && !seen.has(node)) seen.set(node, source);
    if (seen.size === 2) return [seen.get(0), seen.get(1)];
  }
  throw new Error(`no two of ${SOURCES.length} source addresses reached different nodes`);
}

/** Sends `n` acked inserts from `from`; resolves their seqs. */
async function sendAcked(from, tag, n) {
  const seqs = [];
  for (let i = 0; i < n; i++) {
    const ack = await new Promise((resolve) => from.emit('msg', { data: { tag, i }, s: 0 }, resolve));
    assert.equal(ack.status, 0, JSON.stringify(ack));
    seqs.push(ack.seq);
  }
  return seqs;
}

/** Every insert of the room, following sync pages to the end. */
async function syncAll(socket) {
  const items = [];
  let offset = 0;
  for (;;) {
    socket.emit('sync', { offset });
    const page = await once(socket, 'sync');
    items.push(...page.data.filter((m) => m.seq !== undefined));
    if (page.next === 0) return items;
    offset = page.offset;
  }
}

for (const balancer of [{ name: 'nginx', start: startNginx, bin: NGINX }, { name: 'HAProxy', start: startHaproxy, bin: HAPROXY }]) {
  describe(`two nodes behind ${balancer.name}`, { timeout: 180000 }, () => {
    let cluster;
    let lb;
    let url;
    let sources;

    before(async () => {
      assert.ok(fs.existsSync(balancer.bin), `${balancer.bin} missing (apt-get install nginx-light haproxy)`);
      cluster = await h.startCluster({ nodes: 2, dev: true });
      lb = await balancer.start(cluster.nodes.map((n) => n.port));
      url = `http://127.0.0.1:${lb.port}`;
      sources = await splitSources(cluster, url);
    });

    after(async () => {
      await stopBalancer(lb);
      if (cluster) await cluster.stop();
    });

    for (const gen of [2, 4]) {
      for (const mode of ['websocket', 'default']) {
        it(`socket.io-client ${gen}.x, ${mode} transports: msgs across the nodes`, async () => {
          const room = `lb-${gen}-${mode}-${Date.now()}`;
          const a = client(gen, mode, url, sources[0]);
          const b = client(gen, mode, url, sources[1]);
          try {
            await enter(a, `a-${room}`, room);
            await enter(b, `b-${room}`, room);
            assert.deepEqual(
              [nodeOfUid(cluster, `a-${room}`), nodeOfUid(cluster, `b-${room}`)],
              [0, 1],
              'one client on each node',
            );
            const got = [];
            b.on('msg', (m) => got.push(m.data.i));
            await sendAcked(a, 'across', 5);
            const deadline = Date.now() + 5000;
            while (got.length < 5 && Date.now() < deadline) await h.delay(20);
            assert.deepEqual(got, [0, 1, 2, 3, 4]);
            if (mode === 'default') {
              const deadline2 = Date.now() + 5000;
              while (a.io.engine.transport.name !== 'websocket' && Date.now() < deadline2) await h.delay(50);
              assert.equal(a.io.engine.transport.name, 'websocket', 'upgraded through the balancer');
            }
          } finally {
            a.close();
            b.close();
          }
        });
      }
    }

    it('a killed node: its client reconnects through the balancer to the other, and sync returns every acked msg', async () => {
      const room = `lb-kill-${Date.now()}`;
      const a = client(4, 'default', url, sources[0]);
      const b = client(2, 'default', url, sources[1]);
      try {
        await enter(a, `ka-${room}`, room);
        await enter(b, `kb-${room}`, room);
        const acked = [...(await sendAcked(a, 'a', 10)), ...(await sendAcked(b, 'b', 10))];
        const node = nodeOf(cluster, sidOf(a));
        assert.equal(node, 0);
        const reconnected = once(a, 'connect', 30000);
        cluster.nodes[0].child.kill('SIGKILL');
        await reconnected;
        await enter(a, `ka-${room}`, room);
        assert.equal(nodeOf(cluster, sidOf(a)), 1, 'back on the other node');
        acked.push(...(await sendAcked(a, 'after', 3)));
        const items = await syncAll(a);
        const seqs = items.map((m) => m.seq);
        for (const seq of acked) assert.ok(seqs.includes(seq), `acked seq ${seq} in sync`);
        assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'in seq order');
      } finally {
        a.close();
        b.close();
      }
    });
  });
}
