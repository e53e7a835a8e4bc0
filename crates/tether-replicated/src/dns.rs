//! Peers from DNS (feature `dns`): a Kubernetes headless service, a Consul or Nomad DNS name,
//! or any name whose records list the cluster's nodes.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use tether_core::BoxError;

use crate::Discovery;

/// What the records are.
#[derive(Clone, Debug)]
enum Records {
    /// SRV records: each names a node by its host name, with the replication port.
    Srv,
    /// A and AAAA records: each address is a node, all on `port`.
    Hosts { port: u16 },
}

/// Finds the cluster's nodes in DNS, asking again at every discovery interval, so that scaling
/// a deployment up or down changes the cluster without a restart.
///
/// - [`DnsDiscovery::srv`]: SRV records (`_peer._tcp.tether.prod.svc.cluster.local` for a
///   Kubernetes headless service with a port named `peer`). Each record names a node by its
///   target host name (without the final dot), reached at the record's port: give every node
///   that host name as its name (a StatefulSet pod's stable name), so names survive restarts.
/// - [`DnsDiscovery::hosts`]: A and AAAA records, each address a node on `port`. A node's name
///   is then its address and port (`10.1.2.3:7000`): give every node that as its name. A node
///   that comes back with another address is a new node to the cluster.
///
/// Answers are not cached: every question goes to the name server.
///
/// # Example
///
/// ```no_run
/// use tether_replicated::{DnsDiscovery, NodeConfig, PeerKey};
///
/// // On Kubernetes: a StatefulSet `tether` behind a headless service of the same name.
/// let name = std::env::var("POD_NAME")? + ".tether.prod.svc.cluster.local";
/// let key = PeerKey::new(std::env::var("TETHER_PEER_KEY")?)?;
/// let config = NodeConfig::new(name, "0.0.0.0:7000".parse()?, key)
///     .with_discovery(DnsDiscovery::srv("_peer._tcp.tether.prod.svc.cluster.local")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct DnsDiscovery {
    name: String,
    records: Records,
    resolver: TokioResolver,
}

impl std::fmt::Debug for DnsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsDiscovery")
            .field("name", &self.name)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl DnsDiscovery {
    /// Nodes from the SRV records of `name`, through the system's name servers
    /// (`/etc/resolv.conf`).
    ///
    /// # Errors
    ///
    /// When the system's resolver configuration cannot be read.
    pub fn srv(name: impl Into<String>) -> Result<Self, crate::Error> {
        Self::system(name.into(), Records::Srv)
    }

    /// Nodes from the A and AAAA records of `name`, each on `port`, through the system's name
    /// servers.
    ///
    /// # Errors
    ///
    /// When the system's resolver configuration cannot be read.
    pub fn hosts(name: impl Into<String>, port: u16) -> Result<Self, crate::Error> {
        Self::system(name.into(), Records::Hosts { port })
    }

    fn system(name: String, records: Records) -> Result<Self, crate::Error> {
        let mut builder = TokioResolver::builder_tokio().map_err(|e| crate::Error::Discovery {
            what: "the system's resolver configuration cannot be read",
            source: Box::new(e),
        })?;
        *builder.options_mut() = uncached(builder.options_mut().clone());
        Ok(Self {
            name,
            records,
            resolver: builder.build(),
        })
    }

    /// Asks the name server at `server` instead of the system's (plain UDP and TCP).
    pub fn with_name_server(mut self, server: SocketAddr) -> Self {
        let group = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
        let config = ResolverConfig::from_parts(None, Vec::new(), group);
        self.resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(uncached(ResolverOpts::default()))
                .build();
        self
    }
}

/// Options that keep no answer: membership must follow the records as they change.
fn uncached(mut options: ResolverOpts) -> ResolverOpts {
    options.cache_size = 0;
    options.positive_max_ttl = Some(std::time::Duration::ZERO);
    options.negative_max_ttl = Some(std::time::Duration::ZERO);
    options
}

#[async_trait::async_trait]
impl Discovery for DnsDiscovery {
    async fn discover(&self) -> Result<Vec<(String, SocketAddr)>, BoxError> {
        match self.records {
            Records::Hosts { port } => {
                let addresses = self.resolver.lookup_ip(self.name.as_str()).await?;
                Ok(addresses
                    .iter()
                    .map(|ip| {
                        let addr = SocketAddr::new(ip, port);
                        (addr.to_string(), addr)
                    })
                    .collect())
            }
            Records::Srv => {
                let records = self.resolver.srv_lookup(self.name.as_str()).await?;
                let mut nodes = Vec::new();
                for record in records.iter().take(crate::MAX_DISCOVERED + 1) {
                    let target = record.target().to_utf8();
                    let host = target.trim_end_matches('.').to_owned();
                    let Some(ip) = self
                        .resolver
                        .lookup_ip(target.as_str())
                        .await?
                        .iter()
                        .next()
                    else {
                        continue;
                    };
                    nodes.push((host, SocketAddr::new(ip, record.port())));
                }
                Ok(nodes)
            }
        }
    }
}
