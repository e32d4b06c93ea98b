package alwaysonline.clients;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayDeque;
import java.util.Comparator;
import java.util.Deque;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * One always-online server on 127.0.0.1:0 with a fresh data dir, started the
 * way tests/clients/harness.js does it: AO_LOG_FORMAT=json, the port read from
 * the "always-online listening" log line, users made with `always-online user
 * create`, SIGTERM to stop.
 */
final class ServerProcess implements AutoCloseable {
  private static final Pattern ADDR = Pattern.compile("\"addr\":\"127\\.0\\.0\\.1:(\\d+)\"");

  final Path dir;
  final int port;
  final String url;
  private final Process process;
  private final Deque<String> lines = new ArrayDeque<>();
  private final Map<String, String> tokens = new ConcurrentHashMap<>();

  /** The server binary: $AO_BIN, else target/debug/always-online of the repository. */
  static Path binary() {
    String env = System.getenv("AO_BIN");
    if (env != null && !env.isEmpty()) return Paths.get(env).toAbsolutePath();
    String root = System.getProperty("ao.repo.root", "../../..");
    return Paths.get(root, "target", "debug", "always-online").toAbsolutePath().normalize();
  }

  private static void cleanEnv(ProcessBuilder pb, Map<String, String> extra) {
    Map<String, String> env = pb.environment();
    env.keySet().removeIf(k -> k.startsWith("AO_"));
    env.put("AO_LOG_FORMAT", "json");
    env.putAll(extra);
  }

  ServerProcess(Map<String, String> env) throws IOException, InterruptedException {
    Path bin = binary();
    if (!Files.isExecutable(bin)) {
      throw new IllegalStateException(
          "server binary not found at " + bin + ": run `cargo build` in the repository root, or set AO_BIN");
    }
    dir = Files.createTempDirectory("ao-java-");
    ProcessBuilder pb = new ProcessBuilder(bin.toString(), "--listen", "127.0.0.1:0",
        "--api-listen", "127.0.0.1:0", "--data-dir", dir.toString());
    cleanEnv(pb, env);
    pb.redirectOutput(ProcessBuilder.Redirect.DISCARD);
    process = pb.start();
    CompletableFuture<Integer> listening = new CompletableFuture<>();
    boolean verbose = "1".equals(System.getenv("AO_TEST_VERBOSE"));
    Thread drain = new Thread(() -> {
      // Keep reading for the whole run, or the server would block on a full pipe.
      try (BufferedReader r = new BufferedReader(
          new InputStreamReader(process.getErrorStream(), StandardCharsets.UTF_8))) {
        String line;
        while ((line = r.readLine()) != null) {
          synchronized (lines) {
            lines.addLast(line);
            while (lines.size() > 500) lines.removeFirst();
          }
          if (verbose) System.err.println("[server] " + line);
          if (!listening.isDone() && line.contains("always-online listening")) {
            Matcher m = ADDR.matcher(line);
            if (m.find()) listening.complete(Integer.parseInt(m.group(1)));
          }
        }
      } catch (IOException ignored) {
        // the process is gone
      }
      listening.completeExceptionally(new IllegalStateException("server exited before listening"));
    }, "ao-server-log");
    drain.setDaemon(true);
    drain.start();
    int p;
    try {
      p = listening.get(15, TimeUnit.SECONDS);
    } catch (Exception e) {
      process.destroyForcibly();
      deleteDir();
      throw new IllegalStateException("server did not report listening: " + e + "\n" + tail(50), e);
    }
    port = p;
    url = "http://127.0.0.1:" + port;
  }

  /** The token of user `uid`, created with the CLI on first use. */
  String token(String uid) {
    return tokens.computeIfAbsent(uid, this::createUser);
  }

  private String createUser(String uid) {
    try {
      ProcessBuilder pb = new ProcessBuilder(binary().toString(), "user", "create", uid,
          "--data-dir", dir.toString());
      cleanEnv(pb, Map.of());
      pb.redirectError(ProcessBuilder.Redirect.DISCARD);
      Process p = pb.start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
      if (!p.waitFor(10, TimeUnit.SECONDS) || p.exitValue() != 0 || !out.matches("\\S+")) {
        p.destroyForcibly();
        throw new IllegalStateException("user create " + uid + " failed; printed " + out);
      }
      return out;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** The last `n` log lines, for failure messages. */
  String tail(int n) {
    synchronized (lines) {
      return String.join("\n", lines.stream().skip(Math.max(0, lines.size() - n)).toList());
    }
  }

  /** SIGTERM, wait (SIGKILL after 8 s), remove the data dir. */
  @Override
  public void close() throws InterruptedException {
    if (process.isAlive()) {
      long start = System.nanoTime();
      process.destroy(); // SIGTERM
      boolean exited = process.waitFor(8, TimeUnit.SECONDS);
      if (!exited) {
        process.destroyForcibly();
        process.waitFor(5, TimeUnit.SECONDS);
      }
      long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
      if (!exited || ms > 3000) {
        // Every client is closed by now: a slow exit is the server's.
        System.err.println("WARNING: the server needed " + (exited ? ms + " ms" : "SIGKILL")
            + " to stop after SIGTERM\n" + tail(5));
      }
    }
    deleteDir();
  }

  private void deleteDir() {
    try (Stream<Path> walk = Files.walk(dir)) {
      walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException ignored) {
      // best effort
    }
  }
}
