//! The kube-proxy rule path of a new flow, as trace text (a child of [`super`], so it reads
//! the rule view without widening its visibility).
//!
//! Owns only formatting: given the typed [`FlowDecision`] the [`crate::proxier`] already made
//! for a flow's first packet, it rebuilds the iptables rules that decision stands for
//! (KUBE-SERVICES → KUBE-NODEPORTS → KUBE-EXT/SVC/SVL → KUBE-SEP, the KUBE-MARK-MASQ jumps and
//! the filter-table REJECT/DROP). It runs only when tracing is on and decides nothing.

use super::{DnatDecision, ExtRoute, FlowDecision, FrontendKind, Pick, SvcPort, Via};
use crate::chains::{
    ChainWalk, KUBE_EXTERNAL_SERVICES, KUBE_MARK_MASQ, KUBE_NODEPORTS, KUBE_SERVICES, MASQ_MARK,
};
use crate::conntrack::Tuple;
use crate::iptables::KUBE_PROXY_FIREWALL;
use crate::model::IpFamily;
use crate::model::ProxyConfig;

/// What a new flow's rule path needs besides the decision.
pub(super) struct FlowCtx<'a> {
    pub(super) sp: &'a SvcPort,
    pub(super) config: &'a ProxyConfig,
    pub(super) t: &'a Tuple,
    pub(super) kind: FrontendKind,
}

impl FlowCtx<'_> {
    fn proto(&self) -> &'static str {
        self.sp.proto.as_lower()
    }

    /// The host prefix length of the flow's family: `/32` (iptables) or `/128` (ip6tables).
    fn host_len(&self) -> u8 {
        match self.sp.family {
            IpFamily::V4 => 32,
            IpFamily::V6 => 128,
        }
    }

    /// `-d <dst>/32 -p <proto> --dport <port>` (`/128` for IPv6) followed by `tail`.
    fn dst_rule(&self, tail: &str) -> String {
        format!(
            "-d {}/{} -p {} --dport {}{tail}",
            self.t.dst,
            self.host_len(),
            self.proto(),
            self.t.dport
        )
    }

    /// The filter-table rule of a frontend with no (local) endpoints (`what` = "has no
    /// endpoints" / "has no local endpoints").
    fn filter_rule(&self, what: &str) -> String {
        let spn = &self.sp.spn;
        match self.kind {
            FrontendKind::NodePort => format!(
                "-m addrtype --dst-type LOCAL -p {} --dport {} \"{spn} {what}\"",
                self.proto(),
                self.t.dport
            ),
            _ => self.dst_rule(&format!(" \"{spn} {what}\"")),
        }
    }
}

/// The jump from `chain` to KUBE-MARK-MASQ, then the MARK rule there.
fn push_masq(walk: &mut ChainWalk, chain: &str, rule: String) {
    walk.push("nat", chain, rule, KUBE_MARK_MASQ);
    walk.push(
        "nat",
        KUBE_MARK_MASQ,
        String::new(),
        format!("MARK --or-mark {MASQ_MARK:#x}"),
    );
}

/// The rule path of a new flow that hit a frontend, for the decision `d`.
pub(super) fn new_flow_walk(cx: &FlowCtx<'_>, d: &FlowDecision) -> ChainWalk {
    let mut walk = ChainWalk::default();
    match d {
        FlowDecision::Pass => {}
        FlowDecision::Reject => {
            let chain = match cx.kind {
                FrontendKind::ClusterIp => KUBE_SERVICES,
                _ => KUBE_EXTERNAL_SERVICES,
            };
            walk.push(
                "filter",
                chain,
                cx.filter_rule("has no endpoints"),
                match cx.sp.family {
                    IpFamily::V4 => "REJECT --reject-with icmp-port-unreachable",
                    IpFamily::V6 => "REJECT --reject-with icmp6-port-unreachable",
                },
            );
        }
        FlowDecision::DropNoLocal => {
            if cx.kind == FrontendKind::ClusterIp {
                // ITP=Local: the filter rule fires before any nat rule is recorded.
                walk.push(
                    "filter",
                    KUBE_SERVICES,
                    cx.filter_rule("has no local endpoints"),
                    "DROP",
                );
            } else {
                // Falls off KUBE-EXT un-DNATed; the filter table drops it.
                frontend_steps(cx, &mut walk);
                walk.push(
                    "filter",
                    KUBE_EXTERNAL_SERVICES,
                    cx.filter_rule("has no local endpoints"),
                    "DROP",
                );
            }
        }
        FlowDecision::DropFirewall => {
            // Falls off KUBE-FW un-DNATed; KUBE-PROXY-FIREWALL drops it.
            frontend_steps(cx, &mut walk);
            let fw = cx.sp.fw_chain.as_str();
            walk.push(
                "nat",
                fw,
                format!(
                    "\"other traffic to {} will be dropped by KUBE-PROXY-FIREWALL\"",
                    cx.sp.spn
                ),
                "RETURN",
            );
            walk.push(
                "filter",
                KUBE_PROXY_FIREWALL,
                cx.dst_rule(&format!(" \"{} traffic not accepted by {fw}\"", cx.sp.spn)),
                "DROP",
            );
        }
        FlowDecision::Dnat(dn) => {
            frontend_steps(cx, &mut walk);
            service_steps(cx, dn, &mut walk);
            endpoint_steps(cx, dn, &mut walk);
        }
    }
    walk
}

/// KUBE-SERVICES (and KUBE-NODEPORTS) up to the jump into KUBE-SVC/SVL or KUBE-EXT.
fn frontend_steps(cx: &FlowCtx<'_>, walk: &mut ChainWalk) {
    let sp = cx.sp;
    let spn = &sp.spn;
    let ext = sp.ext_chain.as_str();
    match cx.kind {
        FrontendKind::ClusterIp => {
            let chain = if sp.itp_local {
                &sp.svl_chain
            } else {
                &sp.svc_chain
            };
            walk.push(
                "nat",
                KUBE_SERVICES,
                cx.dst_rule(&format!(" \"{spn} cluster IP\"")),
                chain.as_str(),
            );
        }
        FrontendKind::NodePort => {
            walk.push(
                "nat",
                KUBE_SERVICES,
                "-m addrtype --dst-type LOCAL \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"",
                KUBE_NODEPORTS,
            );
            walk.push(
                "nat",
                KUBE_NODEPORTS,
                format!("-p {} --dport {} \"{spn}\"", cx.proto(), cx.t.dport),
                ext,
            );
        }
        FrontendKind::ExternalIp => walk.push(
            "nat",
            KUBE_SERVICES,
            cx.dst_rule(&format!(" \"{spn} external IP\"")),
            ext,
        ),
        FrontendKind::LoadBalancer => {
            let rule = format!(" \"{spn} loadbalancer IP\"");
            let Some(fw) = &sp.firewall else {
                walk.push("nat", KUBE_SERVICES, cx.dst_rule(&rule), ext);
                return;
            };
            let chain = sp.fw_chain.as_str();
            walk.push("nat", KUBE_SERVICES, cx.dst_rule(&rule), chain);
            let node_ip = cx.config.node_address(sp.family);
            if let Some(src) = fw.matching(cx.t.src, node_ip.as_ref()) {
                walk.push("nat", chain, format!("-s {src}{rule}"), ext);
            }
        }
    }
}

/// The chain that picks endpoints (KUBE-SVC/SVL) and the masquerade marks on the way there
/// (the cluster-IP masquerade rule, or the KUBE-EXT rules).
fn service_steps(cx: &FlowCtx<'_>, dn: &DnatDecision, walk: &mut ChainWalk) {
    let sp = cx.sp;
    let spn = &sp.spn;
    let ext = sp.ext_chain.as_str();
    let chain = dn.chain(sp);
    match dn.via {
        Via::ClusterIp { masq: false } => {}
        Via::ClusterIp { masq: true } => {
            let not_src = match (
                cx.config.masquerade_all,
                cx.config.cluster_cidr(IpFamily::of(cx.t.src)),
            ) {
                (false, Some(c)) => format!(" ! -s {c}"),
                _ => String::new(),
            };
            push_masq(
                walk,
                chain,
                cx.dst_rule(&format!("{not_src} \"{spn} cluster IP\"")),
            );
        }
        Via::External(ExtRoute::Masq) => {
            push_masq(
                walk,
                ext,
                format!("\"masquerade traffic for {spn} external destinations\""),
            );
            walk.push("nat", ext, String::new(), chain);
        }
        Via::External(ExtRoute::Pod) => {
            let cidr = cx
                .config
                .cluster_cidr(IpFamily::of(cx.t.src))
                .map(|c| c.to_string())
                .unwrap_or_default();
            walk.push(
                "nat",
                ext,
                format!("-s {cidr} \"pod traffic for {spn} external destinations\""),
                chain,
            );
        }
        Via::External(ExtRoute::Host) => {
            push_masq(
                walk,
                ext,
                format!("-m addrtype --src-type LOCAL \"masquerade LOCAL traffic for {spn} external destinations\""),
            );
            walk.push(
                "nat",
                ext,
                format!("-m addrtype --src-type LOCAL \"route LOCAL traffic for {spn} external destinations\""),
                chain,
            );
        }
        Via::External(ExtRoute::Local) => walk.push("nat", ext, String::new(), chain),
    }
}

/// The endpoint choice in KUBE-SVC/SVL and the KUBE-SEP chain (hairpin mark, DNAT).
fn endpoint_steps(cx: &FlowCtx<'_>, dn: &DnatDecision, walk: &mut ChainWalk) {
    let sp = cx.sp;
    let spn = &sp.spn;
    let chain = dn.chain(sp);
    let ep = &sp.eps[dn.ep];
    let rule = match (dn.pick, sp.affinity) {
        (Pick::Affinity, Some(timeout)) => format!(
            "\"{spn} -> {}\" -m recent --name {} --rcheck --seconds {} --reap",
            ep.addr,
            ep.sep,
            timeout.as_secs()
        ),
        (Pick::Random { j, n }, _) if j + 1 < n => format!(
            "\"{spn} -> {}\" -m statistic --mode random --probability {:.10}",
            ep.addr,
            1.0 / (n - j) as f64
        ),
        _ => format!("\"{spn} -> {}\"", ep.addr),
    };
    walk.push("nat", chain, rule, ep.sep.as_str());
    if dn.hairpin {
        let len = cx.host_len();
        push_masq(walk, &ep.sep, format!("-s {}/{len} \"{spn}\"", ep.ip));
    }
    let recent = if sp.affinity.is_some() {
        format!(" -m recent --name {} --set", ep.sep)
    } else {
        String::new()
    };
    walk.push(
        "nat",
        ep.sep.as_str(),
        format!("-p {} \"{spn}\"{recent}", cx.proto()),
        format!("DNAT --to-destination {}", ep.addr),
    );
}
