//! NSQ queue URLs.
//!
//! - `nsq://HOST[:PORT][,HOST[:PORT]…][?http_port=N]`: nsqd TCP addresses,
//!   used directly (port 4150 if none is given). Each nsqd's HTTP API (for
//!   `depth` and `delete_topic`) is on the same host at the TCP port plus
//!   one (nsqd's defaults: 4150 and 4151), or at `http_port` for every
//!   nsqd of the URL.
//! - `nsqlookup://HOST[:PORT][,HOST[:PORT]…]`: nsqlookupd HTTP addresses
//!   (port 4161 if none is given); nsqds are found through them (see
//!   [`super::discovery`]).
//!
//! Hosts may be names, IPv4 addresses or bracketed IPv6 addresses.

use super::NsqError;

pub(super) const DEFAULT_NSQD_TCP_PORT: u16 = 4150;
pub(super) const DEFAULT_LOOKUPD_HTTP_PORT: u16 = 4161;
/// URL option naming the HTTP port of every nsqd of an `nsq://` URL.
pub(super) const HTTP_PORT_OPTION: &str = "http_port";

/// One nsqd: where to speak TCP and HTTP to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Nsqd {
    /// `host:port` of its TCP protocol.
    pub tcp: String,
    /// `host:port` of its HTTP API.
    pub http: String,
}

/// Where the nsqds are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Nodes {
    /// These nsqds, always.
    Direct(Vec<Nsqd>),
    /// Whatever these nsqlookupds (`host:port` of their HTTP API) know.
    Lookup(Vec<String>),
}

/// Parses an `nsq://` or `nsqlookup://` URL.
pub(super) fn parse(url: &str) -> Result<Nodes, NsqError> {
    let bad = |what: String| NsqError::Url(format!("{url}: {what}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected nsq://HOST:PORT or nsqlookup://HOST:PORT".to_owned()))?;
    let lookup = match scheme.to_ascii_lowercase().as_str() {
        "nsq" => false,
        "nsqlookup" => true,
        other => return Err(bad(format!("unknown scheme {other:?}"))),
    };
    let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
    let hosts = hosts.strip_suffix('/').unwrap_or(hosts);
    if hosts.contains('/') {
        return Err(bad("an NSQ URL has no path".to_owned()));
    }
    if hosts.contains('@') {
        return Err(bad("an NSQ URL has no user info".to_owned()));
    }
    let mut http_port = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            HTTP_PORT_OPTION if !lookup => {
                let port = value
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad(format!("{HTTP_PORT_OPTION}={value} is not a port")))?;
                http_port = Some(port);
            }
            other => return Err(bad(format!("unknown option {other:?}"))),
        }
    }
    let default_port = if lookup {
        DEFAULT_LOOKUPD_HTTP_PORT
    } else {
        DEFAULT_NSQD_TCP_PORT
    };
    let mut addrs = Vec::new();
    for part in hosts.split(',') {
        let (host, port) = host_port(part.trim(), default_port).map_err(bad)?;
        if addrs.iter().any(|(h, p)| *h == host && *p == port) {
            continue;
        }
        addrs.push((host, port));
    }
    if lookup {
        return Ok(Nodes::Lookup(
            addrs.into_iter().map(|(h, p)| format!("{h}:{p}")).collect(),
        ));
    }
    let mut nsqds = Vec::with_capacity(addrs.len());
    for (host, port) in addrs {
        let http = match http_port {
            Some(p) => p,
            None => port.checked_add(1).ok_or_else(|| {
                bad(format!(
                    "the HTTP port of {host}:{port} would be {port}+1; give it with ?{HTTP_PORT_OPTION}=N"
                ))
            })?,
        };
        nsqds.push(Nsqd {
            tcp: format!("{host}:{port}"),
            http: format!("{host}:{http}"),
        });
    }
    Ok(Nodes::Direct(nsqds))
}

/// Splits `host[:port]` (`[v6][:port]` for IPv6); the host keeps its
/// brackets so that `host:port` stays a valid socket address.
fn host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    if s.is_empty() {
        return Err("no host".to_owned());
    }
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (inner, tail) = v6.split_once(']').ok_or_else(|| format!("{s:?}: unclosed '['"))?;
        if inner.is_empty() {
            return Err(format!("{s:?}: no host"));
        }
        match tail {
            "" => (format!("[{inner}]"), None),
            t => match t.strip_prefix(':') {
                Some(p) => (format!("[{inner}]"), Some(p)),
                None => return Err(format!("{s:?}: expected :PORT after ']'")),
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?}: no host"));
    }
    if !host.starts_with('[') && host.contains([':', ' ', '?', '#']) {
        return Err(format!("{s:?}: not a host (bracket IPv6 addresses)"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{s:?}: {p:?} is not a port"))?,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nsqd(tcp: &str, http: &str) -> Nsqd {
        Nsqd {
            tcp: tcp.to_owned(),
            http: http.to_owned(),
        }
    }

    #[test]
    fn direct_urls_list_nsqds_with_their_http_ports() {
        assert_eq!(
            parse("nsq://127.0.0.1:4150").ok(),
            Some(Nodes::Direct(vec![nsqd("127.0.0.1:4150", "127.0.0.1:4151")]))
        );
        assert_eq!(
            parse("nsq://a:14150,b,[::1]:5000/").ok(),
            Some(Nodes::Direct(vec![
                nsqd("a:14150", "a:14151"),
                nsqd("b:4150", "b:4151"),
                nsqd("[::1]:5000", "[::1]:5001"),
            ]))
        );
        assert_eq!(
            parse("NSQ://a:1, a:1 ,b:2?http_port=80").ok(),
            Some(Nodes::Direct(vec![nsqd("a:1", "a:80"), nsqd("b:2", "b:80")]))
        );
    }

    #[test]
    fn lookup_urls_list_lookupds() {
        assert_eq!(
            parse("nsqlookup://l1:4161,l2").ok(),
            Some(Nodes::Lookup(vec!["l1:4161".to_owned(), "l2:4161".to_owned()]))
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("nsq://", "no host"),
            ("nsq://a:1,,b:2", "no host"),
            ("nsq://a:x", "not a port"),
            ("nsq://a:0", "not a port"),
            ("nsq://a:70000", "not a port"),
            ("nsq://a:65535", "http_port"),
            ("nsq://a:1/topic", "no path"),
            ("nsq://u:p@a:1", "no user info"),
            ("nsq://a:1?http_port=x", "not a port"),
            ("nsq://a:1?tls=true", "unknown option"),
            ("nsqlookup://a?http_port=1", "unknown option"),
            ("nsq://[::1:4150", "unclosed"),
            ("nsq://::1:4150", "bracket IPv6"),
            ("nsqd://a", "unknown scheme"),
        ] {
            match parse(url) {
                Err(NsqError::Url(msg)) => assert!(msg.contains(says), "{url}: {msg}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
