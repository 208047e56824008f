//! Who the client is: the socket peer, or, when the peer is a trusted proxy, the address that
//! proxy (and the trusted proxies before it) recorded in `X-Forwarded-For`.
//!
//! `X-Forwarded-For` is a list each proxy appends its own peer to, so only the entries added by
//! proxies we trust are facts; everything to their left was written by the client. The walk
//! goes right to left from the socket peer: while the current hop is a trusted proxy, step to
//! the entry it appended; the first hop that is not a trusted proxy is the client. A peer that
//! is not a trusted proxy is the client, whatever headers it sends (README, "Client IP").
//!
//! `--trust-forwarded-for` (deprecated) trusts the socket peer whatever its address, and only
//! it: the client is the last `X-Forwarded-For` entry unless `--trusted-proxies` names it too.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// Most `X-Forwarded-For` entries examined: the walk stops at the first untrusted hop, so only a
/// chain of trusted-looking entries (written by a client inside a trusted network) gets long.
const MAX_HOPS: usize = 64;

/// The proxies whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    /// `--trust-forwarded-for`: the socket peer is a trusted proxy whatever its address.
    trust_any_peer: bool,
}

impl TrustedProxies {
    /// Trusts the proxies in `nets` (`--trusted-proxies`), and any socket peer when
    /// `trust_any_peer` (the deprecated `--trust-forwarded-for`).
    pub fn new(nets: Vec<IpNet>, trust_any_peer: bool) -> Self {
        Self {
            nets: nets.into_iter().map(|n| n.trunc()).collect(),
            trust_any_peer,
        }
    }

    /// Whether forwarded headers are read at all.
    pub fn is_enabled(&self) -> bool {
        self.trust_any_peer || !self.nets.is_empty()
    }

    /// Whether `peer` is a proxy we trust: many clients share its connections, so it is not held
    /// to the per-IP connection cap (their own addresses are limited per request instead).
    pub fn is_proxy(&self, peer: IpAddr) -> bool {
        self.trust_any_peer || self.trusts(peer.to_canonical())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` with `headers`.
    pub fn client_ip(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        // A dual-stack socket reports IPv4 clients as `::ffff:a.b.c.d`: key them as IPv4.
        let peer = peer.ip().to_canonical();
        if !(self.trust_any_peer || self.trusts(peer)) {
            return peer;
        }
        // Every `X-Forwarded-For` line in order, as one list (RFC 9110 section 5.3).
        let mut hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .rev()
            .take(MAX_HOPS);
        let mut client = peer;
        loop {
            match hops.next().map(parse_hop) {
                // The header ran out (or `MAX_HOPS`): every hop was a trusted proxy; the first
                // one is the client.
                None => return client,
                // A trusted proxy passed on garbage: it is the last address we can vouch for.
                Some(None) => return client,
                Some(Some(hop)) => {
                    client = hop;
                    if !self.trusts(hop) {
                        return hop;
                    }
                }
            }
        }
    }
}

/// One `X-Forwarded-For` entry: an IP, optionally with a port (`1.2.3.4:80`, `[::1]:80`), as
/// some proxies write it.
fn parse_hop(raw: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

/// Parses one `--trusted-proxies` entry: a CIDR (`10.0.0.0/8`, `fd00::/8`) or a bare address
/// (one host).
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an IP network (like 10.0.0.0/8) or address"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| parse_net(n).unwrap()).collect(), false)
    }

    fn headers(lines: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append("x-forwarded-for", HeaderValue::from_static(line));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(ip(s), 5000)
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let h = headers(&["1.1.1.1"]);
        assert_eq!(
            TrustedProxies::default().client_ip(&h, peer("10.0.0.1")),
            ip("10.0.0.1")
        );
    }

    /// Regression (issue 10, item 5): an untrusted peer's header used to be believed whenever
    /// `--trust-forwarded-for` was on.
    #[test]
    fn an_untrusted_peers_header_is_ignored() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&["203.0.113.9"]);
        assert_eq!(p.client_ip(&h, peer("198.51.100.7")), ip("198.51.100.7"));
    }

    /// Regression (issue 10, item 5): the last entry was taken even when it was another trusted
    /// proxy of the chain, not the client.
    #[test]
    fn walks_right_to_left_past_trusted_hops() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.1"]);
        // spoofed, client, CDN-internal hop, LB.
        let h = headers(&["6.6.6.6, 203.0.113.9", "10.1.2.3, 192.168.1.1"]);
        assert_eq!(p.client_ip(&h, peer("10.0.0.1")), ip("203.0.113.9"));
        // A client that prepends a trusted-looking entry does not move the answer.
        let h = headers(&["10.9.9.9, 203.0.113.9, 10.1.2.3"]);
        assert_eq!(p.client_ip(&h, peer("10.0.0.1")), ip("203.0.113.9"));
    }

    #[test]
    fn all_hops_trusted_gives_the_leftmost_and_no_header_gives_the_peer() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&["10.3.3.3, 10.2.2.2"]);
        assert_eq!(p.client_ip(&h, peer("10.0.0.1")), ip("10.3.3.3"));
        assert_eq!(
            p.client_ip(&HeaderMap::new(), peer("10.0.0.1")),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&["nope, 10.2.2.2"]);
        assert_eq!(p.client_ip(&h, peer("10.0.0.1")), ip("10.2.2.2"));
        let h = headers(&["unknown"]);
        assert_eq!(p.client_ip(&h, peer("10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn ports_ipv6_and_mapped_addresses() {
        let p = proxies(&["10.0.0.0/8", "fd00::/8"]);
        let h = headers(&["[2001:db8::1]:443, 10.2.2.2:80"]);
        assert_eq!(p.client_ip(&h, peer("fd00::5")), ip("2001:db8::1"));
        // A dual-stack socket's IPv4-mapped peer matches IPv4 networks.
        let h = headers(&["203.0.113.9"]);
        assert_eq!(p.client_ip(&h, peer("::ffff:10.0.0.1")), ip("203.0.113.9"));
        assert_eq!(
            TrustedProxies::default().client_ip(&h, peer("::ffff:198.51.100.7")),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn the_walk_is_bounded() {
        let p = proxies(&["10.0.0.0/8"]);
        let long = format!("{}10.0.0.2", "10.0.0.1, ".repeat(10_000));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(&long).unwrap());
        assert_eq!(p.client_ip(&h, peer("10.0.0.9")), ip("10.0.0.1"));
    }

    #[test]
    fn deprecated_trust_forwarded_for_trusts_only_the_peer() {
        let p = TrustedProxies::new(Vec::new(), true);
        let h = headers(&["1.1.1.1, 2.2.2.2", "3.3.3.3"]);
        assert_eq!(p.client_ip(&h, peer("10.0.0.1")), ip("3.3.3.3"));
        let junk = headers(&["nope"]);
        assert_eq!(p.client_ip(&junk, peer("10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn parses_networks_and_bare_addresses() {
        assert_eq!(
            parse_net("10.0.0.0/8").unwrap(),
            "10.0.0.0/8".parse().unwrap()
        );
        assert_eq!(
            parse_net(" 192.168.1.1 ").unwrap(),
            "192.168.1.1/32".parse().unwrap()
        );
        assert_eq!(parse_net("::1").unwrap(), "::1/128".parse().unwrap());
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("everything").is_err());
        // Host bits are cleared.
        let p = proxies(&["10.1.2.3/8"]);
        assert!(p.trusts(ip("10.200.0.1")));
    }
}
