//! The benchmarks' tools only ever talk to loopback addresses: the one check they share.

use anyhow::{bail, Context as _};

/// Refuses `url` unless its host is `localhost` or a loopback IP address (v4 or v6).
pub fn ensure(url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid url {url}"))?;
    let host = parsed
        .host_str()
        .with_context(|| format!("url {url} has no host"))?;
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("refusing {url}: only loopback addresses are targeted");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn only_loopback_hosts_pass() {
        for ok in [
            "http://127.0.0.1:8123",
            "http://localhost:1/",
            "http://[::1]:9000",
            "http://127.8.9.1",
        ] {
            super::ensure(ok).unwrap();
        }
        for refused in [
            "http://10.0.0.1:8123",
            "http://example.com/",
            "not a url",
            "data:x",
        ] {
            assert!(super::ensure(refused).is_err(), "{refused}");
        }
    }
}
