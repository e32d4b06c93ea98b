#!/usr/bin/env python3
"""Writes always-online.json, the Grafana dashboard of Always Online's
/metrics, next to this script. Edit the panels here and run it again."""

import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}

PANELS = [
    # (title, unit, [(expr, legend)])
    ("Ready", "none", [("ao_ready", "{{instance}}")]),
    ("Connections by client generation", "short",
     [("sum by (engineio) (ao_connected_sockets)", "engine.io {{engineio}}")]),
    ("Users and rooms (cluster)", "short",
     [("max(ao_authenticated_users)", "authenticated"), ("max(ao_rooms)", "rooms")]),
    ("Msgs in, relayed, stored", "ops",
     [("sum(rate(ao_messages_received_total[1m]))", "received"),
      ("sum(rate(ao_messages_relayed_total[1m]))", "relayed (deliveries)"),
      ("sum(rate(ao_messages_stored_total[1m]))", "stored")]),
    ("Msgs refused by reason", "ops",
     [("sum by (reason) (rate(ao_messages_dropped_total[5m]))", "{{reason}}")]),
    ("Authentication failures by reason", "ops",
     [("sum by (reason) (rate(ao_auth_failures_total[5m]))", "{{reason}}")]),
    ("Store latency", "s",
     [("histogram_quantile(0.5, sum by (le, op) (rate(ao_store_operation_seconds_bucket[5m])))", "p50 {{op}}"),
      ("histogram_quantile(0.99, sum by (le, op) (rate(ao_store_operation_seconds_bucket[5m])))", "p99 {{op}}")]),
    ("Slow clients and disconnects", "ops",
     [("sum(rate(ao_slow_clients_total[5m]))", "slow clients"),
      ("sum by (reason) (rate(ao_disconnects_total[5m]))", "disconnect {{reason}}")]),
    ("Refused connections and requests", "ops",
     [("sum by (reason) (rate(ao_connections_refused_total[5m]))", "connection {{reason}}"),
      ("sum by (reason) (rate(ao_requests_refused_total[5m]))", "request {{reason}}")]),
    ("Redis recovery", "short",
     [("sum by (instance) (increase(ao_relay_recovered_total[5m]))", "msgs recovered {{instance}}"),
      ("sum by (instance) (increase(ao_presence_recovered_total[5m]))", "presence recovered {{instance}}")]),
    ("Sync pages", "ops", [("sum(rate(ao_sync_pages_total[1m]))", "pages")]),
    ("Process memory", "bytes", [("process_resident_memory_bytes", "RSS {{instance}}")]),
    ("Open files", "short",
     [("process_open_fds", "open {{instance}}"), ("process_max_fds", "limit {{instance}}")]),
    ("CPU", "percentunit", [("rate(process_cpu_seconds_total[1m])", "{{instance}}")]),
]


def panel(i, title, unit, targets):
    return {
        "id": i + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(65 + j)}
            for j, (expr, legend) in enumerate(targets)
        ],
    }


dashboard = {
    "title": "Always Online",
    "uid": "always-online",
    "tags": ["always-online", "socket.io"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "templating": {"list": [{
        "name": "datasource", "label": "Prometheus", "type": "datasource",
        "query": "prometheus", "current": {}, "hide": 0,
    }]},
    "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "always-online.json")
with open(out, "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
