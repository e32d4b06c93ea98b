package alwaysonline.clients;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.GZIPInputStream;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * Plain-Java views of the org.json values the client hands out (Map, List,
 * String, Long, Double, Boolean, null), so payloads compare with equals().
 * Works with the old org.json (20090211) that both client lines depend on.
 */
final class Json {
  private Json() {}

  /** An object from key/value pairs, numbers normalised like received ones. */
  static Map<String, Object> obj(Object... kv) {
    Map<String, Object> m = new LinkedHashMap<>();
    for (int i = 0; i < kv.length; i += 2) {
      m.put((String) kv[i], norm(kv[i + 1]));
    }
    return m;
  }

  /** A copy of `base` with more pairs. */
  static Map<String, Object> with(Map<String, Object> base, Object... kv) {
    Map<String, Object> m = new LinkedHashMap<>(base);
    m.putAll(obj(kv));
    return m;
  }

  static List<Object> list(Object... items) {
    List<Object> l = new ArrayList<>();
    for (Object o : items) l.add(norm(o));
    return l;
  }

  /** Integral numbers become Long, other numbers Double; maps and lists are copied. */
  static Object norm(Object v) {
    if (v == null || v == JSONObject.NULL) return null;
    if (v instanceof JSONObject || v instanceof JSONArray) return fromOrg(v);
    if (v instanceof Integer || v instanceof Long || v instanceof Short || v instanceof Byte) {
      return ((Number) v).longValue();
    }
    if (v instanceof Number) {
      double d = ((Number) v).doubleValue();
      if (d == Math.rint(d) && Math.abs(d) < 1e15) return (long) d;
      return d;
    }
    if (v instanceof Map<?, ?> m) {
      Map<String, Object> out = new LinkedHashMap<>();
      for (Map.Entry<?, ?> e : m.entrySet()) out.put((String) e.getKey(), norm(e.getValue()));
      return out;
    }
    if (v instanceof List<?> l) {
      List<Object> out = new ArrayList<>();
      for (Object o : l) out.add(norm(o));
      return out;
    }
    return v;
  }

  /** A received value (JSONObject, JSONArray, scalar) as plain Java. */
  static Object fromOrg(Object v) {
    try {
      if (v instanceof JSONObject o) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (Iterator<?> it = o.keys(); it.hasNext(); ) {
          String k = (String) it.next();
          out.put(k, fromOrg(o.get(k)));
        }
        return out;
      }
      if (v instanceof JSONArray a) {
        List<Object> out = new ArrayList<>();
        for (int i = 0; i < a.length(); i++) out.add(fromOrg(a.get(i)));
        return out;
      }
    } catch (JSONException e) {
      throw new IllegalStateException(e);
    }
    return norm(v);
  }

  /** A plain value as org.json, for emitting. */
  static Object toOrg(Object v) {
    try {
      if (v instanceof Map<?, ?> m) {
        JSONObject o = new JSONObject();
        for (Map.Entry<?, ?> e : m.entrySet()) o.put((String) e.getKey(), toOrg(e.getValue()));
        return o;
      }
      if (v instanceof List<?> l) {
        JSONArray a = new JSONArray();
        for (Object o : l) a.put(toOrg(o));
        return a;
      }
    } catch (JSONException e) {
      throw new IllegalStateException(e);
    }
    return v == null ? JSONObject.NULL : v;
  }

  @SuppressWarnings("unchecked")
  static Map<String, Object> map(Object v) {
    return (Map<String, Object>) v;
  }

  @SuppressWarnings("unchecked")
  static List<Object> items(Object v) {
    return (List<Object>) v;
  }

  /** The `data` of a gzip sync reply: base64 → gunzip → JSON array. */
  static List<Object> gunzipBase64(String b64) {
    byte[] gz = Base64.getDecoder().decode(b64);
    try (GZIPInputStream in = new GZIPInputStream(new ByteArrayInputStream(gz))) {
      String text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
      return items(fromOrg(new JSONArray(text)));
    } catch (IOException | JSONException e) {
      throw new AssertionError("gzip sync data does not decode: " + e, e);
    }
  }

  /** Sorted by msgId ("1", else msgId), for comparing sets of update messages. */
  static List<Object> byMsgId(List<Object> msgs) {
    List<Object> out = new ArrayList<>(msgs);
    out.sort(Comparator.comparing(m -> {
      Map<String, Object> mm = map(m);
      return String.valueOf(mm.containsKey("1") ? mm.get("1") : mm.get("msgId"));
    }));
    return out;
  }

  /** Short text of a value, for failure messages. */
  static String brief(Object v) {
    String s = String.valueOf(v);
    return s.length() > 160 ? s.substring(0, 160) + "…(" + s.length() + " chars)" : s;
  }
}
