package alwaysonline.clients;

import static alwaysonline.clients.Json.list;
import static alwaysonline.clients.Json.obj;
import static alwaysonline.clients.Json.with;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;

/**
 * The protocol of docs/PROTOCOL.md as an Android app sees it, for one client
 * line (the module's io.socket:socket.io-client) over one transport (the
 * subclass). Each subclass gets its own server (sync page size 3, real tokens
 * made with the CLI).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(60)
abstract class ProtocolSuite {
  static final int PAGE = 3;

  /** "websocket" or "polling": the only transport the clients may use. */
  abstract String transport();

  final String clientVersion = System.getProperty("ao.client.version", "?");
  final String expectedEio = System.getProperty("ao.expected.eio", "?");

  ServerProcess server;
  final List<TestClient> clients = new ArrayList<>();
  int n;

  @BeforeAll
  void startServer() throws Exception {
    server = new ServerProcess(Map.of("AO_SYNC_PAGE_SIZE", String.valueOf(PAGE)));
  }

  @AfterEach
  void closeClients() {
    for (TestClient c : clients) c.close();
    clients.clear();
  }

  @AfterAll
  void stopServer() throws Exception {
    closeClients();
    if (server != null) server.close();
  }

  String tag() {
    return "j" + clientVersion.charAt(0) + transport().charAt(0);
  }

  /** A fresh uid for this class. */
  String uid(String name) {
    return tag() + "-" + name + "-" + (++n);
  }

  /** A fresh room id for this class. */
  String room(String name) {
    return tag() + "-room-" + name + "-" + (++n);
  }

  TestClient client() throws InterruptedException {
    TestClient c = new TestClient(server.url, transport(),
        "java-" + clientVersion + "/" + transport() + "#" + (clients.size() + 1));
    clients.add(c);
    return c.connected();
  }

  static final Map<String, Object> AUTH_OK = obj("status", 0, "data", "auth success");
  static final Map<String, Object> JOIN_OK = obj("status", 0, "data", "join success");

  /** A connected client authenticated as `uid` with its CLI-made token. */
  TestClient login(String uid) throws InterruptedException {
    String token = server.token(uid);
    TestClient c = client();
    c.uid = uid;
    c.emit("authenticate", obj("uid", uid, "token", token));
    assertEquals(AUTH_OK, c.next("authenticate"), c.label);
    return c;
  }

  static void join(TestClient c, Object roomId) throws InterruptedException {
    c.emit("join", obj("roomId", roomId));
    assertEquals(JOIN_OK, c.next("join"), c.label);
  }

  TestClient member(String name, String roomId) throws InterruptedException {
    TestClient c = login(uid(name));
    join(c, roomId);
    return c;
  }

  static Map<String, Object> sync(TestClient c, Map<String, Object> request) throws InterruptedException {
    c.emit("sync", request);
    return c.nextObj("sync");
  }

  static Map<String, Object> uidOf(TestClient c) {
    return obj("uid", c.uid);
  }

  /** Two members of a fresh room that have seen each other. */
  TestClient[] pair(String name) throws InterruptedException {
    String r = room(name);
    TestClient a = member("a", r);
    TestClient b = member("b", r);
    assertEquals(uidOf(b), a.next("remote_join"));
    assertEquals(uidOf(a), b.next("remote_join"));
    return new TestClient[] {a, b};
  }

  /** Three members of a fresh room, each having seen the others' presence. */
  TestClient[] trio(String name) throws InterruptedException {
    String r = room(name);
    TestClient a = member("a", r);
    TestClient b = member("b", r);
    assertEquals(uidOf(b), a.next("remote_join"));
    assertEquals(uidOf(a), b.next("remote_join"));
    TestClient c = member("c", r);
    assertEquals(uidOf(c), a.next("remote_join"));
    assertEquals(uidOf(c), b.next("remote_join"));
    assertEquals(uidOf(a), c.next("remote_join"));
    assertEquals(uidOf(b), c.next("remote_join"));
    return new TestClient[] {a, b, c};
  }

  // ------------------------------------------------------------------ tests

  @Test
  void connectsOverTheOneTransportWithTheExpectedEngineIoProtocol() throws Exception {
    TestClient c = client();
    assertEquals(List.of(transport()), c.transports, "transports the engine opened");
    assertEquals(List.of(expectedEio), c.eio, "EIO query parameter");
    assertTrue(c.socket.connected());
    c.expectNone("disconnect", "connect_error");
    assertEquals(List.of(transport()), c.transports, "no transport change");
  }

  @Test
  void authenticateWithCliTokenSucceeds() throws Exception {
    TestClient c = login(uid("auth"));
    c.expectNone("disconnect", "authenticate");
    assertTrue(c.socket.connected());
  }

  @Test
  void wrongTokenIsRefusedThenServerDisconnects() throws Exception {
    String id = uid("wrong");
    server.token(id);
    TestClient c = client();
    c.emit("authenticate", obj("uid", id, "token", "not-the-token"));
    TestClient.Entry reply = c.nextEntry("authenticate");
    assertEquals(obj("status", 1, "data", "auth failed, uid or token is wrong"), reply.data);
    TestClient.Entry disc = c.expectServerDisconnect();
    assertTrue(reply.index < disc.index, "the failed authenticate arrives before the disconnect");
  }

  @Test
  void joinAcksThenRosterInJoinOrder() throws Exception {
    String r = room("roster");
    TestClient a = member("a", r);
    a.expectNone("remote_join");

    TestClient b = login(uid("b"));
    b.emit("join", obj("roomId", r));
    TestClient.Entry ackB = b.nextEntry("join");
    assertEquals(JOIN_OK, ackB.data);
    TestClient.Entry rosterB = b.nextEntry("remote_join");
    assertEquals(uidOf(a), rosterB.data);
    assertTrue(ackB.index < rosterB.index, "the join ack comes before the roster");
    assertEquals(uidOf(b), a.next("remote_join"));

    TestClient c = login(uid("c"));
    c.emit("join", obj("roomId", r));
    TestClient.Entry ackC = c.nextEntry("join");
    assertEquals(JOIN_OK, ackC.data);
    TestClient.Entry first = c.nextEntry("remote_join");
    TestClient.Entry second = c.nextEntry("remote_join");
    assertEquals(list(uidOf(a), uidOf(b)), list(first.data, second.data), "join order");
    assertTrue(ackC.index < first.index);
    assertEquals(uidOf(c), a.next("remote_join"));
    assertEquals(uidOf(c), b.next("remote_join"));
    // Never its own uid, nothing twice.
    a.expectNone("remote_join");
    b.checkNone("remote_join");
    c.checkNone("remote_join");
  }

  @Test
  void msgIsRelayedBothWaysStampedWithSeqNotEchoed() throws Exception {
    TestClient[] t = trio("msg");
    TestClient a = t[0], b = t[1], c = t[2];
    a.emit("msg", obj("data", obj("text", "hi", "n", list(1, 2)), "2", "forged"));
    Map<String, Object> expected = obj("data", obj("text", "hi", "n", list(1, 2)), "2", a.uid, "seq", 0);
    assertEquals(expected, b.next("msg"));
    assertEquals(expected, c.next("msg"));

    b.emit("msg", obj("data", "back", "s", 0, "1", "id-1"));
    Map<String, Object> back = obj("data", "back", "s", 0, "1", "id-1", "2", b.uid, "seq", 1);
    assertEquals(back, a.next("msg"));
    assertEquals(back, c.next("msg"));

    // Send order is kept.
    for (int i = 0; i < 5; i++) c.emit("msg", obj("data", i));
    for (TestClient peer : new TestClient[] {a, b}) {
      for (int i = 0; i < 5; i++) {
        assertEquals(obj("data", i, "2", c.uid, "seq", 2 + i), peer.next("msg"), peer.label);
      }
    }
    a.expectNone("msg");
    b.checkNone("msg");
    c.checkNone("msg");
  }

  @Test
  void msgAcksCarryTheSeqOfInserts() throws Exception {
    TestClient[] p = pair("ack");
    TestClient a = p[0], b = p[1];
    assertEquals(obj("status", 0, "seq", 0), a.emitAck("msg", obj("data", "one")));
    assertEquals(obj("status", 0), a.emitAck("msg", obj("data", "u", "s", 1, "1", "k")));
    assertEquals(obj("status", 0), a.emitAck("msg", obj("data", "e", "s", 2)));
    assertEquals(obj("status", 0, "seq", 1), b.emitAck("msg", obj("data", "two")));
    assertEquals(obj("data", "one", "2", a.uid, "seq", 0), b.next("msg"));
    assertEquals(obj("data", "u", "s", 1, "1", "k", "2", a.uid), b.next("msg"));
    assertEquals(obj("data", "e", "s", 2, "2", a.uid), b.next("msg"));
    assertEquals(obj("data", "two", "2", b.uid, "seq", 1), a.next("msg"));
  }

  @Test
  void updateReplacesByMsgIdAndIgnoreIsNeverStored() throws Exception {
    TestClient[] p = pair("compact");
    TestClient a = p[0], b = p[1];
    List<Map<String, Object>> sent = List.of(
        obj("data", "v1", "s", 1, "1", "u1"),
        obj("data", "i0", "s", 0),
        obj("data", "v2", "s", 1, "1", "u1"),
        obj("data", "e1", "s", 2),
        obj("data", "w1", "s", 1, "1", 7),
        obj("data", "i1"),
        obj("data", "e2", "s", 2, "1", "u1"));
    for (Map<String, Object> m : sent) a.emit("msg", m);
    List<Object> relayed = new ArrayList<>();
    for (int i = 0; i < sent.size(); i++) relayed.add(b.next("msg"));
    assertEquals(list(
        with(sent.get(0), "2", a.uid),
        with(sent.get(1), "2", a.uid, "seq", 0),
        with(sent.get(2), "2", a.uid),
        with(sent.get(3), "2", a.uid),
        with(sent.get(4), "2", a.uid),
        with(sent.get(5), "2", a.uid, "seq", 1),
        with(sent.get(6), "2", a.uid)), relayed);

    Map<String, Object> page = sync(b, obj("offset", 0));
    assertEquals(0L, page.get("next"));
    assertEquals(2L, page.get("offset"));
    assertTrue(page.get("epoch") instanceof String, "epoch is a string: " + page);
    List<Object> data = Json.items(page.get("data"));
    assertEquals(list(relayed.get(1), relayed.get(5)), data.subList(0, 2), "inserts first, oldest first");
    assertEquals(Json.byMsgId(list(relayed.get(2), relayed.get(4))), Json.byMsgId(data.subList(2, data.size())),
        "the latest update per msgId, no ignores");
    // sync offset 0 tells the others.
    assertEquals(uidOf(b), a.next("remote_sync"));
    b.expectNone("remote_sync");
  }

  @Test
  void syncPagesUntilNextIsZeroWithUpdatesOnTheLastPage() throws Exception {
    TestClient[] p = pair("paging");
    TestClient a = p[0], b = p[1];
    List<Object> seqs = new ArrayList<>();
    for (int i = 0; i < 8; i++) {
      seqs.add(a.emitAck("msg", obj("data", "p" + i, "s", 0)).get("seq"));
      if (i == 4) {
        assertEquals(obj("status", 0), a.emitAck("msg", obj("data", "up-old", "s", 1, "1", "state")));
        assertEquals(obj("status", 0), a.emitAck("msg", obj("data", "up-new", "s", 1, "1", "state")));
      }
    }
    assertEquals(list(0, 1, 2, 3, 4, 5, 6, 7), seqs);
    List<Object> inserts = new ArrayList<>();
    Object update = null;
    for (int i = 0; i < 10; i++) {
      Map<String, Object> m = b.nextObj("msg");
      if (m.containsKey("seq")) inserts.add(m);
      if ("up-new".equals(m.get("data"))) update = m;
    }
    assertEquals(8, inserts.size());

    Map<String, Object> p1 = sync(b, obj("offset", 0));
    assertEquals(obj("offset", 3, "next", 1), obj("offset", p1.get("offset"), "next", p1.get("next")));
    assertEquals(inserts.subList(0, 3), p1.get("data"));
    Map<String, Object> p2 = sync(b, obj("offset", p1.get("offset")));
    assertEquals(obj("offset", 6, "next", 1), obj("offset", p2.get("offset"), "next", p2.get("next")));
    assertEquals(inserts.subList(3, 6), p2.get("data"));
    Map<String, Object> p3 = sync(b, obj("offset", p2.get("offset")));
    assertEquals(obj("offset", 8, "next", 0), obj("offset", p3.get("offset"), "next", p3.get("next")));
    List<Object> last = new ArrayList<>(inserts.subList(6, 8));
    last.add(update);
    assertEquals(last, p3.get("data"));
    assertEquals(p1.get("epoch"), p3.get("epoch"));
    // Only the offset-0 request announces remote_sync.
    assertEquals(uidOf(b), a.next("remote_sync"));
    // Resume from the middle: offset = last seen seq + 1.
    Map<String, Object> resumed = sync(b, obj("offset", 5));
    assertEquals(obj("offset", 8, "next", 0), obj("offset", resumed.get("offset"), "next", resumed.get("next")));
    List<Object> tailOf5 = new ArrayList<>(inserts.subList(5, 8));
    tailOf5.add(update);
    assertEquals(tailOf5, resumed.get("data"));
    a.expectNone("remote_sync");
  }

  @Test
  void gzipSyncIsBase64OfGzippedJsonPage() throws Exception {
    TestClient[] p = pair("gzip");
    TestClient a = p[0], b = p[1];
    for (int i = 0; i < 4; i++) a.emitAck("msg", obj("data", obj("i", i, "text", "é ü 漢字 😀")));
    a.emitAck("msg", obj("data", "state", "s", 1, "1", "g"));
    for (int i = 0; i < 5; i++) b.next("msg");

    Map<String, Object> plain1 = sync(b, obj("offset", 0));
    Map<String, Object> gz1 = sync(b, obj("offset", 0, "encoding", "gzip"));
    assertEquals("gzip", gz1.get("encoding"));
    assertTrue(gz1.get("data") instanceof String, "data is a string");
    assertTrue(((String) gz1.get("data")).matches("^[A-Za-z0-9+/]+={0,2}$"), "data is base64");
    assertEquals(plain1.get("data"), Json.gunzipBase64((String) gz1.get("data")));
    assertEquals(obj("offset", 3, "next", 1), obj("offset", gz1.get("offset"), "next", gz1.get("next")));
    assertTrue(!plain1.containsKey("encoding"), "a plain reply has no encoding");

    Map<String, Object> plain2 = sync(b, obj("offset", 3));
    Map<String, Object> gz2 = sync(b, obj("offset", 3, "encoding", "gzip"));
    assertEquals("gzip", gz2.get("encoding"));
    List<Object> data2 = Json.gunzipBase64((String) gz2.get("data"));
    assertEquals(plain2.get("data"), data2);
    assertEquals(2, data2.size());
    assertEquals(obj("i", 3, "text", "é ü 漢字 😀"), Json.map(data2.get(0)).get("data"));
    assertEquals("state", Json.map(data2.get(1)).get("data"));
    assertEquals(obj("offset", 4, "next", 0), obj("offset", gz2.get("offset"), "next", gz2.get("next")));
  }

  @Test
  void leaveAnnouncesRemoteLeaveAndServerDisconnectsTheLeaver() throws Exception {
    TestClient[] t = trio("leave");
    TestClient a = t[0], b = t[1], c = t[2];
    a.emit("leave", obj());
    assertEquals(uidOf(a), b.next("remote_leave"));
    assertEquals(uidOf(a), c.next("remote_leave"));
    a.expectServerDisconnect();
    // The room goes on without the leaver.
    b.emit("msg", obj("data", "after leave"));
    assertEquals(obj("data", "after leave", "2", b.uid, "seq", 0), c.next("msg"));
    b.expectNone("remote_leave", "remote_join");
    c.checkNone("remote_leave", "remote_join");
    assertEquals(0, a.count("msg"));
  }

  @Test
  void closingTheConnectionAnnouncesRemoteDisconnect() throws Exception {
    TestClient[] t = trio("close");
    TestClient a = t[0], b = t[1], c = t[2];
    a.close();
    assertEquals(uidOf(a), b.next("remote_disconnect"));
    assertEquals(uidOf(a), c.next("remote_disconnect"));
    b.expectNone("remote_leave", "remote_disconnect");
    c.checkNone("remote_leave", "remote_disconnect");
  }

  @Test
  void kickoutClosesTheOlderLoginAndTheRoomHearsNothing() throws Exception {
    String r = room("kick");
    TestClient old = member("x", r);
    Object x = old.uid;
    TestClient b = member("b", r);
    assertEquals(uidOf(b), old.next("remote_join"));
    assertEquals(obj("uid", x), b.next("remote_join"));

    TestClient fresh = login((String) x);
    TestClient.Entry kick = old.nextEntry("kickout");
    assertEquals(0L, kick.data, "kickout payload");
    TestClient.Entry disc = old.expectServerDisconnect();
    assertTrue(kick.index < disc.index, "kickout arrives before the disconnect");

    join(fresh, r);
    assertEquals(uidOf(b), fresh.next("remote_join"));
    b.expectNone("remote_join", "remote_leave", "remote_disconnect");
    fresh.checkNone("remote_join");

    // The room works with the new connection.
    b.emit("msg", obj("data", "to the new one"));
    assertEquals(obj("data", "to the new one", "2", b.uid, "seq", 0), fresh.next("msg"));
    fresh.emit("msg", obj("data", "from the new one"));
    assertEquals(obj("data", "from the new one", "2", x, "seq", 1), b.next("msg"));
    assertEquals(0, old.count("msg"));
  }
}
