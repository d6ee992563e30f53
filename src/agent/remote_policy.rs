//! Where remote sub-agents may live. A registered agent receives callers' words and the master
//! sends requests to its URL, so registration is the shape of an SSRF: the URL must be on a
//! configured allow-list, use https unless plain http is allowed, and resolve to a public
//! address unless private ones are allowed (loopback, RFC 1918, link-local, CGNAT, ULA, …).
//! The address check runs at registration for IP literals and again at every connection
//! through the HTTP client's resolver, so a name that later resolves inward is refused too.
//! The client follows no redirects.

use crate::config::RemoteAgentsConfig;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct RemotePolicy {
    cfg: RemoteAgentsConfig,
}

impl RemotePolicy {
    pub fn new(cfg: &RemoteAgentsConfig) -> RemotePolicy {
        RemotePolicy { cfg: cfg.clone() }
    }

    pub fn max_agents(&self) -> usize {
        self.cfg.max_agents
    }

    /// Why `url` may not be an agent's endpoint or health URL, if it may not. The message names
    /// the rule, never anything fetched.
    pub fn check(&self, url: &reqwest::Url) -> Result<(), String> {
        match url.scheme() {
            "https" => {}
            "http" if self.cfg.allow_http => {}
            "http" => {
                return Err(
                    "remote agents must use https (remote_agents.allow_http allows http)".into(),
                );
            }
            _ => return Err("remote agent URLs must be http or https".into()),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("remote agent URLs may not carry credentials".into());
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("remote agent URLs need a host".into()),
        };
        if !self.host_allowed(&host) {
            return Err(format!("host {host:?} is not in remote_agents.allow_hosts"));
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ if host == "localhost" || host.ends_with(".localhost") => {
                Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
            }
            _ => None,
        };
        if let Some(ip) = ip
            && !self.cfg.allow_private
            && !is_public(ip)
        {
            return Err(format!(
                "{ip} is a loopback, private or link-local address (remote_agents.allow_private allows it)"
            ));
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.cfg.allow_hosts.iter().any(|a| {
            let a = a.trim().to_ascii_lowercase();
            match a.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => a == host,
            }
        })
    }

    /// The HTTP client for remote agents: no redirects, its own resolver that drops addresses
    /// the policy does not allow, the per-attempt timeout.
    pub fn client(&self, timeout: std::time::Duration) -> reqwest::Client {
        crate::net::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(std::time::Duration::from_secs(3)))
            .dns_resolver(Arc::new(Resolver {
                allow_private: self.cfg.allow_private,
            }))
            .build()
            .unwrap_or_else(|_| crate::net::client())
    }
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // CGNAT 100.64/10
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF 192.0.0/24
                || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b)) // NAT64 (may reach v4 private)
        }
    }
}

struct Resolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no address a remote agent may use").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], http: bool, private: bool) -> RemotePolicy {
        RemotePolicy::new(&RemoteAgentsConfig {
            allow_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            allow_http: http,
            allow_private: private,
            ..RemoteAgentsConfig::default()
        })
    }

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn only_allowed_public_https_hosts_pass_by_default() {
        let p = policy(&["agents.example.com", "*.partner.net"], false, false);
        assert!(p.check(&url("https://agents.example.com/run")).is_ok());
        assert!(p.check(&url("https://billing.partner.net/run")).is_ok());
        for bad in [
            "https://evil.com/",
            "https://partner.net.evil.com/",
            "http://agents.example.com/",
            "ftp://agents.example.com/",
            "https://user:pw@agents.example.com/",
        ] {
            assert!(p.check(&url(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn private_addresses_need_an_explicit_allowance() {
        let hosts = [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "::1",
            "localhost",
            "100.64.0.1",
            "0.0.0.0",
            "fd00::1",
            "::ffff:127.0.0.1",
        ];
        let p = policy(&hosts, true, false);
        for h in hosts {
            let u = if h.contains(':') {
                format!("http://[{h}]:8080/")
            } else {
                format!("http://{h}:8080/")
            };
            let e = p.check(&url(&u)).unwrap_err();
            assert!(e.contains("private"), "{u}: {e}");
        }
        let p = policy(&["127.0.0.1"], true, true);
        assert!(p.check(&url("http://127.0.0.1:9000/agent")).is_ok());
        assert!(is_public("8.8.8.8".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
    }

    #[tokio::test]
    async fn the_resolver_drops_inward_addresses() {
        let r = Resolver {
            allow_private: false,
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(reqwest::dns::Resolve::resolve(&r, name).await.is_err());
        let r = Resolver {
            allow_private: true,
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(reqwest::dns::Resolve::resolve(&r, name).await.is_ok());
    }
}
