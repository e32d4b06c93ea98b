// Browser test of the web demo: two Chromium pages share a whiteboard and chat
// through a real always-online server.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const WEB = path.resolve(__dirname, '..');
const DIST = path.join(WEB, 'dist');
const ARTIFACTS = path.join(WEB, 'test-artifacts');
const BIN = process.env.AO_BIN || path.resolve(WEB, '../target/debug/always-online');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let server;
let baseUrl;
let context;
const tmpDirs = [];

function tmpDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.push(dir);
  return dir;
}

/** Starts the server on a free port and resolves with its base URL. */
function startServer() {
  server = spawn(
    BIN,
    ['--dev', '--listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0', '--data-dir', tmpDir('ao-web-data-')],
    { env: { ...process.env, AO_LOG_FORMAT: 'json', AO_WEB_DIR: DIST }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${buf}`)), 15000);
    server.on('exit', (code) => reject(new Error(`server exited (${code}):\n${buf}`)));
    server.stderr.on('data', (chunk) => {
      buf += chunk;
      // The first listening address logged is the main listener.
      const m = /"addr":"127\.0\.0\.1:(\d+)"/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(`http://127.0.0.1:${m[1]}`);
      }
    });
  });
}

before(async () => {
  if (!fs.existsSync(path.join(DIST, 'index.html')) || !fs.existsSync(path.join(DIST, 'demo.js'))) {
    const r = spawnSync('npm', ['run', 'build'], { cwd: WEB, stdio: 'inherit' });
    assert.equal(r.status, 0, 'npm run build failed');
  }
  assert.ok(fs.existsSync(BIN), `server binary missing: ${BIN} (cargo build)`);
  assert.ok(fs.existsSync(CHROMIUM), `Chromium missing: ${CHROMIUM}`);
  baseUrl = await startServer();
  context = await chromium.launchPersistentContext(tmpDir('ao-web-chromium-'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 760 },
    args: [
      '--headless',
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
  if (context) await context.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
  for (const dir of tmpDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** Opens the demo and logs in; resolves once the room is live. */
async function login(page, uid, room) {
  await page.bringToFront();
  await page.goto(baseUrl + '/');
  await page.fill('#login input[name=uid]', uid);
  assert.equal(await page.inputValue('#login input[name=token]'), 'dev');
  await page.fill('#login input[name=room]', room);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#state[data-state=live]');
}

const until = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: 10000 });

test('two pages share strokes, chat and presence; a reload syncs the history', { timeout: 60000 }, async () => {
  const room = `room-${Date.now()}`;
  const alice = await context.newPage();
  const bob = await context.newPage();
  const failed = [];
  for (const p of [alice, bob]) {
    // Everything must come from the server itself.
    p.on('request', (req) => {
      if (!req.url().startsWith(baseUrl) && !req.url().startsWith('ws://127.0.0.1')) failed.push(req.url());
    });
    p.on('pageerror', (err) => failed.push(String(err)));
  }

  await login(alice, 'alice', room);
  await login(bob, 'bob', room);

  // Presence: each page lists both users.
  for (const p of [alice, bob]) {
    await p.waitForSelector('#presence li[data-uid=alice]');
    await p.waitForSelector('#presence li[data-uid=bob]');
  }

  // Alice draws a stroke; it shows up on bob's board.
  // Input to a background tab waits for its (throttled) frames: focus it first.
  await alice.bringToFront();
  const box = await alice.locator('#board').boundingBox();
  await alice.mouse.move(box.x + 60, box.y + 150);
  await alice.mouse.down();
  for (let i = 1; i <= 20; i++) {
    await alice.mouse.move(box.x + 60 + i * 20, box.y + 150 + Math.round(60 * Math.sin(i / 3)));
  }
  await alice.mouse.up();
  await until(alice, () => window.demo.strokes.length === 1);
  await until(bob, () => window.demo.strokes.length === 1 && window.demo.strokes[0].uid === 'alice');
  const points = await bob.evaluate(() => window.demo.strokes[0].points.length);
  assert.ok(points >= 5, `stroke has ${points} points`);
  // The stroke is painted: a pixel on it is not transparent.
  const painted = await bob.evaluate(() => {
    const [x, y] = window.demo.strokes[0].points[3];
    return document.querySelector('#board').getContext('2d').getImageData(x, y, 1, 1).data[3];
  });
  assert.ok(painted > 0, 'stroke pixel painted on bob’s canvas');

  // Bob chats; alice sees it.
  await bob.bringToFront();
  await bob.fill('#chat-input', 'hello from bob');
  await bob.press('#chat-input', 'Enter');
  await alice.waitForSelector('#chat li:has-text("hello from bob")');
  assert.deepEqual(await alice.evaluate(() => window.demo.chat), [{ uid: 'bob', text: 'hello from bob' }]);

  // Bob reloads and logs in again: strokes and chat come back from history.
  await bob.reload();
  await bob.waitForSelector('#login:not([hidden])');
  await login(bob, 'bob', room);
  await until(bob, () => window.demo.strokes.length === 1 && window.demo.chat.length === 1);
  assert.equal(await bob.evaluate(() => window.demo.strokes[0].uid), 'alice');
  assert.deepEqual(await bob.evaluate(() => window.demo.chat[0]), { uid: 'bob', text: 'hello from bob' });
  await bob.waitForSelector('#chat li:has-text("hello from bob")');
  await bob.waitForSelector('#presence li[data-uid=alice]');
  await alice.waitForSelector('#presence li[data-uid=bob]');

  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const [name, page] of [['alice', alice], ['bob', bob]]) {
    const file = path.join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path: file });
    console.log(`screenshot: ${file}`);
  }
  assert.deepEqual(failed, [], 'no foreign requests and no page errors');
});
