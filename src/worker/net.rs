//! Which addresses a delivery may reach, checked after DNS resolution so a
//! public name that resolves to a private address is refused too (SSRF).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::NetworkPolicy;

impl NetworkPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_private || !is_internal(ip) || self.allowed.iter().any(|net| net.contains(&ip))
    }

    /// Whether `url` (parsed, so `..` and its encodings are resolved) is one
    /// of hookline's own sandbox capture URLs: the prefix and a token.
    pub fn is_own_sandbox(&self, url: &reqwest::Url) -> bool {
        let Some(prefix) = &self.sandbox_prefix else { return false };
        url.as_str().strip_prefix(prefix.as_str()).is_some_and(|token| {
            !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
    }
}

/// Addresses that are not plainly on the public internet: loopback,
/// private, link-local, shared, multicast, reserved, benchmarking and
/// documentation ranges (IANA's special-purpose registries), and every IPv6
/// form that carries or tunnels an IPv4 address (mapped, IPv4-compatible,
/// NAT64, 6to4, Teredo), which a receiver's DNS could use to reach inside.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let segments = v6.segments();
            // The well-known NAT64 prefix reaches whatever IPv4 address it embeds.
            let nat64 = segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6] == [0, 0, 0, 0];
            if nat64 {
                let [.., a, b, c, d] = v6.octets();
                return is_internal_v4(Ipv4Addr::new(a, b, c, d));
            }
            is_internal_v6(v6)
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || (a == 192 && b == 0 && c == 2)         // documentation: TEST-NET-1,
        || (a == 198 && b == 51 && c == 100)      //   TEST-NET-2,
        || (a == 203 && b == 0 && c == 113)       //   TEST-NET-3
        || a == 0                                 // "this network"
        || (a == 100 && (64..128).contains(&b))   // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0)         // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99)       // 6to4 relay anycast (deprecated)
        || (a == 198 && (b == 18 || b == 19))     // benchmarking, 198.18.0.0/15
        || a >= 240 // reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || s[0] == 0xfec0                                   // deprecated site-local
        || s[..6] == [0; 6]                                 // IPv4-compatible ::a.b.c.d (deprecated)
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)    // local-use NAT64, 64:ff9b:1::/48
        || s[0] == 0x2002                                   // 6to4: tunnels to an embedded IPv4
        || (s[0] == 0x2001 && s[1] == 0)                    // Teredo: tunnels to an embedded IPv4
        || s[..4] == [0x100, 0, 0, 0]                       // discard-only, 100::/64
        || (s[0] == 0x2001 && s[1] == 0xdb8)                // documentation, 2001:db8::/32
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation, 3fff::/20
}

/// DNS resolution refused every address the name resolved to.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to blocked addresses")]
pub struct BlockedAddress(pub String);

/// The name did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {name}: {source}")]
pub struct DnsFailed {
    pub name: String,
    pub source: std::io::Error,
}

/// A reqwest resolver that drops addresses the policy does not permit.
pub struct GuardedResolver {
    pub policy: Arc<NetworkPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| DnsFailed { name: host.clone(), source })?;
            let permitted: Vec<SocketAddr> = resolved.filter(|a| policy.permits(a.ip())).collect();
            if permitted.is_empty() {
                return Err(Box::new(BlockedAddress(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for blocked in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "198.18.0.1",
            "198.19.255.254",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "192.88.99.1",
            "::7f00:1",
            "::a00:1",
            "::808:808",
            "2002:7f00:1::1",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b:1::a00:1",
            "64:ff9b:1::808:808",
            "100::1",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff::1",
        ] {
            assert!(is_internal(ip(blocked)), "{blocked} should be internal");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "198.17.255.255",
            "198.20.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2001:4860:4860::8888",
            "2001:1::1",
            "2003::1",
            "3ffe::1",
            "4000::1",
        ] {
            assert!(!is_internal(ip(public)), "{public} should be public");
        }
    }

    #[test]
    fn only_a_token_under_the_sandbox_prefix_is_the_own_sandbox() {
        let policy =
            NetworkPolicy { sandbox_prefix: Some("http://127.0.0.1:8080/sandbox/".into()), ..Default::default() };
        let own = |u: &str| policy.is_own_sandbox(&reqwest::Url::parse(u).unwrap());
        assert!(own("http://127.0.0.1:8080/sandbox/Ab_3-x"));
        assert!(!own("http://127.0.0.1:8080/sandbox/"));
        assert!(!own("http://127.0.0.1:8080/sandbox/x/../../v1/tokens"));
        assert!(!own("http://127.0.0.1:8080/sandbox/%2e%2e/v1/tokens"));
        assert!(!own("http://127.0.0.1:8080/sandbox/abc?x=1"));
        assert!(!own("http://127.0.0.1:8081/sandbox/abc"));
        assert!(!own("http://127.0.0.1:8080/v1/sandbox/abc"));
        assert!(!NetworkPolicy::default().is_own_sandbox(&reqwest::Url::parse("http://a/sandbox/b").unwrap()));
    }

    #[test]
    fn policy_allows_private_only_when_configured() {
        let strict = NetworkPolicy::default();
        assert!(!strict.permits(ip("127.0.0.1")));
        assert!(strict.permits(ip("1.1.1.1")));
        let open = NetworkPolicy { allow_private: true, ..NetworkPolicy::default() };
        assert!(open.permits(ip("127.0.0.1")));
        let listed = NetworkPolicy { allowed: vec!["10.0.0.0/8".parse().unwrap()], ..NetworkPolicy::default() };
        assert!(listed.permits(ip("10.9.9.9")));
        assert!(!listed.permits(ip("192.168.0.1")));
    }
}
