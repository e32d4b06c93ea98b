'use strict';
// TLS in the server (AO_TLS_CERT, AO_TLS_KEY): socket.io-client 4.x over
// wss:// and https:// long-polling, and 2.x over wss:// and https://
// long-polling, each trusting only a CA this test makes with the openssl
// command (the `ca` option); a client that does not trust it cannot connect.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const h = require('./harness');

/** A CA and a certificate for 127.0.0.1 and localhost it signed, as PEM files in `dir`. */
function makeCertificates(dir) {
  const f = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1',
    '-subj', '/CN=always-online test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  openssl('req', ...ec, '-keyout', f('key.pem'), '-out', f('leaf.csr'), '-subj', '/CN=localhost');
  fs.writeFileSync(
    f('leaf.ext'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' +
      'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n',
  );
  openssl('x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
    '-CAcreateserial', '-days', '1', '-extfile', f('leaf.ext'), '-out', f('cert.pem'));
  return { ca: f('ca.pem'), cert: f('cert.pem'), key: f('key.pem') };
}

describe('TLS in the server', { timeout: 60000 }, () => {
  let dir;
  let server;
  let pool;
  let ca;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ao-tls-'));
    const files = makeCertificates(dir);
    ca = fs.readFileSync(files.ca);
    server = await h.startServer({ env: { AO_TLS_CERT: files.cert, AO_TLS_KEY: files.key } });
    // Every client of the pool connects over TLS.
    server.url = `https://127.0.0.1:${server.port}`;
    pool = new h.Pool(server);
  });

  afterEach(() => pool.closeAll());

  after(async () => {
    if (pool) pool.closeAll();
    if (server) await server.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const cases = [
    [4, 'websocket', 'wss://'],
    [4, 'polling', 'https:// long-polling'],
    [2, 'websocket', 'wss://'],
    [2, 'polling', 'https:// long-polling'],
  ];
  for (const [gen, mode, what] of cases) {
    it(`socket.io-client ${gen}.x over ${what}`, async () => {
      const room = `tls-${gen}-${mode}`;
      const opts = { opts: { ca } };
      const a = await pool.member(gen, mode, `tls-a-${gen}-${mode}`, room, opts);
      const b = await pool.member(gen, mode, `tls-b-${gen}-${mode}`, room, opts);
      assert.equal(a.transport, mode);
      assert.deepEqual(await a.next('remote_join'), { uid: b.uid });
      const ack = await a.emitAck('msg', { data: 'over tls', s: 0 });
      assert.equal(ack.status, 0, JSON.stringify(ack));
      const got = await b.next('msg');
      assert.equal(got.data, 'over tls');
      assert.equal(got.seq, ack.seq);
    });
  }

  it('a client that does not trust the certificate does not connect', async () => {
    for (const gen of [2, 4]) {
      const c = pool.raw(gen, 'websocket', { reconnection: false });
      const e = await c.nextEntry('connect_error');
      assert.ok(e, `sio${gen}: connect_error`);
      assert.equal(c.socket.connected, false);
    }
  });
});
