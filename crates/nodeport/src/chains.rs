//! kube-proxy's chain names and the record of a chain walk.

/// One rule traversed: `-A <chain> … -j <target>` in `table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStep {
    /// "nat" or "filter".
    pub table: &'static str,
    /// e.g. "KUBE-NODEPORTS", "KUBE-EXT-X27LE4BHSL4DOUIK".
    pub chain: String,
    /// The rule's match and comment, human readable (e.g. `--dport 32761 "default/nginx"`).
    pub rule: String,
    /// The target jumped to (chain name, "DNAT --to-destination 10.244.1.16:80", "DROP", …).
    pub target: String,
}

/// The ordered list of rules a packet traversed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainWalk {
    pub steps: Vec<ChainStep>,
}

/// `KUBE-SVC-`/`KUBE-EXT-`/… + 16 chars of base32(sha256(input)), as kube-proxy names chains.
pub fn chain_name(prefix: &str, input: &str) -> String {
    let _ = (prefix, input);
    todo!()
}
