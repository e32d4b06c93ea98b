'use strict';
// always-online-client: the client side of the Always Online protocol
// (docs/PROTOCOL.md). It drives a socket.io socket that the app created
// (socket.io-client 2.x/4.x, weapp.socket.io) through authenticate → join →
// sync, and turns the room's traffic into an exactly-once, in-order stream
// of messages that survives reconnects:
//
//  - every stored insert carries a per-room `seq`; `lastSeq` is the highest
//    seq up to which everything was processed, without holes;
//  - live inserts are delivered in seq order: a seq above lastSeq + 1 waits
//    for the missing ones (briefly, then a sync fills the hole); a seq at or
//    below lastSeq is a duplicate (of a synced page) and is dropped;
//  - live inserts that arrive while a sync is running wait for its end;
//  - every (re)connect re-authenticates, re-joins and syncs from
//    lastSeq + 1 — or from 0 after the sync reply's `epoch` changed, with a
//    'reset' event first;
//  - send() adds a client id `_cid` to the msg; a retried msg that was in
//    fact stored twice is delivered once (receivers drop a _cid they have
//    already delivered);
//  - updates (s: 1) are delivered when they differ from the last delivered
//    version of their msgId.

const STATES = ['connecting', 'authenticating', 'joining', 'syncing', 'live', 'closed'];

const DEFAULTS = {
  ackTimeoutMs: 5000,
  retries: 3,
  gapWaitMs: 300,
  reconnectDelayMs: 1000,
  rememberIds: 10000,
};

const STORAGE = { insert: 0, update: 1, ignore: 2 };

// ---------------------------------------------------------------- helpers

/** A tiny event emitter (no dependency on Node's `events`). */
class Emitter {
  constructor() {
    this._listeners = Object.create(null);
  }

  on(event, fn) {
    (this._listeners[event] || (this._listeners[event] = [])).push(fn);
    return this;
  }

  once(event, fn) {
    const wrapped = (...args) => {
      this.off(event, wrapped);
      fn.apply(this, args);
    };
    wrapped.listener = fn;
    return this.on(event, wrapped);
  }

  off(event, fn) {
    if (event === undefined) {
      this._listeners = Object.create(null);
      return this;
    }
    const list = this._listeners[event];
    if (!list) return this;
    if (fn === undefined) {
      delete this._listeners[event];
      return this;
    }
    this._listeners[event] = list.filter((l) => l !== fn && l.listener !== fn);
    return this;
  }

  listenerCount(event) {
    const list = this._listeners[event];
    return list ? list.length : 0;
  }

  /** Calls every listener; a throwing listener never breaks the room's bookkeeping. */
  emit(event, ...args) {
    const list = this._listeners[event];
    if (!list || list.length === 0) return false;
    for (const fn of list.slice()) {
      try {
        fn.apply(this, args);
      } catch (err) {
        if (event !== 'error' && this.listenerCount('error') > 0) {
          this.emit('error', err);
        } else {
          setTimeout(() => {
            throw err;
          }, 0);
        }
      }
    }
    return true;
  }
}

/** A Set that forgets its oldest entries beyond `max`. */
class BoundedSet {
  constructor(max) {
    this.max = max;
    this.set = new Set();
  }

  has(v) {
    return this.set.has(v);
  }

  add(v) {
    if (this.set.has(v)) return;
    this.set.add(v);
    if (this.set.size > this.max) {
      const oldest = this.set.values().next().value;
      this.set.delete(oldest);
    }
  }

  clear() {
    this.set.clear();
  }
}

/** A Map that forgets its oldest entries beyond `max`. */
class BoundedMap {
  constructor(max) {
    this.max = max;
    this.map = new Map();
  }

  get(k) {
    return this.map.get(k);
  }

  set(k, v) {
    this.map.delete(k);
    this.map.set(k, v);
    if (this.map.size > this.max) {
      const oldest = this.map.keys().next().value;
      this.map.delete(oldest);
    }
  }

  clear() {
    this.map.clear();
  }
}

/** 32-bit FNV-1a of a string: a cheap fingerprint of a message. */
function fingerprint(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return `${s.length}:${h >>> 0}`;
}

let cidCounter = 0;
/** A client message id, unique enough across devices and restarts. */
function newCid() {
  cidCounter = (cidCounter + 1) % 1679616;
  return (
    Date.now().toString(36) +
    Math.random().toString(36).slice(2, 10) +
    cidCounter.toString(36)
  );
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = (() => {
  const t = new Int16Array(256).fill(-1);
  for (let i = 0; i < B64.length; i++) t[B64.charCodeAt(i)] = i;
  t['-'.charCodeAt(0)] = 62;
  t['_'.charCodeAt(0)] = 63;
  return t;
})();

/** base64 → bytes, in plain JS (works in browsers, Node and mini programs). */
function base64ToBytes(s) {
  const out = new Uint8Array(Math.floor((s.length * 3) / 4) + 3);
  let n = 0;
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const v = c < 256 ? B64_INDEX[c] : -1;
    if (v < 0) continue; // padding, whitespace
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  return out.subarray(0, n);
}

function utf8Decode(bytes) {
  if (typeof TextDecoder === 'function') return new TextDecoder('utf-8').decode(bytes);
  // Fallback for runtimes without TextDecoder (old mini-program base libraries).
  let s = '';
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i++];
    let cp;
    if (b < 0x80) cp = b;
    else if (b < 0xe0) cp = ((b & 0x1f) << 6) | (bytes[i++] & 0x3f);
    else if (b < 0xf0) cp = ((b & 0x0f) << 12) | ((bytes[i++] & 0x3f) << 6) | (bytes[i++] & 0x3f);
    else
      cp =
        ((b & 0x07) << 18) |
        ((bytes[i++] & 0x3f) << 12) |
        ((bytes[i++] & 0x3f) << 6) |
        (bytes[i++] & 0x3f);
    s += String.fromCodePoint(cp);
  }
  return s;
}

/** Node's zlib when this runs in Node (looked up at run time, invisible to bundlers). */
function nodeZlib() {
  try {
    if (
      typeof process !== 'undefined' &&
      process.versions &&
      process.versions.node &&
      typeof module !== 'undefined' &&
      typeof module.require === 'function'
    ) {
      return module.require('zlib');
    }
  } catch (_) {
    // not Node
  }
  return null;
}

/** gunzip with Node's zlib: bytes → string. */
function gunzipZlib(bytes) {
  const zlib = nodeZlib();
  return new Promise((resolve, reject) => {
    zlib.gunzip(bytes, (err, out) => (err ? reject(err) : resolve(out.toString('utf8'))));
  });
}

/** gunzip with the web's DecompressionStream: bytes → string. */
async function gunzipStream(bytes) {
  const ds = new DecompressionStream('gzip');
  const writer = ds.writable.getWriter();
  // Not awaited before reading: a large input would wait for a reader forever.
  writer.write(bytes).catch(() => {});
  writer.close().catch(() => {});
  const reader = ds.readable.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.length;
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return utf8Decode(all);
}

/**
 * The gunzip function to use: `option` may be a function (bytes → string or
 * bytes, maybe async), 'zlib' or 'stream'; by default Node's zlib when
 * available, else DecompressionStream, else null (no gzip).
 */
function pickGunzip(option) {
  if (typeof option === 'function') {
    return async (bytes) => {
      const out = await option(bytes);
      return typeof out === 'string' ? out : utf8Decode(out);
    };
  }
  if (option === 'zlib') return nodeZlib() ? gunzipZlib : null;
  if (option === 'stream') return typeof DecompressionStream === 'function' ? gunzipStream : null;
  if (nodeZlib()) return gunzipZlib;
  if (typeof DecompressionStream === 'function') return gunzipStream;
  return null;
}

function storageOf(m) {
  const s = m.s !== undefined ? m.s : m.storage;
  const n = Number(s);
  return n === 1 || n === 2 ? n : 0;
}

function msgIdOf(m) {
  return m['1'] !== undefined ? m['1'] : m.msgId;
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Whether `socket` is a socket.io-client 3+/4 socket (protocol 5), which
 * sends `socket.auth` in its connect packet; 2.x (and weapp.socket.io)
 * sockets do not.
 */
function speaksSocketIo3(socket) {
  return typeof socket.timeout === 'function' || 'recovered' in socket || '_opts' in socket;
}

class AckError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'AckError';
    this.status = status;
  }
}

// ---------------------------------------------------------------- the room

class Room extends Emitter {
  constructor(socket, options) {
    super();
    if (!socket || typeof socket.on !== 'function' || typeof socket.emit !== 'function') {
      throw new TypeError('createRoom: a socket.io socket is required');
    }
    const o = { ...DEFAULTS, ...(options || {}) };
    if (o.uid === undefined || o.uid === null || o.uid === '') {
      throw new TypeError('createRoom: uid is required');
    }
    if (o.roomId === undefined || o.roomId === null || o.roomId === '' || o.roomId === 0) {
      throw new TypeError('createRoom: roomId is required');
    }
    this.socket = socket;
    this.options = o;
    // socket.io-client 3+/4 sends credentials with the connect itself
    // (docs/PROTOCOL.md Part 2): `socket.auth` goes with every
    // (re)connect made from now on; a socket connected already logs in
    // with the authenticate event this time.
    this._authAtConnect =
      o.authAtConnect !== undefined ? !!o.authAtConnect : speaksSocketIo3(socket);
    this._connectCarriesAuth = false;
    if (this._authAtConnect) {
      const auth = socket.auth && typeof socket.auth === 'object' ? socket.auth : {};
      socket.auth = { ...auth, uid: o.uid, token: o.token };
      this._connectCarriesAuth = !socket.connected;
    }
    this.uid = o.uid;
    this.roomId = o.roomId;
    this.dummy = !!o.dummy;
    this.gunzip = o.gzip ? pickGunzip(o.gunzip) : null;

    /** One of STATES. */
    this.state = null;
    /** Highest seq processed without holes (-1: none). */
    this.lastSeq = -1;
    /** The history epoch of the last sync reply (null: none yet). */
    this.epoch = null;
    /** Counters, for diagnostics and tests. */
    this.stats = { delivered: 0, duplicates: 0, syncPages: 0, resets: 0, resyncs: 0 };

    this._phase = 'connecting'; // connecting | authenticating | joining | joined | closed
    this._closed = false;
    this._stopReconnect = false;
    this._syncing = false;
    this._syncGen = 0;
    this._syncOffset = 0;
    this._resetPending = false;
    this._pending = new Map(); // seq → live insert waiting for its turn
    this._ownSeqs = new Set(); // seqs of our own acked inserts (never relayed back to us)
    this._heldUpdates = []; // live updates received while syncing
    this._syncedUpdates = new Map(); // msgId key → JSON of the update in the last sync page
    this._gapTimer = null;
    this._reconnectTimer = null;
    this._cids = new BoundedSet(o.rememberIds);
    this._recent = new BoundedMap(o.rememberIds); // seq → fingerprint of delivered inserts
    this._updates = new Map(); // msgId key → JSON of the last delivered version
    this._outbox = []; // sends waiting for a joined connection
    this._inflight = new Set();

    this._handlers = {
      connect: () => this._onConnect(),
      connect_error: (err) => this._onConnectError(err),
      disconnect: (reason) => this._onDisconnect(reason),
      authenticate: (r) => this._onAuthenticate(r),
      join: (r) => this._onJoin(r),
      sync: (r) => this._onSync(r),
      msg: (m) => this._onLiveMsg(m),
      remote_join: (p) => this._presence('join', p),
      remote_leave: (p) => this._presence('leave', p),
      remote_disconnect: (p) => this._presence('disconnect', p),
      remote_sync: (p) => this._presence('sync', p),
      system: (content) => this.emit('system', content),
      kickout: (p) => this._onKickout(p),
    };
    for (const [event, fn] of Object.entries(this._handlers)) socket.on(event, fn);

    // Listeners are attached by the caller after createRoom returns: announce
    // the first state, and start on an already connected socket, on the next tick.
    this.state = 'connecting';
    setTimeout(() => {
      if (this._closed || this._phase !== 'connecting') return;
      this.emit('state', 'connecting');
      if (this.socket.connected) this._onConnect();
    }, 0);
  }

  // ------------------------------------------------------------ public API

  /**
   * Sends `data` to the room. Resolves `{seq}` (inserts) or `{}` once the
   * server acknowledged it; rejects with the server's reason.
   */
  send(data, opts) {
    const o = opts || {};
    if (this._closed) return Promise.reject(new Error('room closed'));
    if (this.dummy) return Promise.reject(new AckError('dummy clients cannot send', 3));
    const storage =
      typeof o.storage === 'number' ? o.storage : STORAGE[o.storage === undefined ? 'insert' : o.storage];
    if (storage !== 0 && storage !== 1 && storage !== 2) {
      return Promise.reject(new TypeError(`unknown storage ${o.storage}`));
    }
    const msgId = o.msgId;
    if (storage === 1 && (msgId === undefined || msgId === null || msgId === '')) {
      return Promise.reject(new TypeError('an update needs a msgId'));
    }
    const cid = o.cid || newCid();
    const payload = { data, s: storage };
    if (msgId !== undefined && msgId !== null) payload['1'] = msgId;
    payload._cid = cid;
    // Our own msgs are not relayed back to us; when they come back in a sync, they are known.
    this._cids.add(cid);
    return new Promise((resolve, reject) => {
      const job = {
        payload,
        storage,
        triesLeft: Math.max(0, Number(this.options.retries) || 0),
        resolve,
        reject,
        timer: null,
        attempt: 0,
        settled: false,
      };
      this._outbox.push(job);
      this._flushOutbox();
    });
  }

  /** Leaves the room (the others get remote_leave) and closes. */
  leave() {
    if (this._closed) return;
    if (this.socket.connected && this._phase === 'joined') this.socket.emit('leave', {});
    this._finish('left');
  }

  /** Stops: detaches from the socket, disconnects it, rejects pending sends. */
  close() {
    if (this._closed) return;
    this._finish('closed');
    try {
      this.socket.disconnect();
    } catch (_) {
      // already closed
    }
  }

  // ------------------------------------------------------------ lifecycle

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit('state', s);
  }

  _onConnect() {
    if (this._closed) return;
    clearTimeout(this._reconnectTimer);
    this._phase = 'authenticating';
    this._setState('authenticating');
    // With credentials in the connect, the server's authenticate reply
    // follows the connect by itself.
    if (!this._connectCarriesAuth) {
      this.socket.emit('authenticate', { uid: this.uid, token: this.options.token });
    }
    this._connectCarriesAuth = this._authAtConnect;
  }

  /** A connect refused by the server (credentials in the connect). */
  _onConnectError(err) {
    if (this._closed) return;
    const d = err && err.data;
    if (!d || typeof d !== 'object' || d.status === undefined) return; // a transport error: socket.io retries
    this._stopReconnect = true;
    this._fail(new AckError(d.data ? String(d.data) : String(err.message), d.status));
  }

  _onAuthenticate(r) {
    if (this._closed || this._phase !== 'authenticating') return;
    if (r && r.status === 0) {
      this._phase = 'joining';
      this._setState('joining');
      const join = { roomId: this.roomId };
      if (this.dummy) join.dummy = true;
      this.socket.emit('join', join);
    } else {
      // The server disconnects right after a failed authenticate.
      this._stopReconnect = true;
      const reason = r && r.data ? String(r.data) : 'auth failed';
      this._fail(new AckError(reason, r && r.status));
    }
  }

  _onJoin(r) {
    if (this._closed || this._phase !== 'joining') return;
    if (r && r.status === 0) {
      this._phase = 'joined';
      this._flushOutbox();
      this._startSync();
    } else {
      this._stopReconnect = true;
      this._fail(new AckError(r && r.data ? String(r.data) : 'join failed', r && r.status));
      try {
        this.socket.disconnect();
      } catch (_) {
        // ignore
      }
    }
  }

  _onDisconnect(reason) {
    if (this._closed) return;
    this._phase = 'connecting';
    this._syncing = false;
    this._syncGen++;
    this._heldUpdates = [];
    clearTimeout(this._gapTimer);
    this._gapTimer = null;
    // Sends whose ack is now lost go out again (same _cid) after the next join.
    for (const job of this._inflight) {
      clearTimeout(job.timer);
      job.timer = null;
      this._outbox.unshift(job);
    }
    this._inflight.clear();
    this._setState('connecting');
    if (this._stopReconnect) {
      this._finish('closed');
      return;
    }
    // socket.io does not reconnect after a server-side disconnect (e.g. a
    // server shutting down): ask it to, after a pause.
    if (reason === 'io server disconnect') {
      this._reconnectTimer = setTimeout(() => {
        if (!this._closed && !this.socket.connected) this.socket.connect();
      }, this.options.reconnectDelayMs);
    }
  }

  _onKickout(payload) {
    if (this._closed) return;
    this._stopReconnect = true;
    this.emit('kickout', payload);
    this._finish('closed');
  }

  _presence(type, p) {
    if (this._closed) return;
    this.emit('presence', { type, uid: p && p.uid });
  }

  _fail(err) {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this._finish('closed', err);
  }

  _finish(why, err) {
    if (this._closed) return;
    this._closed = true;
    this._phase = 'closed';
    this._syncing = false;
    this._syncGen++;
    clearTimeout(this._gapTimer);
    clearTimeout(this._reconnectTimer);
    for (const [event, fn] of Object.entries(this._handlers)) {
      if (typeof this.socket.off === 'function') this.socket.off(event, fn);
      else if (typeof this.socket.removeListener === 'function') this.socket.removeListener(event, fn);
    }
    const error = err || new Error(`room ${why}`);
    for (const job of [...this._inflight, ...this._outbox]) {
      clearTimeout(job.timer);
      job.reject(error);
    }
    this._inflight.clear();
    this._outbox = [];
    this._setState('closed');
  }

  // ------------------------------------------------------------ sending

  _flushOutbox() {
    if (this._closed || this._phase !== 'joined' || !this.socket.connected) return;
    const jobs = this._outbox;
    this._outbox = [];
    for (const job of jobs) if (!job.settled) this._emitJob(job);
  }

  _emitJob(job) {
    this._inflight.add(job);
    const attempt = ++job.attempt;
    job.timer = setTimeout(() => {
      if (job.settled || job.attempt !== attempt || !this._inflight.has(job)) return;
      this._inflight.delete(job);
      if (job.triesLeft <= 0) {
        job.settled = true;
        job.reject(new AckError('ack timeout', -1));
        return;
      }
      job.triesLeft--;
      this._outbox.push(job);
      this._flushOutbox();
    }, this.options.ackTimeoutMs);
    this.socket.emit('msg', job.payload, (ack) => {
      // Any attempt's ack settles the send, even one that came after its timeout.
      if (job.settled || this._closed) return;
      job.settled = true;
      clearTimeout(job.timer);
      this._inflight.delete(job);
      const i = this._outbox.indexOf(job);
      if (i >= 0) this._outbox.splice(i, 1);
      if (ack && ack.status === 0) {
        if (typeof ack.seq === 'number') {
          this._ownSeqs.add(ack.seq);
          this._drain();
          job.resolve({ seq: ack.seq });
        } else {
          job.resolve({});
        }
      } else {
        const reason = ack && ack.data !== undefined ? String(ack.data) : 'refused';
        job.reject(new AckError(reason, ack ? ack.status : undefined));
      }
    });
  }

  // ------------------------------------------------------------ syncing

  _startSync() {
    if (this._closed || this._phase !== 'joined') return;
    clearTimeout(this._gapTimer);
    this._gapTimer = null;
    this._syncing = true;
    this._syncedUpdates = new Map();
    this._setState('syncing');
    this._requestPage(this._resetPending ? 0 : this.lastSeq + 1);
  }

  _requestPage(offset) {
    const gen = ++this._syncGen;
    this._syncOffset = offset;
    const req = { offset };
    if (this.gunzip) req.encoding = 'gzip';
    // The page comes back as a `sync` event; the ack only carries failures.
    this.socket.emit('sync', req, (ack) => {
      if (gen !== this._syncGen || !ack || ack.status === 0) return;
      setTimeout(() => {
        if (gen === this._syncGen && this._syncing) this._requestPage(offset);
      }, this.options.reconnectDelayMs);
    });
  }

  async _onSync(reply) {
    if (this._closed || !this._syncing || !isObject(reply)) return;
    const gen = this._syncGen;
    const offset = this._syncOffset;
    let items = reply.data;
    if (reply.encoding === 'gzip' || typeof items === 'string') {
      try {
        if (!this.gunzip) throw new Error('gzip page without a gunzip');
        items = JSON.parse(await this.gunzip(base64ToBytes(String(items))));
      } catch (err) {
        if (gen !== this._syncGen) return;
        this.emit('error', err);
        this._requestPage(offset);
        return;
      }
      if (gen !== this._syncGen || this._closed) return; // disconnected meanwhile
    }
    if (!Array.isArray(items)) items = [];
    this.stats.syncPages++;

    const epoch = reply.epoch === undefined ? null : String(reply.epoch);
    if (epoch !== null && this.epoch !== null && epoch !== this.epoch) {
      this._reset(epoch);
      if (offset !== 0) {
        this._requestPage(0);
        return;
      }
    }
    if (epoch !== null) this.epoch = epoch;
    this._resetPending = false;

    const last = !reply.next;
    let pos = offset;
    for (const m of items) {
      if (!isObject(m)) continue;
      if (storageOf(m) === 1) {
        if (!last) continue;
        this._syncedUpdates.set(String(msgIdOf(m)), JSON.stringify(m));
        this._deliverUpdate(m, false);
        continue;
      }
      const seq = typeof m.seq === 'number' ? m.seq : pos;
      pos = seq + 1;
      if (seq <= this.lastSeq) {
        this.stats.duplicates++;
        continue;
      }
      this._deliverInsert(m, seq, false);
    }
    if (!last) {
      const next = typeof reply.offset === 'number' ? reply.offset : pos;
      this._requestPage(Math.max(next, this.lastSeq + 1));
      return;
    }
    this._syncing = false;
    this._syncGen++;
    // Updates relayed while syncing: skip those the page already had (or older).
    const held = this._heldUpdates;
    this._heldUpdates = [];
    const skipUntil = new Map();
    held.forEach((m, i) => {
      const key = String(msgIdOf(m));
      if (this._syncedUpdates.get(key) === JSON.stringify(m)) skipUntil.set(key, i);
    });
    held.forEach((m, i) => {
      const until = skipUntil.get(String(msgIdOf(m)));
      if (until === undefined || i > until) this._deliverUpdate(m, true);
    });
    this._syncedUpdates = new Map();
    this._setState('live');
    this._drain();
  }

  _reset(epoch) {
    this.stats.resets++;
    this.epoch = epoch;
    this.lastSeq = -1;
    this._pending.clear();
    this._ownSeqs.clear();
    this._heldUpdates = [];
    this._cids.clear();
    this._recent.clear();
    this._updates.clear();
    this._resetPending = true;
    this.emit('reset', { epoch });
  }

  // ------------------------------------------------------------ live traffic

  _onLiveMsg(m) {
    if (this._closed || this._phase !== 'joined' || !isObject(m)) return;
    const storage = storageOf(m);
    if (storage === 1) {
      if (this._syncing) this._heldUpdates.push(m);
      else this._deliverUpdate(m, true);
      return;
    }
    if (typeof m.seq !== 'number') {
      // ignore (s: 2), or an insert from a server without seq: deliver as it comes.
      if (m._cid !== undefined && this._cids.has(m._cid)) {
        this.stats.duplicates++;
        return;
      }
      if (m._cid !== undefined) this._cids.add(m._cid);
      this.stats.delivered++;
      this.emit('message', m, this._meta(m, undefined, true));
      return;
    }
    const seq = m.seq;
    if (seq <= this.lastSeq) {
      if (this._syncing || this._recent.get(seq) === fingerprint(JSON.stringify(m))) {
        // Already delivered from a sync page (or the running sync will cover it).
        this.stats.duplicates++;
        return;
      }
      // A seq we have seen, with other content: the history was probably
      // cleared (new epoch). A sync tells.
      this.stats.duplicates++;
      this.stats.resyncs++;
      this._startSync();
      return;
    }
    this._pending.set(seq, m);
    if (!this._syncing) this._drain();
  }

  /** Delivers pending live inserts in seq order; waits (then syncs) on a hole. */
  _drain() {
    if (this._closed || this._syncing) return;
    for (const seq of this._pending.keys()) {
      if (seq <= this.lastSeq) {
        this._pending.delete(seq);
        this.stats.duplicates++;
      }
    }
    for (const seq of this._ownSeqs) if (seq <= this.lastSeq) this._ownSeqs.delete(seq);
    for (;;) {
      const want = this.lastSeq + 1;
      if (this._pending.has(want)) {
        const m = this._pending.get(want);
        this._pending.delete(want);
        this._deliverInsert(m, want, true);
      } else if (this._ownSeqs.has(want)) {
        this._ownSeqs.delete(want);
        this.lastSeq = want;
      } else {
        break;
      }
    }
    if (this._pending.size === 0) {
      clearTimeout(this._gapTimer);
      this._gapTimer = null;
    } else if (!this._gapTimer && this._phase === 'joined') {
      this._gapTimer = setTimeout(() => {
        this._gapTimer = null;
        if (this._closed || this._syncing || this._pending.size === 0) return;
        this.stats.resyncs++;
        this._startSync();
      }, this.options.gapWaitMs);
    }
  }

  _deliverInsert(m, seq, live) {
    this.lastSeq = seq;
    if (m._cid !== undefined) {
      if (this._cids.has(m._cid)) {
        this.stats.duplicates++;
        return;
      }
      this._cids.add(m._cid);
    }
    this._recent.set(seq, fingerprint(JSON.stringify(m)));
    this.stats.delivered++;
    this.emit('message', m, this._meta(m, seq, live));
  }

  _deliverUpdate(m, live) {
    const key = String(msgIdOf(m));
    const json = JSON.stringify(m);
    if (this._updates.get(key) === json) {
      this.stats.duplicates++;
      return;
    }
    this._updates.set(key, json);
    this.stats.delivered++;
    this.emit('message', m, this._meta(m, undefined, live));
  }

  _meta(m, seq, live) {
    return {
      seq,
      live,
      uid: m['2'],
      storage: ['insert', 'update', 'ignore'][storageOf(m)],
      msgId: msgIdOf(m),
      cid: m._cid,
    };
  }
}

/** Creates a room client on `socket`; see README.md. */
function createRoom(socket, options) {
  return new Room(socket, options);
}

module.exports = { createRoom, Room, AckError, STATES, _internal: { base64ToBytes, pickGunzip } };
