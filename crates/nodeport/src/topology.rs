//! Endpoint categorisation (`CategorizeEndpoints`, spec §3.1, §5.4).
//!
//! Owns which endpoints of a service port are usable from this node: the *cluster* set
//! (Ready anywhere, else Serving+Terminating anywhere), the *local* set (local Ready, else
//! local Serving+Terminating) and `has_any`. Topology hints are not modelled (§5.3: they would
//! only narrow the cluster set). Pure functions; no state.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use crate::model::{Endpoint, EndpointSlice, ServicePort, ServiceRef};

/// The result of categorising one service port's endpoints, as indices into the input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categorized {
    /// Endpoints for Cluster policy (and for pod/host short-circuit traffic).
    pub cluster: Vec<usize>,
    /// Endpoints for Local policy.
    pub local: Vec<usize>,
    /// Any Ready or Serving+Terminating endpoint anywhere (`hasAnyEndpoints`).
    pub has_any: bool,
}

fn is_local(ep: &Endpoint, node_name: &str) -> bool {
    ep.node_name.as_deref() == Some(node_name)
}

fn serving_terminating(ep: &Endpoint) -> bool {
    ep.serving && ep.terminating
}

/// `CategorizeEndpoints` for one service port on node `node_name`.
pub fn categorize(endpoints: &[Endpoint], node_name: &str) -> Categorized {
    let pick = |f: &dyn Fn(&Endpoint) -> bool| -> Vec<usize> {
        endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| f(e))
            .map(|(i, _)| i)
            .collect()
    };
    let mut cluster = pick(&|e| e.ready);
    if cluster.is_empty() {
        cluster = pick(&serving_terminating);
    }
    let mut local = pick(&|e| e.ready && is_local(e, node_name));
    if local.is_empty() {
        local = pick(&|e| serving_terminating(e) && is_local(e, node_name));
    }
    let has_any = endpoints.iter().any(|e| e.ready || serving_terminating(e));
    Categorized {
        cluster,
        local,
        has_any,
    }
}

/// The endpoints of one service port: for every slice of `service`, the slice port with the
/// same name and protocol, each address once, ordered by their `"ip:port"` string as
/// kube-proxy orders them (the order of the KUBE-SVC rules).
pub fn port_endpoints<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    service: &ServiceRef,
    port: &ServicePort,
) -> Vec<(Endpoint, SocketAddr)> {
    let mut eps: Vec<(Endpoint, SocketAddr)> = Vec::new();
    for s in slices.into_iter().filter(|s| s.service == *service) {
        let Some(p) = s
            .ports
            .iter()
            .find(|p| p.name == port.name && p.protocol == port.protocol)
        else {
            continue;
        };
        for e in &s.endpoints {
            let a = SocketAddr::new(e.ip, p.port);
            if !eps.iter().any(|(_, x)| *x == a) {
                eps.push((e.clone(), a));
            }
        }
    }
    // Addresses are distinct here, so an unstable (cached-key) sort gives the same order.
    eps.sort_by_cached_key(|(_, a)| a.to_string());
    eps
}

/// Distinct IPs of local **Ready** endpoints (`LocalReadyEndpoints()`, health check §4.2);
/// terminating endpoints never count.
pub fn local_ready_ips<'a>(
    endpoints: impl IntoIterator<Item = &'a Endpoint>,
    node_name: &str,
) -> BTreeSet<IpAddr> {
    endpoints
        .into_iter()
        .filter(|e| e.ready && is_local(e, node_name))
        .map(|e| e.ip)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(n: u8, node: &str, ready: bool, serving: bool, terminating: bool) -> Endpoint {
        Endpoint {
            ip: IpAddr::from([10, 244, 0, n]),
            node_name: Some(node.into()),
            ready,
            serving,
            terminating,
        }
    }

    #[test]
    fn ready_endpoints_win() {
        let eps = [
            ep(1, "a", true, true, false),
            ep(2, "b", false, true, true),
            ep(3, "a", false, true, true),
        ];
        let c = categorize(&eps, "a");
        assert_eq!(c.cluster, vec![0]);
        assert_eq!(c.local, vec![0]);
        assert!(c.has_any);
    }

    #[test]
    fn terminating_fallback_cluster_and_local() {
        let eps = [
            ep(1, "a", false, true, true),
            ep(2, "b", false, true, true),
            ep(3, "b", false, false, true),
        ];
        let c = categorize(&eps, "a");
        assert_eq!(c.cluster, vec![0, 1]);
        assert_eq!(c.local, vec![0]);
        assert!(c.has_any);
        let c = categorize(&eps, "c");
        assert!(c.local.is_empty());
    }

    #[test]
    fn local_falls_back_even_if_remote_ready() {
        let eps = [ep(1, "a", false, true, true), ep(2, "b", true, true, false)];
        let c = categorize(&eps, "a");
        assert_eq!(c.cluster, vec![1]);
        assert_eq!(c.local, vec![0]);
    }

    #[test]
    fn not_serving_is_unusable() {
        let eps = [ep(1, "a", false, false, true)];
        let c = categorize(&eps, "a");
        assert!(!c.has_any);
        assert!(c.cluster.is_empty() && c.local.is_empty());
    }
}
