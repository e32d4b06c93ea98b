'use strict';
// A page served from another origin (another port) than the server connects
// in headless Chromium with the real socket.io-client browser bundles, 2.x
// and 4.x, on the default transports (polling, then the upgrade), polling
// only and websocket only: it authenticates, joins and exchanges msgs. The
// long-polling requests are cross-origin XHRs, so they work only if the
// server answers CORS as socket.io 2.x did (the origin mirrored, with
// credentials; preflights answered).

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const h = require('./harness');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const BUNDLES = {
  2: path.join(__dirname, 'node_modules/sio2/dist/socket.io.js'),
  4: path.join(__dirname, 'node_modules/sio4/dist/socket.io.min.js'),
};

/** Serves a blank page and the client bundles on a port of its own. */
function startPageServer() {
  const server = http.createServer((req, res) => {
    const m = /^\/sio([24])\.js$/.exec(req.url);
    if (m) {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      res.end(fs.readFileSync(BUNDLES[m[1]]));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>another origin</title>');
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/**
 * Runs in the page: two clients of generation `gen` on `transports` (none:
 * the client's default) authenticate, join one room and send each other a
 * msg. Resolves with what each received and the transport each ended on.
 */
function exchange({ url, gen, transports, uid, room, opts }) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out: ${log.join(' | ')}`)), 15000);
    const log = [];
    const make = (name) => {
      const o = { forceNew: true, reconnection: false, ...opts };
      if (transports) o.transports = transports;
      const s = window.io(url, o);
      s.on('connect_error', (e) => log.push(`${name} connect_error ${e && e.message}`));
      s.on('error', (e) => log.push(`${name} error ${e}`));
      return s;
    };
    const join = (s, name) =>
      new Promise((done) => {
        s.on('connect', () => s.emit('authenticate', { uid: `${uid}-${name}`, token: 'dev' }));
        s.on('authenticate', (r) => {
          log.push(`${name} auth ${r.status}`);
          if (r.status === 0) s.emit('join', { roomId: room });
        });
        s.on('join', (r) => {
          log.push(`${name} join ${r.status}`);
          if (r.status === 0) done();
        });
      });
    const a = make('a');
    const b = make('b');
    const got = { a: [], b: [] };
    a.on('msg', (m) => got.a.push(m.data));
    b.on('msg', (m) => got.b.push(m.data));
    Promise.all([join(a, 'a'), join(b, 'b')]).then(() => {
      a.emit('msg', { data: 'from a', s: 0 });
      b.emit('msg', { data: 'from b', s: 2 });
      const check = setInterval(() => {
        const upgraded = !transports
          ? a.io.engine.transport.name === 'websocket' && b.io.engine.transport.name === 'websocket'
          : true;
        if (got.a.length && got.b.length && upgraded) {
          clearInterval(check);
          clearTimeout(timer);
          const result = {
            a: got.a,
            b: got.b,
            transport: [a.io.engine.transport.name, b.io.engine.transport.name],
          };
          a.close();
          b.close();
          resolve(result);
        }
      }, 50);
    });
  });
}

describe('a page from another origin in Chromium', { timeout: 120000 }, () => {
  let server;
  let pages;
  let pageUrl;
  let browser;
  const cases = [];
  for (const gen of [2, 4]) {
    for (const transports of [null, ['polling'], ['websocket']]) {
      cases.push({ gen, transports, opts: {} });
    }
  }
  // 4.x with credentials and a header that makes every request preflighted.
  cases.push({ gen: 4, transports: ['polling'], opts: { withCredentials: true, extraHeaders: { 'x-app': '1' } } });

  before(async () => {
    assert.ok(fs.existsSync(CHROMIUM), `Chromium missing: ${CHROMIUM}`);
    server = await h.startServer({ dev: true });
    pages = await startPageServer();
    pageUrl = `http://127.0.0.1:${pages.address().port}/`;
    assert.notEqual(new URL(pageUrl).origin, new URL(server.url).origin);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  after(async () => {
    if (browser) await browser.close();
    if (pages) pages.close();
    if (server) await server.stop();
  });

  for (const c of cases) {
    const mode = c.transports ? c.transports.join('+') : 'default transports';
    const extra = Object.keys(c.opts).length ? ', credentials and a preflighted header' : '';
    it(`socket.io-client ${c.gen}.x, ${mode}${extra}`, async () => {
      const page = await browser.newPage();
      const problems = [];
      page.on('pageerror', (e) => problems.push(String(e)));
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(m.text());
      });
      try {
        await page.goto(pageUrl);
        await page.addScriptTag({ url: `${pageUrl}sio${c.gen}.js` });
        const result = await page.evaluate(exchange, {
          url: server.url,
          gen: c.gen,
          transports: c.transports,
          uid: `x${c.gen}-${Math.random().toString(36).slice(2, 8)}`,
          room: `cross-${c.gen}-${Date.now()}`,
          opts: c.opts,
        });
        assert.deepEqual(result.a, ['from b']);
        assert.deepEqual(result.b, ['from a']);
        const expected = c.transports ? c.transports[c.transports.length - 1] : 'websocket';
        assert.deepEqual(result.transport, [expected, expected]);
        assert.deepEqual(problems, [], 'no CORS or page errors');
      } finally {
        await page.close();
      }
    });
  }
});
