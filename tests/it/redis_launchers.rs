//! The private Redis launchers of `support::redis` work: a single node keeps
//! its data across a restart (AOF reload), even after SIGKILL, and a
//! three-master cluster serves keys.

use crate::support;

use support::redis::{RedisCluster, RedisServer};

#[test]
fn server_reloads_its_aof_after_restart() {
    let mut redis = RedisServer::start();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert_eq!(redis.cli(&["set", "greeting", "hello"]), "OK");
    assert_eq!(redis.cli(&["get", "greeting"]), "hello");

    // Graceful stop and start again on the same port and directory.
    let port = redis.port();
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.cli(&["get", "greeting"]), "hello");

    // kill -9 loses nothing either: appendfsync always.
    assert_eq!(redis.cli(&["set", "after", "crash"]), "OK");
    redis.kill();
    assert!(!redis.is_running());
    redis.restart();
    assert_eq!(redis.cli(&["get", "greeting"]), "hello");
    assert_eq!(redis.cli(&["get", "after"]), "crash");
}

#[test]
fn cluster_of_three_masters_serves_keys() {
    let cluster = RedisCluster::start();
    let [p1, p2, p3] = cluster.ports();
    assert_eq!(
        cluster.url(),
        format!("redis-cluster://127.0.0.1:{p1}?node=127.0.0.1:{p2}&node=127.0.0.1:{p3}")
    );
    assert_eq!(cluster.cli(&["set", "k{x}", "v"]), "OK");
    assert_eq!(cluster.cli(&["get", "k{x}"]), "v");
    let info = cluster.cli(&["cluster", "info"]);
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert!(info.contains("cluster_known_nodes:3"), "{info}");
}
