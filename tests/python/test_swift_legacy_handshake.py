"""The handshake of socket.io-client-swift v13-v15 (iOS), emulated on the wire.

Those versions speak the socket.io 2.x protocol (engine.io 3) but send no
`EIO` query parameter: `/socket.io/?transport=polling&b64=1` and
`/socket.io/?transport=websocket` (the Swift client's maintainers called the
omission a mistake and added the parameter in v16; Node's engine.io treats a
missing EIO as 3). The Swift client itself cannot run here, so these tests
send exactly its requests.

The server treats a missing EIO as engine.io 3 (src/http/compat.rs), as the
engine.io reference server does.

Runs in the python-socketio 5.x environment only (it needs no socket.io
client, just requests and websocket-client); see conftest.py.
"""

import json
import re

import pytest
import requests
import websocket

import harness



@pytest.fixture(scope='module')
def server():
    s = harness.Server({})
    yield s
    s.stop()


def eio3_payload(body):
    """Decodes an engine.io 3 polling payload (`<len>:<packet>...`) into packets."""
    packets = []
    while body:
        m = re.match(r'(\d+):', body)
        assert m, f'not an engine.io 3 payload: {body!r}'
        start = m.end()
        n = int(m.group(1))
        packets.append(body[start:start + n])
        body = body[start + n:]
    return packets


def test_polling_handshake_without_eio_is_served_as_engineio_3(server):
    r = requests.get(f'{server.url}/socket.io/?transport=polling&b64=1', timeout=harness.EVENT_TIMEOUT)
    assert r.status_code == 200, f'HTTP {r.status_code} {r.text}'
    packets = eio3_payload(r.text)
    assert packets[0].startswith('0{')
    sid = json.loads(packets[0][1:])['sid']
    base = f'{server.url}/socket.io/?transport=polling&b64=1&sid={sid}'
    got = packets[1:]
    if not got:
        got = eio3_payload(requests.get(base, timeout=harness.EVENT_TIMEOUT).text)
    assert got[0] == '40', 'engine.io 3 connects the default namespace by itself'


def test_websocket_handshake_without_eio_is_served_as_engineio_3(server):
    uid = 'swift-15'
    ws = websocket.create_connection(
        f'ws://127.0.0.1:{server.port}/socket.io/?transport=websocket', timeout=harness.EVENT_TIMEOUT)
    try:
        assert ws.recv().startswith('0{')
        assert ws.recv() == '40', 'engine.io 3 connects the default namespace by itself'
        ws.send('42' + json.dumps(['authenticate', {'uid': uid, 'token': server.token(uid)}]))
        assert json.loads(ws.recv()[2:]) == ['authenticate', {'status': 0, 'data': 'auth success'}]
    finally:
        ws.close()
