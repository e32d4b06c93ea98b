package alwaysonline.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.socket.client.Ack;
import io.socket.client.IO;
import io.socket.client.Manager;
import io.socket.client.Socket;
import io.socket.engineio.client.Transport;
import java.net.URISyntaxException;
import okhttp3.OkHttpClient;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;

/**
 * A real io.socket client over one transport that records every event it
 * receives, in order, so a test can await the next one of a kind or check
 * that nothing arrives. The same source compiles against the 1.x and 2.x lines.
 */
final class TestClient implements AutoCloseable {
  /** How long an awaited event may take. */
  static final long EVENT_TIMEOUT_MS = 5000;
  /** How long "nothing arrives" is watched for. */
  static final long QUIET_MS = 300;

  static final List<String> SERVER_EVENTS = List.of("authenticate", "join", "msg", "sync",
      "remote_join", "remote_leave", "remote_disconnect", "remote_sync", "kickout", "system");

  /** One received event. */
  static final class Entry {
    final String event;
    final Object data;
    final int index;
    boolean taken;

    Entry(String event, Object data, int index) {
      this.event = event;
      this.data = data;
      this.index = index;
    }

    @Override
    public String toString() {
      return event + (taken ? "" : "*") + " " + Json.brief(data);
    }
  }

  final Socket socket;
  final String label;
  /** Transports the engine created, by name. */
  final List<String> transports = new CopyOnWriteArrayList<>();
  /** The EIO query parameter the transports were opened with. */
  final List<String> eio = new CopyOnWriteArrayList<>();
  /** The uid this client authenticated as (JSON type kept). */
  Object uid;

  private final List<Entry> entries = new ArrayList<>(); // guarded by this
  /** HTTP calls (polling requests) without a response yet. */
  private final AtomicInteger inFlight = new AtomicInteger();
  /** Shared like the client's default: one dispatcher and connection pool. */
  private static final OkHttpClient HTTP = new OkHttpClient();
  private int counter;

  TestClient(String url, String transport, String label) {
    this.label = label;
    IO.Options o = new IO.Options();
    o.transports = new String[] {transport};
    o.forceNew = true;
    // Reconnect fast if it ever happens, so "does not reconnect" is observable quickly.
    o.reconnection = true;
    o.reconnectionDelay = 100;
    o.reconnectionDelayMax = 200;
    o.randomizationFactor = 0;
    o.timeout = EVENT_TIMEOUT_MS;
    // Polling requests go through one shared OkHttp client (as by default), counted while in flight.
    o.callFactory = HTTP.newBuilder().addInterceptor(chain -> {
      inFlight.incrementAndGet();
      try {
        return chain.proceed(chain.request());
      } finally {
        inFlight.decrementAndGet();
      }
    }).build();
    try {
      socket = IO.socket(url, o);
    } catch (URISyntaxException e) {
      throw new IllegalArgumentException(e);
    }
    for (String ev : SERVER_EVENTS) socket.on(ev, args -> record(ev, args));
    for (String ev : List.of(Socket.EVENT_CONNECT, Socket.EVENT_DISCONNECT, Socket.EVENT_CONNECT_ERROR)) {
      socket.on(ev, args -> record(ev, args));
    }
    Manager m = socket.io();
    m.on(Manager.EVENT_RECONNECT_ATTEMPT, args -> record("reconnect_attempt", args));
    m.on(Manager.EVENT_TRANSPORT, args -> {
      Transport t = (Transport) args[0];
      transports.add(t.name);
      eio.add(t.query == null ? null : t.query.get("EIO"));
    });
    socket.connect();
  }

  private synchronized void record(String event, Object[] args) {
    Object data = null;
    if (args.length > 0) {
      data = args[0] instanceof Throwable ? String.valueOf(args[0]) : Json.fromOrg(args[0]);
    }
    entries.add(new Entry(event, data, counter++));
    notifyAll();
  }

  /** The next not yet consumed `event`, in arrival order, as its whole entry. */
  synchronized Entry nextEntry(String event, long timeoutMs) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
    while (true) {
      for (Entry e : entries) {
        if (!e.taken && e.event.equals(event)) {
          e.taken = true;
          return e;
        }
      }
      long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
      if (left <= 0) {
        throw new AssertionError(label + ": no '" + event + "' within " + timeoutMs
            + " ms; received: " + describe());
      }
      wait(left);
    }
  }

  Entry nextEntry(String event) throws InterruptedException {
    return nextEntry(event, EVENT_TIMEOUT_MS);
  }

  /** The payload of the next not yet consumed `event`. */
  Object next(String event) throws InterruptedException {
    return nextEntry(event).data;
  }

  Map<String, Object> nextObj(String event) throws InterruptedException {
    return Json.map(next(event));
  }

  /** Passes if no unconsumed event named in `events` is there after QUIET_MS. */
  void expectNone(String... events) throws InterruptedException {
    Thread.sleep(QUIET_MS);
    checkNone(events);
  }

  /** Like expectNone, without waiting (after someone else waited). */
  synchronized void checkNone(String... events) {
    List<String> names = Arrays.asList(events);
    List<Entry> extra = entries.stream()
        .filter(e -> !e.taken && names.contains(e.event))
        .collect(Collectors.toList());
    assertTrue(extra.isEmpty(), label + ": expected no " + names + " but got " + extra);
  }

  /** How many `event`s arrived, consumed or not. */
  synchronized long count(String event) {
    return entries.stream().filter(e -> e.event.equals(event)).count();
  }

  synchronized String describe() {
    return entries.isEmpty() ? "(nothing)"
        : entries.stream().map(Entry::toString).collect(Collectors.joining(" | "));
  }

  void emit(String event, Object payload) {
    socket.emit(event, Json.toOrg(payload));
  }

  /** Emits with an ack callback and returns the ack's payload. */
  Map<String, Object> emitAck(String event, Object payload) throws Exception {
    CompletableFuture<Object> f = new CompletableFuture<>();
    socket.emit(event, new Object[] {Json.toOrg(payload)},
        (Ack) args -> f.complete(args.length > 0 ? Json.fromOrg(args[0]) : null));
    try {
      return Json.map(f.get(EVENT_TIMEOUT_MS, TimeUnit.MILLISECONDS));
    } catch (TimeoutException e) {
      throw new AssertionError(label + ": no ack for '" + event + "' within "
          + EVENT_TIMEOUT_MS + " ms; received: " + describe());
    }
  }

  /** Waits for the connection (or fails on connect_error). */
  TestClient connected() throws InterruptedException {
    long deadline = System.currentTimeMillis() + EVENT_TIMEOUT_MS;
    synchronized (this) {
      while (true) {
        for (Entry e : entries) {
          if (e.taken) continue;
          if (e.event.equals(Socket.EVENT_CONNECT)) {
            e.taken = true;
            return this;
          }
          if (e.event.equals(Socket.EVENT_CONNECT_ERROR)) {
            fail(label + ": connect_error " + e.data);
          }
        }
        long left = deadline - System.currentTimeMillis();
        if (left <= 0) fail(label + ": not connected within " + EVENT_TIMEOUT_MS + " ms: " + describe());
        wait(left);
      }
    }
  }

  /**
   * Asserts the server closed the socket with a socket.io disconnect packet
   * ("io server disconnect") and the client stays closed (no reconnect).
   */
  Entry expectServerDisconnect() throws InterruptedException {
    Entry e = nextEntry(Socket.EVENT_DISCONNECT);
    assertEquals("io server disconnect", e.data, label + ": disconnect reason");
    assertFalse(socket.connected(), label + ": still connected");
    // Reconnection is on with a 100 ms delay: a reconnecting client would show it now.
    expectNone(Socket.EVENT_CONNECT, "reconnect_attempt");
    assertFalse(socket.connected(), label + ": reconnected");
    return e;
  }

  /**
   * Closes the socket and waits (up to 2 s) until the server has answered
   * every polling request, the pending long-poll included: it answers that
   * one once it has processed the client's engine.io close packet, so the
   * connection is really gone before a test goes on (or stops the server).
   */
  @Override
  public void close() {
    socket.off();
    socket.close();
    long deadline = System.currentTimeMillis() + 2000;
    try {
      while (inFlight.get() > 0 && System.currentTimeMillis() < deadline) {
        Thread.sleep(10);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
