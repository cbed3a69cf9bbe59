//! `--max-connection-age`: closing long-lived keep-alive connections, so that clients spread
//! over new replicas after a scale-out instead of staying on the ones they first reached.
//!
//! A connection past its age gets `Connection: close` on its next response. Each connection's
//! age limit is drawn between half and all of the setting, so connections opened together do
//! not all close together: a wave of reconnections is what tiny_http's connection pool
//! handles worst (see `tiny/pool.rs`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Rotation {
    max_age: Option<Duration>,
    /// When each connection was first seen, and the age at which it is closed.
    connections: Mutex<HashMap<SocketAddr, (Instant, Duration)>>,
    jitter: RandomState,
}

/// Entries beyond this trigger a sweep of the ones that cannot belong to a live connection.
const SWEEP_AT: usize = 4096;

impl Rotation {
    pub fn new(max_age: Option<Duration>) -> Rotation {
        Rotation {
            max_age,
            connections: Mutex::new(HashMap::new()),
            jitter: RandomState::new(),
        }
    }

    /// Called once per response on a kept-alive connection: true when it should be the last.
    pub fn should_close(&self, peer: Option<SocketAddr>, now: Instant) -> bool {
        let (Some(max_age), Some(peer)) = (self.max_age, peer) else {
            return false;
        };
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let (since, limit) = *connections
            .entry(peer)
            .or_insert_with(|| (now, self.limit(max_age, peer)));
        if now.duration_since(since) >= limit {
            connections.remove(&peer);
            return true;
        }
        if connections.len() > SWEEP_AT {
            // A live connection this old would have been closed at its last request; an
            // entry that old belongs to a connection the client closed.
            connections.retain(|_, (seen, _)| now.duration_since(*seen) < max_age * 2);
        }
        false
    }

    /// Forgets a connection that is closing anyway.
    pub fn forget(&self, peer: Option<SocketAddr>) {
        if let (Some(_), Some(peer)) = (self.max_age, peer) {
            self.connections
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&peer);
        }
    }

    /// Between half and all of `max_age`, fixed per connection.
    fn limit(&self, max_age: Duration, peer: SocketAddr) -> Duration {
        let fraction = 0.5 + 0.5 * (self.jitter.hash_one(peer) % 1024) as f64 / 1024.0;
        max_age.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_closed_between_half_and_all_of_the_max_age() {
        let rotation = Rotation::new(Some(Duration::from_secs(10)));
        let t0 = Instant::now();
        let mut limits = Vec::new();
        for port in 5000..5050 {
            let peer: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            assert!(!rotation.should_close(Some(peer), t0));
            assert!(!rotation.should_close(Some(peer), t0 + Duration::from_millis(4999)));
            assert!(rotation.should_close(Some(peer), t0 + Duration::from_secs(10)));
            limits.push(rotation.limit(Duration::from_secs(10), peer));
            // The client's next connection from the same port starts afresh.
            assert!(!rotation.should_close(Some(peer), t0 + Duration::from_secs(11)));
        }
        limits.sort();
        assert!(
            limits[0] < limits[49],
            "the limits are spread, not all equal"
        );
    }

    #[test]
    fn without_a_max_age_nothing_is_tracked() {
        let rotation = Rotation::new(None);
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(!rotation.should_close(Some(peer), Instant::now() + Duration::from_secs(3600)));
        assert!(rotation.connections.lock().unwrap().is_empty());
    }
}
