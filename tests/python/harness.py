"""Test harness for the python-socketio client tests.

Starts an always-online server on free ports the way tests/clients/harness.js
does (AO_LOG_FORMAT=json, the port read from the "always-online listening" log
line, users made with `always-online user create`, SIGTERM to stop), and wraps
real python-socketio clients so tests can await the events they receive, in
order, and check that nothing else arrives.

Environment:
  AO_BIN             the server binary (default ../../target/debug/always-online)
  AO_PY_SIO_LINE     4 or 5: the python-socketio major version the venv must hold
  AO_TEST_VERBOSE=1  copy the server's log lines to stderr
"""

import base64
import gzip
import importlib.metadata
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import socketio

HERE = Path(__file__).resolve().parent
BIN = os.environ.get('AO_BIN') or str(HERE.parent.parent / 'target' / 'debug' / 'always-online')

SIO_VERSION = importlib.metadata.version('python-socketio')
EIO_VERSION = importlib.metadata.version('python-engineio')
SIO_LINE = int(SIO_VERSION.split('.')[0])
#: The engine.io protocol revision each python-socketio line speaks.
EXPECTED_EIO = {4: '3', 5: '4'}[SIO_LINE]

#: How long an awaited event may take (seconds).
EVENT_TIMEOUT = 5.0
#: How long "nothing arrives" is watched for (seconds).
QUIET = 0.3

SERVER_EVENTS = [
    'authenticate', 'join', 'msg', 'sync', 'remote_join', 'remote_leave',
    'remote_disconnect', 'remote_sync', 'kickout', 'system',
]
LIFECYCLE_EVENTS = ['connect', 'disconnect', 'connect_error']

_ADDR = re.compile(r'"addr":"127\.0\.0\.1:(\d+)"')


def _server_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith('AO_')}
    env['AO_LOG_FORMAT'] = 'json'
    env.update(extra)
    return env


class Server:
    """One always-online process with a fresh data dir."""

    def __init__(self, env=None):
        if not os.access(BIN, os.X_OK):
            raise RuntimeError(
                f'server binary not found at {BIN}: run `cargo build` in the '
                'repository root, or set AO_BIN')
        self.dir = tempfile.mkdtemp(prefix='ao-python-')
        self.tokens = {}
        self.lines = []
        self._listening = threading.Event()
        self.port = None
        self.proc = subprocess.Popen(
            [BIN, '--listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0',
             '--data-dir', self.dir],
            env=_server_env(env or {}), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Keep draining stderr for the whole run, or the server would block on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._listening.wait(15) or self.port is None:
            self.proc.kill()
            self.proc.wait()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError('server did not report listening within 15 s\n' + self.tail())
        self.url = f'http://127.0.0.1:{self.port}'

    def _drain(self):
        verbose = os.environ.get('AO_TEST_VERBOSE') == '1'
        for raw in self.proc.stderr:
            line = raw.decode('utf-8', 'replace').rstrip('\n')
            self.lines.append(line)
            if len(self.lines) > 2000:
                del self.lines[:1000]
            if verbose:
                print(f'[server] {line}', file=sys.stderr)
            if not self._listening.is_set() and 'always-online listening' in line:
                m = _ADDR.search(line)
                if m:
                    self.port = int(m.group(1))
                    self._listening.set()
        self._listening.set()  # exited: stop waiting

    def token(self, uid):
        """The token of user `uid`, created with the CLI on first use."""
        uid = str(uid)
        if uid not in self.tokens:
            out = subprocess.run(
                [BIN, 'user', 'create', uid, '--data-dir', self.dir],
                env=_server_env({}), capture_output=True, timeout=10, check=True)
            token = out.stdout.decode().strip()
            assert re.fullmatch(r'\S+', token), f'user create {uid} printed {out.stdout!r}'
            self.tokens[uid] = token
        return self.tokens[uid]

    def tail(self, n=30):
        return '\n'.join(self.lines[-n:])

    def stop(self):
        """SIGTERM, wait (SIGKILL after 8 s), remove the data dir.

        Returns how long the server took to exit (None if it had to be killed)."""
        took = 0.0
        if self.proc.poll() is None:
            start = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(8)
                took = time.monotonic() - start
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                took = None
        shutil.rmtree(self.dir, ignore_errors=True)
        return took


class Entry:
    __slots__ = ('event', 'args', 'data', 'index', 'taken')

    def __init__(self, event, args, index):
        self.event = event
        self.args = args
        self.data = args[0] if args else None
        self.index = index
        self.taken = False

    def __repr__(self):
        s = json.dumps(self.args, ensure_ascii=False, default=str)
        if len(s) > 160:
            s = f'{s[:160]}…({len(s)} chars)'
        return f'{self.event}{"" if self.taken else "*"} {s}'


class Client:
    """A real python-socketio client over one transport, recording what it receives."""

    def __init__(self, url, transport, label):
        self.label = label
        self.uid = None
        self.entries = []
        self.cond = threading.Condition()
        self.counter = 0
        # Reconnect fast if it ever happens, so "does not reconnect" is observable quickly.
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.1,
                                   reconnection_delay_max=0.2, randomization_factor=0)
        # python-socketio (4.x and 5.x alike) hands every incoming engine.io
        # message to a new thread, so an application may see two events in
        # the opposite order of their arrival. The server's order is what is
        # under test: hand them to one dispatcher thread instead, in order.
        self._inbox = queue.Queue()
        self._dispatcher = threading.Thread(target=self._dispatch, name=f'{label} dispatch', daemon=True)
        self._dispatcher.start()
        eio = self.sio.eio
        trigger = eio._trigger_event

        def ordered_trigger(event, *args, **kwargs):
            if event == 'message' and kwargs.get('run_async') and event in eio.handlers:
                self._inbox.put((eio.handlers[event], args))
                return None
            return trigger(event, *args, **kwargs)

        eio._trigger_event = ordered_trigger
        for ev in SERVER_EVENTS + LIFECYCLE_EVENTS:
            self.sio.on(ev, self._recorder(ev))
        kwargs = {'wait_timeout': EVENT_TIMEOUT} if SIO_LINE >= 5 else {}
        self.sio.connect(url, transports=[transport], **kwargs)
        # The polling URL of this engine.io session (with its sid), for close().
        self._poll_url = eio.base_url if transport == 'polling' else None

    def _dispatch(self):
        while True:
            item = self._inbox.get()
            if item is None:
                return
            handler, args = item
            try:
                handler(*args)
            except Exception:  # as the client's own dispatch does: log, go on
                self.sio.logger.exception('message handler error')

    def _recorder(self, event):
        def handler(*args):
            self._record(event, list(args))
        return handler

    def _record(self, event, args):
        with self.cond:
            self.entries.append(Entry(event, args, self.counter))
            self.counter += 1
            self.cond.notify_all()

    @property
    def transport(self):
        return self.sio.transport()

    @property
    def eio_query(self):
        """The EIO query parameter of the engine.io URL in use."""
        m = re.search(r'[?&]EIO=(\d+)', self.sio.eio.base_url or '')
        return m.group(1) if m else None

    def next_entry(self, event, timeout=EVENT_TIMEOUT):
        """The next not yet consumed `event`, in arrival order."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.entries:
                    if not e.taken and e.event == event:
                        e.taken = True
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.label}: no '{event}' within {timeout} s; received: {self.describe()}")
                self.cond.wait(left)

    def next(self, event, timeout=EVENT_TIMEOUT):
        """The payload of the next not yet consumed `event`."""
        return self.next_entry(event, timeout).data

    def check_none(self, *events):
        with self.cond:
            extra = [e for e in self.entries if not e.taken and e.event in events]
        assert not extra, f'{self.label}: expected no {"/".join(events)} but got {extra}'

    def expect_none(self, *events, quiet=QUIET):
        time.sleep(quiet)
        self.check_none(*events)

    def count(self, event):
        with self.cond:
            return sum(1 for e in self.entries if e.event == event)

    def describe(self):
        with self.cond:
            return ' | '.join(repr(e) for e in self.entries) or '(nothing)'

    def connected(self):
        """Waits for the socket.io connect event."""
        self.next_entry('connect')
        return self

    def emit(self, event, data):
        self.sio.emit(event, data)

    def call(self, event, data, timeout=EVENT_TIMEOUT):
        """Emits with an ack callback and returns the ack's payload."""
        try:
            return self.sio.call(event, data, timeout=timeout)
        except socketio.exceptions.TimeoutError:
            raise AssertionError(
                f"{self.label}: no ack for '{event}' within {timeout} s; received: {self.describe()}")

    def expect_server_disconnect(self):
        """The server closed the socket with a socket.io disconnect packet; the client stays closed."""
        entry = self.next_entry('disconnect')
        if SIO_LINE >= 5:
            # 5.x passes the reason: a socket.io disconnect packet from the server.
            assert entry.args == ['server disconnect'], f'{self.label}: disconnect reason {entry.args}'
        assert not self.sio.connected, f'{self.label}: still connected'
        # Reconnection is on with a 100 ms delay: a reconnecting client would show it now.
        self.expect_none('connect', 'connect_error')
        assert not self.sio.connected, f'{self.label}: reconnected'
        return entry

    def close(self):
        """Disconnects (if still connected) and waits until the client is fully down."""
        self.sio.reconnection = False
        # Let the dispatcher finish first: after a server-initiated disconnect,
        # 5.x closes its engine.io connection from there, and a concurrent
        # disconnect() could drop its engine.io close packet.
        self._inbox.put(None)
        self._dispatcher.join(1)
        if self._dispatcher.is_alive():  # stuck closing: see _send_engine_close
            self._send_engine_close()
            self._dispatcher.join(EVENT_TIMEOUT)
        try:
            self.sio.disconnect()
        except Exception:  # already gone
            pass
        task = getattr(self.sio.eio, 'read_loop_task', None)
        if task is not None:
            task.join(1)
            if task.is_alive():
                self._send_engine_close()
                task.join(EVENT_TIMEOUT)

    def _send_engine_close(self):
        """Sends the engine.io close packet of a polling session, as the client meant to.

        Over polling the client's read loop ends when the server answers its
        pending long-poll, which the server does once it has the engine.io
        close packet. python-engineio can fail to send that packet when the
        server closed the socket.io connection (its write loop may exit
        first); the server then keeps the session until its ping timeout,
        which also stalls its shutdown.
        """
        if not self._poll_url:
            return
        try:
            requests.post(self._poll_url, data='1:1' if EXPECTED_EIO == '3' else '1',
                          headers={'Content-Type': 'text/plain;charset=UTF-8'}, timeout=2)
        except requests.RequestException:
            pass


def gunzip_base64(b64):
    """The `data` of a gzip sync reply: base64 -> gunzip -> JSON."""
    return json.loads(gzip.decompress(base64.b64decode(b64, validate=True)).decode('utf-8'))


def by_msg_id(msgs):
    """Sorted by msgId ("1", else msgId), for comparing sets of update messages."""
    return sorted(msgs, key=lambda m: str(m.get('1', m.get('msgId'))))
