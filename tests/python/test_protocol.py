"""docs/PROTOCOL.md as a python-socketio client sees it.

The same suite runs in two environments (see run.sh): python-socketio 4.x
(engine.io protocol 3) and 5.x (engine.io protocol 4); each over websocket only
and polling only (one test class each, each with its own server, sync page
size 3, real tokens made with the CLI).
"""

import re

import harness
from harness import by_msg_id, gunzip_base64

AUTH_OK = {'status': 0, 'data': 'auth success'}
JOIN_OK = {'status': 0, 'data': 'join success'}


def login(pool, uid):
    token = pool.server.token(uid)
    c = pool.client()
    c.uid = uid
    c.emit('authenticate', {'uid': uid, 'token': token})
    assert c.next('authenticate') == AUTH_OK, c.label
    return c


def join(c, room_id):
    c.emit('join', {'roomId': room_id})
    assert c.next('join') == JOIN_OK, c.label


def member(pool, name, room_id):
    c = login(pool, pool.uid(name))
    join(c, room_id)
    return c


def sync(c, request):
    c.emit('sync', request)
    return c.next('sync')


def uid_of(c):
    return {'uid': c.uid}


def pair(pool, name):
    """Two members of a fresh room that have seen each other."""
    r = pool.room(name)
    a = member(pool, 'a', r)
    b = member(pool, 'b', r)
    assert a.next('remote_join') == uid_of(b)
    assert b.next('remote_join') == uid_of(a)
    return a, b


def trio(pool, name):
    """Three members of a fresh room, each having seen the others' presence."""
    r = pool.room(name)
    a, b = member(pool, 'a', r), member(pool, 'b', r)
    assert a.next('remote_join') == uid_of(b)
    assert b.next('remote_join') == uid_of(a)
    c = member(pool, 'c', r)
    assert a.next('remote_join') == uid_of(c)
    assert b.next('remote_join') == uid_of(c)
    assert c.next('remote_join') == uid_of(a)
    assert c.next('remote_join') == uid_of(b)
    return a, b, c


def page_pos(page):
    return {'offset': page['offset'], 'next': page['next']}


class ProtocolSuite:
    transport = None

    def test_connects_over_the_one_transport_with_the_expected_engineio_protocol(self, pool):
        c = pool.client()
        assert c.transport == self.transport
        assert c.eio_query == harness.EXPECTED_EIO
        assert c.sio.connected
        c.expect_none('disconnect', 'connect_error')
        assert c.transport == self.transport, 'no transport change'

    def test_authenticate_with_cli_token_succeeds(self, pool):
        c = login(pool, pool.uid('auth'))
        c.expect_none('disconnect', 'authenticate')
        assert c.sio.connected

    def test_wrong_token_is_refused_then_the_server_disconnects(self, pool):
        uid = pool.uid('wrong')
        pool.server.token(uid)
        c = pool.client()
        c.emit('authenticate', {'uid': uid, 'token': 'not-the-token'})
        reply = c.next_entry('authenticate')
        assert reply.data == {'status': 1, 'data': 'auth failed, uid or token is wrong'}
        disc = c.expect_server_disconnect()
        assert reply.index < disc.index, 'the failed authenticate arrives before the disconnect'

    def test_join_acks_then_roster_in_join_order(self, pool):
        r = pool.room('roster')
        a = member(pool, 'a', r)
        a.expect_none('remote_join')

        b = login(pool, pool.uid('b'))
        b.emit('join', {'roomId': r})
        ack_b = b.next_entry('join')
        assert ack_b.data == JOIN_OK
        roster_b = b.next_entry('remote_join')
        assert roster_b.data == uid_of(a)
        assert ack_b.index < roster_b.index, 'the join ack comes before the roster'
        assert a.next('remote_join') == uid_of(b)

        c = login(pool, pool.uid('c'))
        c.emit('join', {'roomId': r})
        ack_c = c.next_entry('join')
        assert ack_c.data == JOIN_OK
        first, second = c.next_entry('remote_join'), c.next_entry('remote_join')
        assert [first.data, second.data] == [uid_of(a), uid_of(b)], 'join order'
        assert ack_c.index < first.index
        assert a.next('remote_join') == uid_of(c)
        assert b.next('remote_join') == uid_of(c)
        # Never its own uid, nothing twice.
        a.expect_none('remote_join')
        b.check_none('remote_join')
        c.check_none('remote_join')

    def test_msg_is_relayed_both_ways_stamped_with_seq_not_echoed(self, pool):
        a, b, c = trio(pool, 'msg')
        a.emit('msg', {'data': {'text': 'hi', 'n': [1, 2]}, '2': 'forged'})
        expected = {'data': {'text': 'hi', 'n': [1, 2]}, '2': a.uid, 'seq': 0}
        assert b.next('msg') == expected
        assert c.next('msg') == expected

        b.emit('msg', {'data': 'back', 's': 0, '1': 'id-1'})
        back = {'data': 'back', 's': 0, '1': 'id-1', '2': b.uid, 'seq': 1}
        assert a.next('msg') == back
        assert c.next('msg') == back

        # Send order is kept.
        for i in range(5):
            c.emit('msg', {'data': i})
        for peer in (a, b):
            got = [peer.next('msg') for _ in range(5)]
            assert got == [{'data': i, '2': c.uid, 'seq': 2 + i} for i in range(5)], peer.label
        a.expect_none('msg')
        b.check_none('msg')
        c.check_none('msg')

    def test_msg_acks_carry_the_seq_of_inserts(self, pool):
        a, b = pair(pool, 'ack')
        assert a.call('msg', {'data': 'one'}) == {'status': 0, 'seq': 0}
        assert a.call('msg', {'data': 'u', 's': 1, '1': 'k'}) == {'status': 0}
        assert a.call('msg', {'data': 'e', 's': 2}) == {'status': 0}
        assert b.call('msg', {'data': 'two'}) == {'status': 0, 'seq': 1}
        assert b.next('msg') == {'data': 'one', '2': a.uid, 'seq': 0}
        assert b.next('msg') == {'data': 'u', 's': 1, '1': 'k', '2': a.uid}
        assert b.next('msg') == {'data': 'e', 's': 2, '2': a.uid}
        assert a.next('msg') == {'data': 'two', '2': b.uid, 'seq': 1}

    def test_update_replaces_by_msg_id_and_ignore_is_never_stored(self, pool):
        a, b = pair(pool, 'compact')
        sent = [
            {'data': 'v1', 's': 1, '1': 'u1'},
            {'data': 'i0', 's': 0},
            {'data': 'v2', 's': 1, '1': 'u1'},
            {'data': 'e1', 's': 2},
            {'data': 'w1', 's': 1, '1': 7},
            {'data': 'i1'},
            {'data': 'e2', 's': 2, '1': 'u1'},
        ]
        for m in sent:
            a.emit('msg', m)
        relayed = [b.next('msg') for _ in sent]
        stamped = [dict(m, **{'2': a.uid}) for m in sent]
        stamped[1]['seq'] = 0
        stamped[5]['seq'] = 1
        assert relayed == stamped

        page = sync(b, {'offset': 0})
        assert page_pos(page) == {'offset': 2, 'next': 0}
        assert isinstance(page['epoch'], str)
        assert page['data'][:2] == [relayed[1], relayed[5]], 'inserts first, oldest first'
        assert by_msg_id(page['data'][2:]) == by_msg_id([relayed[2], relayed[4]]), \
            'the latest update per msgId, no ignores'
        # sync offset 0 tells the others.
        assert a.next('remote_sync') == uid_of(b)
        b.expect_none('remote_sync')

    def test_sync_pages_until_next_is_zero_with_updates_on_the_last_page(self, pool):
        a, b = pair(pool, 'paging')
        seqs = []
        for i in range(8):
            seqs.append(a.call('msg', {'data': f'p{i}', 's': 0})['seq'])
            if i == 4:
                assert a.call('msg', {'data': 'up-old', 's': 1, '1': 'state'}) == {'status': 0}
                assert a.call('msg', {'data': 'up-new', 's': 1, '1': 'state'}) == {'status': 0}
        assert seqs == list(range(8))
        relayed = [b.next('msg') for _ in range(10)]
        inserts = [m for m in relayed if 'seq' in m]
        update = next(m for m in relayed if m['data'] == 'up-new')
        assert len(inserts) == 8

        p1 = sync(b, {'offset': 0})
        assert page_pos(p1) == {'offset': 3, 'next': 1}
        assert p1['data'] == inserts[0:3]
        p2 = sync(b, {'offset': p1['offset']})
        assert page_pos(p2) == {'offset': 6, 'next': 1}
        assert p2['data'] == inserts[3:6]
        p3 = sync(b, {'offset': p2['offset']})
        assert page_pos(p3) == {'offset': 8, 'next': 0}
        assert p3['data'] == inserts[6:8] + [update]
        assert p1['epoch'] == p3['epoch']
        # Only the offset-0 request announces remote_sync.
        assert a.next('remote_sync') == uid_of(b)
        # Resume from the middle: offset = last seen seq + 1.
        resumed = sync(b, {'offset': 5})
        assert page_pos(resumed) == {'offset': 8, 'next': 0}
        assert resumed['data'] == inserts[5:8] + [update]
        a.expect_none('remote_sync')

    def test_gzip_sync_is_base64_of_the_gzipped_json_page(self, pool):
        a, b = pair(pool, 'gzip')
        text = 'é ü 漢字 😀'
        for i in range(4):
            a.call('msg', {'data': {'i': i, 'text': text}})
        a.call('msg', {'data': 'state', 's': 1, '1': 'g'})
        for _ in range(5):
            b.next('msg')

        plain1 = sync(b, {'offset': 0})
        gz1 = sync(b, {'offset': 0, 'encoding': 'gzip'})
        assert gz1['encoding'] == 'gzip'
        assert isinstance(gz1['data'], str)
        assert re.fullmatch(r'[A-Za-z0-9+/]+={0,2}', gz1['data'])
        assert gunzip_base64(gz1['data']) == plain1['data']
        assert page_pos(gz1) == {'offset': 3, 'next': 1}
        assert 'encoding' not in plain1

        plain2 = sync(b, {'offset': 3})
        gz2 = sync(b, {'offset': 3, 'encoding': 'gzip'})
        assert gz2['encoding'] == 'gzip'
        data2 = gunzip_base64(gz2['data'])
        assert data2 == plain2['data']
        assert [m['data'] for m in data2] == [{'i': 3, 'text': text}, 'state']
        assert page_pos(gz2) == {'offset': 4, 'next': 0}

    def test_leave_announces_remote_leave_and_the_server_disconnects_the_leaver(self, pool):
        a, b, c = trio(pool, 'leave')
        a.emit('leave', {})
        assert b.next('remote_leave') == uid_of(a)
        assert c.next('remote_leave') == uid_of(a)
        a.expect_server_disconnect()
        # The room goes on without the leaver.
        b.emit('msg', {'data': 'after leave'})
        assert c.next('msg') == {'data': 'after leave', '2': b.uid, 'seq': 0}
        b.expect_none('remote_leave', 'remote_join')
        c.check_none('remote_leave', 'remote_join')
        assert a.count('msg') == 0

    def test_closing_the_connection_announces_remote_disconnect(self, pool):
        a, b, c = trio(pool, 'close')
        a.close()
        assert b.next('remote_disconnect') == uid_of(a)
        assert c.next('remote_disconnect') == uid_of(a)
        b.expect_none('remote_leave', 'remote_disconnect')
        c.check_none('remote_leave', 'remote_disconnect')

    def test_kickout_closes_the_older_login_and_the_room_hears_nothing(self, pool):
        r = pool.room('kick')
        old = member(pool, 'x', r)
        x = old.uid
        b = member(pool, 'b', r)
        assert old.next('remote_join') == uid_of(b)
        assert b.next('remote_join') == {'uid': x}

        fresh = login(pool, x)
        kick = old.next_entry('kickout')
        assert kick.args == [0], 'kickout payload'
        disc = old.expect_server_disconnect()
        assert kick.index < disc.index, 'kickout arrives before the disconnect'

        join(fresh, r)
        assert fresh.next('remote_join') == uid_of(b)
        b.expect_none('remote_join', 'remote_leave', 'remote_disconnect')
        fresh.check_none('remote_join')

        # The room works with the new connection.
        b.emit('msg', {'data': 'to the new one'})
        assert fresh.next('msg') == {'data': 'to the new one', '2': b.uid, 'seq': 0}
        fresh.emit('msg', {'data': 'from the new one'})
        assert b.next('msg') == {'data': 'from the new one', '2': x, 'seq': 1}
        assert old.count('msg') == 0


class TestWebsocket(ProtocolSuite):
    """transports=['websocket']: no polling handshake, no upgrade."""
    transport = 'websocket'


class TestPolling(ProtocolSuite):
    """transports=['polling']: HTTP long-polling only."""
    transport = 'polling'
