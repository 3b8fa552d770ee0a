//! Free loopback ports.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

/// Ports already handed out by this process. The OS may give the same ephemeral port to two
/// back-to-back `bind(0)` calls once the first listener is dropped, so two tests of one binary
/// could otherwise race for one port; other processes are covered by the caller's retry.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Where test servers listen: below Linux's ephemeral range (32768-60999), so
/// that while a server is down for a restart no outgoing connection (a client
/// reconnecting to it, say) can be given its port by the OS and take it.
const PORTS: std::ops::Range<u16> = 20_000..32_768;

/// A loopback port that was free a moment ago and that this process has not handed out before.
pub(crate) fn free_port() -> u16 {
    for attempt in 0..1_000u64 {
        let port = candidate(attempt);
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("could not find a free loopback port in {PORTS:?} in 1000 tries");
}

/// A pseudo-random port of `PORTS`: test binaries running at the same time
/// draw different sequences (the hasher's keys are random per process).
fn candidate(attempt: u64) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static SEED: std::sync::LazyLock<std::collections::hash_map::RandomState> =
        std::sync::LazyLock::new(Default::default);
    let mut hasher = SEED.build_hasher();
    hasher.write_u64(attempt);
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos()),
    );
    let span = u64::from(PORTS.end - PORTS.start);
    PORTS.start + u16::try_from(hasher.finish() % span).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_hands_out_a_port_twice() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
        assert!(ports.iter().all(|port| PORTS.contains(port)));
    }
}
