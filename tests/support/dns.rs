//! A DNS server for one test: answers `A` queries over UDP for the names it is given (RFC 1035
//! wire format, one question per query), `NXDOMAIN` for any other name, and an empty answer
//! for other record types of a known name (so a resolver asking `A` and `AAAA` together gets
//! both replies). It counts the queries per name, so a test can tell a name resolved through
//! `/etc/resolv.conf` from one taken from `/etc/hosts`. Bind it on `127.0.0.1:53` inside a
//! private network namespace ([`crate::netns`]), the address a test root's `resolv.conf` names.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The running server; stops when dropped.
pub struct DnsStandIn {
    queries: Arc<Mutex<HashMap<String, u64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const TYPE_A: u16 = 1;

impl DnsStandIn {
    /// Starts answering on `addr` for `records` (name, IPv4 address).
    pub fn start(addr: SocketAddr, records: &[(&str, Ipv4Addr)]) -> DnsStandIn {
        let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("binding DNS on {addr}: {e}"));
        // The loop checks for shutdown this often.
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("a read timeout on a UDP socket");
        let records: HashMap<String, Ipv4Addr> = records
            .iter()
            .map(|(n, ip)| (n.to_ascii_lowercase(), *ip))
            .collect();
        let queries = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (queries, stop) = (queries.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Some((name, reply)) = answer(&buf[..n], &records) else {
                        continue;
                    };
                    *queries
                        .lock()
                        .expect("the query count")
                        .entry(name)
                        .or_insert(0) += 1;
                    let _ = socket.send_to(&reply, from);
                }
            })
        };
        DnsStandIn {
            queries,
            stop,
            thread: Some(thread),
        }
    }

    /// How many queries (of any type) asked for `name`.
    pub fn queries(&self, name: &str) -> u64 {
        self.queries
            .lock()
            .expect("the query count")
            .get(&name.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for DnsStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reply to one query: its name and the reply's bytes; `None` for what is not a
/// well-formed standard query.
fn answer(query: &[u8], records: &HashMap<String, Ipv4Addr>) -> Option<(String, Vec<u8>)> {
    let header = query.get(..12)?;
    // One question, QR clear (a query), OPCODE 0 (standard).
    if header[2] & 0xF8 != 0 || u16::from_be_bytes([header[4], header[5]]) != 1 {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = query.get(12..at + 4)?;
    let name = labels.join(".");
    let found = records.get(&name);
    let a = found.filter(|_| qtype == TYPE_A);
    let mut reply = Vec::with_capacity(question.len() + 28);
    reply.extend_from_slice(&header[..2]);
    // QR, the query's RD, RA; RCODE 3 (NXDOMAIN) for a name we do not know.
    reply.push(0x80 | (header[2] & 0x01));
    reply.push(if found.is_some() { 0x80 } else { 0x83 });
    reply.extend_from_slice(&[0, 1, 0, u8::from(a.is_some()), 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if let Some(ip) = a {
        // The name by pointer to the question, A, IN, TTL 60, four bytes of address.
        reply.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some((name, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(u8::try_from(label.len()).expect("a short label"));
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn answers_a_known_name_with_its_address_and_others_with_nxdomain() {
        let records = HashMap::from([("a.test".to_owned(), Ipv4Addr::new(127, 0, 0, 7))]);
        let (name, reply) = answer(&query("A.test", TYPE_A), &records).expect("a reply");
        assert_eq!(name, "a.test");
        assert_eq!(&reply[..4], &[0x12, 0x34, 0x81, 0x80]);
        assert_eq!(&reply[6..8], &[0, 1], "one answer");
        assert_eq!(&reply[reply.len() - 4..], &[127, 0, 0, 7]);
        let (_, aaaa) = answer(&query("a.test", 28), &records).expect("a reply");
        assert_eq!(
            (aaaa[3], &aaaa[6..8]),
            (0x80, &[0u8, 0][..]),
            "no data, no error"
        );
        let (_, other) = answer(&query("b.test", TYPE_A), &records).expect("a reply");
        assert_eq!(other[3] & 0x0F, 3, "NXDOMAIN");
        assert_eq!(answer(&[0; 5], &records), None);
    }
}
