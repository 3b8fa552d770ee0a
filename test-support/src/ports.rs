//! Free loopback ports.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

/// Ports already handed out by this process. The OS may give the same ephemeral port to two
/// back-to-back `bind(0)` calls once the first listener is dropped, so two tests of one binary
/// could otherwise race for one port; other processes are covered by the caller's retry.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port that was free a moment ago and that this process has not handed out before.
pub(crate) fn free_port() -> u16 {
    for _ in 0..100 {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .unwrap_or_else(|error| panic!("cannot bind 127.0.0.1:0 to find a free port: {error}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("cannot read the port of a bound listener: {error}"))
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("could not find a loopback port that this process had not used yet in 100 tries");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_hands_out_a_port_twice() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
        assert!(!ports.contains(&0));
    }
}
