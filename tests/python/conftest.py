"""Fixtures: one server per test class, clients closed after each test."""

import os
import warnings

import pytest

import harness


# The wire-level emulation of socket.io-client-swift <= v15 needs no
# python-socketio: run it once, in the 5.x environment.
collect_ignore = [] if harness.SIO_LINE >= 5 else ['test_swift_legacy_handshake.py']


def pytest_report_header(config):
    line = os.environ.get('AO_PY_SIO_LINE')
    return [f'python-socketio {harness.SIO_VERSION}, python-engineio {harness.EIO_VERSION} '
            f'(engine.io protocol {harness.EXPECTED_EIO}); AO_PY_SIO_LINE={line}; server {harness.BIN}']


def pytest_configure(config):
    line = os.environ.get('AO_PY_SIO_LINE')
    if line and int(line) != harness.SIO_LINE:
        raise pytest.UsageError(
            f'AO_PY_SIO_LINE={line} but this environment has python-socketio {harness.SIO_VERSION}')


@pytest.fixture(scope='class')
def server():
    s = harness.Server({'AO_SYNC_PAGE_SIZE': '3'})
    yield s
    took = s.stop()
    if took is None or took > 3:
        # Every client is closed by now: a slow exit is the server's.
        warnings.warn(f'the server needed {"SIGKILL" if took is None else f"{took:.1f} s"} '
                      f'to stop after SIGTERM\n{s.tail(5)}')


class Pool:
    """Makes clients of one transport against one server; closes them all."""

    def __init__(self, server, transport, tag):
        self.server = server
        self.transport = transport
        self.tag = tag
        self.clients = []
        self.n = 0

    def uid(self, name):
        self.n += 1
        return f'{self.tag}-{name}-{self.n}'

    def room(self, name):
        self.n += 1
        return f'{self.tag}-room-{name}-{self.n}'

    def client(self):
        label = f'py-sio{harness.SIO_VERSION}/{self.transport}#{len(self.clients) + 1}'
        c = harness.Client(self.server.url, self.transport, label)
        self.clients.append(c)
        return c.connected()

    def close_all(self):
        for c in self.clients:
            c.close()
        self.clients.clear()


@pytest.fixture
def pool(server, request):
    transport = request.cls.transport
    # Unique per test: uids and rooms never collide within a class's server.
    tag = f'p{harness.SIO_LINE}{transport[0]}-{request.node.name[5:25]}'
    p = Pool(server, transport, tag)
    yield p
    p.close_all()
