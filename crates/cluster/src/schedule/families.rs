//! A Service's IP families, as the apiserver defaults and validates them on create:
//! `spec.ipFamilyPolicy` (default SingleStack), `spec.ipFamilies` (default: the cluster's
//! primary family; PreferDualStack/RequireDualStack add the other one on a dual-stack
//! cluster) and the explicit `spec.clusterIP`/`spec.clusterIPs`.
//!
//! Ported from kubernetes/kubernetes: pkg/registry/core/service/strategy.go
//! (`normalizeClusterIPs`: a create with `clusterIP` and no `clusterIPs` gets
//! `clusterIPs: [clusterIP]`), pkg/apis/core/validation/validation.go
//! (`ValidateServiceClusterIPsRelatedFields`) and pkg/registry/core/service/storage/alloc.go
//! (`initIPFamilyFields`). Messages are the apiserver's, prefixed with the field path.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::ServiceSpec;

use crate::error::LabError;
use crate::manifest::ManifestDoc;

pub(super) use nodeport::{IpFamily, IpFamilyPolicy};

/// What the apiserver settles for a new Service: its families (primary first), its policy
/// and the explicit ClusterIP of each family (`None` = allocate one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Families {
    pub families: Vec<IpFamily>,
    pub policy: IpFamilyPolicy,
    /// One per family, same order.
    pub explicit: Vec<Option<IpAddr>>,
}

fn other(f: IpFamily) -> IpFamily {
    match f {
        IpFamily::V4 => IpFamily::V6,
        IpFamily::V6 => IpFamily::V4,
    }
}

/// `spec.ipFamilyPolicy`, `spec.ipFamilies` and `spec.clusterIPs` of a Service on a cluster
/// with the service families `cluster` (primary first; two = dual-stack). `"None"`
/// (headless) is refused before this runs.
pub(super) fn init_ip_families(
    doc: &ManifestDoc,
    spec: &ServiceSpec,
    cluster: &[IpFamily],
) -> Result<Families, LabError> {
    let policy = match spec.ip_family_policy.as_deref() {
        None => IpFamilyPolicy::SingleStack,
        Some("SingleStack") => IpFamilyPolicy::SingleStack,
        Some("PreferDualStack") => IpFamilyPolicy::PreferDualStack,
        Some("RequireDualStack") => IpFamilyPolicy::RequireDualStack,
        Some(other) => {
            return Err(doc.err(
                "spec.ipFamilyPolicy",
                format!("Unsupported value: {other:?}: supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\""),
            ))
        }
    };
    let ips = cluster_ips(doc, spec)?;
    let mut families = ip_families(doc, spec)?;
    // ValidateServiceClusterIPsRelatedFields: clusterIPs match their ipFamilies entries.
    for (i, (ip, fam)) in ips.iter().zip(&families).enumerate() {
        if IpFamily::of(*ip) != *fam {
            return Err(doc.err(
                &format!("spec.clusterIPs[{i}]"),
                format!(
                    "Invalid value: \"{ip}\": expected an {} value as indicated by `ipFamilies[{i}]`",
                    fam.as_str()
                ),
            ));
        }
    }
    // initIPFamilyFields: the policy must fit the number of IPs and families.
    if policy == IpFamilyPolicy::SingleStack {
        let why = if ips.len() == 2 {
            Some("cluster IPs")
        } else if families.len() == 2 {
            Some("IP families")
        } else {
            None
        };
        if let Some(what) = why {
            return Err(doc.err(
                "spec.ipFamilyPolicy",
                format!("Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple {what} are specified"),
            ));
        }
    }
    // Infer missing ipFamilies from the clusterIPs.
    for (i, ip) in ips.iter().enumerate().skip(families.len()) {
        let fam = IpFamily::of(*ip);
        if !cluster.contains(&fam) {
            return Err(doc.err(
                &format!("spec.clusterIPs[{i}]"),
                format!(
                    "Invalid value: \"{ip}\": {} is not configured on this cluster",
                    fam.as_str()
                ),
            ));
        }
        families.push(fam);
    }
    if policy == IpFamilyPolicy::RequireDualStack && cluster.len() < 2 {
        return Err(doc.err(
            "spec.ipFamilyPolicy",
            "Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services",
        ));
    }
    for (i, fam) in families.iter().enumerate() {
        if !cluster.contains(fam) {
            return Err(doc.err(
                &format!("spec.ipFamilies[{i}]"),
                format!(
                    "Invalid value: \"{}\": not configured on this cluster",
                    fam.as_str()
                ),
            ));
        }
    }
    if families.is_empty() {
        families.push(cluster.first().copied().unwrap_or(IpFamily::V4));
    }
    if policy != IpFamilyPolicy::SingleStack && families.len() == 1 && cluster.len() == 2 {
        families.push(other(families[0]));
    }
    let explicit = (0..families.len()).map(|i| ips.get(i).copied()).collect();
    Ok(Families {
        families,
        policy,
        explicit,
    })
}

/// `spec.clusterIP` and `spec.clusterIPs`, normalized and validated: at most two, valid
/// addresses, one per family, `clusterIPs[0] == clusterIP`.
fn cluster_ips(doc: &ManifestDoc, spec: &ServiceSpec) -> Result<Vec<IpAddr>, LabError> {
    let single = spec.cluster_ip.as_deref().unwrap_or("");
    let mut list: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
    if !single.is_empty() && list.is_empty() {
        list.push(single.to_string()); // normalizeClusterIPs on create
    }
    if single.is_empty() && !list.is_empty() {
        return Err(doc.err(
            "spec.clusterIPs",
            format!("Invalid value: {list:?}: must be empty when `clusterIP` is not specified"),
        ));
    }
    if list.first().is_some_and(|first| first != single) {
        return Err(doc.err(
            "spec.clusterIPs",
            format!("Invalid value: {list:?}: first value must match `clusterIP`"),
        ));
    }
    let mut ips = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let field = if i == 0 {
            "spec.clusterIP".to_string()
        } else {
            format!("spec.clusterIPs[{i}]")
        };
        let ip: IpAddr = s
            .parse()
            .map_err(|_| doc.err(&field, format!("{s:?} is not an IP address")))?;
        ips.push(ip);
    }
    if ips.len() > 2 {
        return Err(doc.err(
            "spec.clusterIPs",
            format!("Invalid value: {list:?}: may only hold up to 2 values"),
        ));
    }
    if ips.len() == 2 && IpFamily::of(ips[0]) == IpFamily::of(ips[1]) {
        return Err(doc.err(
            "spec.clusterIPs",
            format!("Invalid value: {list:?}: may specify no more than one IP for each IP family"),
        ));
    }
    Ok(ips)
}

/// `spec.ipFamilies`: each `IPv4` or `IPv6`, no duplicates (so at most two).
fn ip_families(doc: &ManifestDoc, spec: &ServiceSpec) -> Result<Vec<IpFamily>, LabError> {
    let mut out: Vec<IpFamily> = Vec::new();
    for (i, s) in spec.ip_families.iter().flatten().enumerate() {
        let field = format!("spec.ipFamilies[{i}]");
        let fam = match s.as_str() {
            "IPv4" => IpFamily::V4,
            "IPv6" => IpFamily::V6,
            other => {
                return Err(doc.err(
                    &field,
                    format!("Unsupported value: {other:?}: supported values: \"IPv4\", \"IPv6\""),
                ))
            }
        };
        if out.contains(&fam) {
            return Err(doc.err(&field, format!("Duplicate value: {s:?}")));
        }
        out.push(fam);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{parse_documents, Object};
    use IpFamily::{V4, V6};
    use IpFamilyPolicy::*;

    /// Run `init_ip_families` on a Service whose spec has the given extra YAML lines.
    fn run(extra: &str, cluster: &[IpFamily]) -> Result<Families, String> {
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ports: [{{port: 80}}]\n{extra}"
        );
        let docs = parse_documents(&text, "t.yaml", "").map_err(|e| e.to_string())?;
        let Object::Service(svc) = &docs[0].object else {
            unreachable!()
        };
        init_ip_families(&docs[0], svc.spec.as_ref().unwrap(), cluster).map_err(|e| e.to_string())
    }

    fn fams(extra: &str, cluster: &[IpFamily]) -> (Vec<IpFamily>, IpFamilyPolicy) {
        let f = run(extra, cluster).unwrap();
        (f.families, f.policy)
    }

    #[test]
    fn defaults_follow_the_cluster() {
        // alloc.go: no policy = SingleStack on the primary family.
        assert_eq!(fams("", &[V4]), (vec![V4], SingleStack));
        assert_eq!(fams("", &[V4, V6]), (vec![V4], SingleStack));
        assert_eq!(fams("", &[V6, V4]), (vec![V6], SingleStack));
        // PreferDualStack: both on a dual-stack cluster, one on a single-stack one.
        let prefer = "  ipFamilyPolicy: PreferDualStack\n";
        assert_eq!(fams(prefer, &[V4, V6]), (vec![V4, V6], PreferDualStack));
        assert_eq!(fams(prefer, &[V4]), (vec![V4], PreferDualStack));
        let v6_first = "  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv6]\n";
        assert_eq!(fams(v6_first, &[V4, V6]), (vec![V6, V4], RequireDualStack));
        let single_v6 = "  ipFamilies: [IPv6]\n";
        assert_eq!(fams(single_v6, &[V4, V6]), (vec![V6], SingleStack));
    }

    #[test]
    fn cluster_ips_give_families() {
        let f = run("  clusterIP: fd00:10:96::5\n", &[V4, V6]).unwrap();
        assert_eq!(f.families, vec![V6]);
        assert_eq!(f.explicit, vec![Some("fd00:10:96::5".parse().unwrap())]);
        let pair = "  ipFamilyPolicy: PreferDualStack\n  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.10, \"fd00:10:96::10\"]\n";
        let f = run(pair, &[V4, V6]).unwrap();
        assert_eq!(f.families, vec![V4, V6]);
        assert_eq!(f.explicit.len(), 2);
        // One explicit address on a dual-stack Service: the other family is allocated.
        let one = "  ipFamilyPolicy: RequireDualStack\n  clusterIP: 10.96.0.10\n";
        let f = run(one, &[V4, V6]).unwrap();
        assert_eq!(f.explicit, vec![Some("10.96.0.10".parse().unwrap()), None]);
    }

    #[test]
    fn refused_like_the_apiserver() {
        let err = |extra: &str, cluster: &[IpFamily]| run(extra, cluster).unwrap_err();
        let e = err("  ipFamilyPolicy: RequireDualStack\n", &[V4]);
        assert!(e.contains("spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"), "{e}");
        let e = err("  ipFamilies: [IPv6]\n", &[V4]);
        assert!(
            e.contains(
                "spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster"
            ),
            "{e}"
        );
        let e = err("  ipFamilies: [IPv4, IPv6]\n", &[V4, V6]);
        assert!(
            e.contains("must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families"),
            "{e}"
        );
        let e = err(
            "  ipFamilies: [IPv4, IPv4]\n  ipFamilyPolicy: PreferDualStack\n",
            &[V4, V6],
        );
        assert!(
            e.contains("spec.ipFamilies[1]: Duplicate value: \"IPv4\""),
            "{e}"
        );
        let e = err("  ipFamilies: [IPv5]\n", &[V4, V6]);
        assert!(
            e.contains("spec.ipFamilies[0]: Unsupported value: \"IPv5\""),
            "{e}"
        );
        let e = err("  ipFamilyPolicy: DualStack\n", &[V4, V6]);
        assert!(
            e.contains("spec.ipFamilyPolicy: Unsupported value: \"DualStack\""),
            "{e}"
        );
        let e = err("  clusterIPs: [10.96.0.10]\n", &[V4]);
        assert!(
            e.contains("must be empty when `clusterIP` is not specified"),
            "{e}"
        );
        let e = err(
            "  clusterIP: 10.96.0.11\n  clusterIPs: [10.96.0.10]\n",
            &[V4],
        );
        assert!(e.contains("first value must match `clusterIP`"), "{e}");
        let both4 = "  ipFamilyPolicy: PreferDualStack\n  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.10, 10.96.0.11]\n";
        assert!(err(both4, &[V4, V6]).contains("no more than one IP for each IP family"));
        let three = "  ipFamilyPolicy: PreferDualStack\n  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.10, \"fd00::1\", 10.96.0.12]\n";
        assert!(err(three, &[V4, V6]).contains("may only hold up to 2 values"));
        let single_two = "  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.10, \"fd00:10:96::1\"]\n";
        assert!(err(single_two, &[V4, V6]).contains("when multiple cluster IPs are specified"));
        let mismatch = "  ipFamilies: [IPv6]\n  clusterIP: 10.96.0.10\n";
        let e = err(mismatch, &[V4, V6]);
        assert!(e.contains("spec.clusterIPs[0]: Invalid value: \"10.96.0.10\": expected an IPv6 value as indicated by `ipFamilies[0]`"), "{e}");
        let e = err("  clusterIP: \"fd00:10:96::1\"\n", &[V4]);
        assert!(e.contains("spec.clusterIPs[0]: Invalid value: \"fd00:10:96::1\": IPv6 is not configured on this cluster"), "{e}");
        let e = err("  clusterIP: banana\n", &[V4]);
        assert!(
            e.contains("spec.clusterIP: \"banana\" is not an IP address"),
            "{e}"
        );
    }
}
