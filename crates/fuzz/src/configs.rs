//! Lab configs and manifests into the cluster loader: the [`ConfigHarness`].
//!
//! Seeds are every `lab-configs/*.yaml` (with `- file:` manifests inlined as `- |` blocks,
//! so the loop never reads files; once more without the optional top-level keys, so the
//! defaults are computed), the same configs as written (so relative manifest files
//! resolve), and `tests/bad-configs/*.yaml` when that corpus exists. Each input is a seed
//! after 1–6 text mutations: a token (number, address, CIDR, name, keyword) replaced from a
//! dictionary of boundary values, a line deleted, duplicated, re-indented or swapped, a
//! splice with another seed, or bytes flipped ([`mutate::havoc`]). The input is the YAML
//! text itself; a crash file replays with `fuzz-configs --replay FILE`.

use std::path::{Path, PathBuf};

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::mutate::havoc;
use crate::Harness;

/// Boundary numbers (ports, replicas, seeds, weights, counts).
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "256",
    "1023",
    "1024",
    "30000",
    "32767",
    "32768",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "1e309",
    ".nan",
    ".inf",
    "-.inf",
    "0x10",
    "0o17",
    "1.5",
    "~",
];

/// Boundary addresses and networks.
const ADDRESSES: &[&str] = &[
    "255.255.255.255/32",
    "255.255.255.255",
    "255.255.255.254/31",
    "0.0.0.0/0",
    "0.0.0.0",
    "0.0.0.0/32",
    "10.0.0.0/8",
    "10.244.0.0/31",
    "10.244.0.0/32",
    "10.244.0.255/24",
    "1.2.3.4/33",
    "256.1.1.1",
    "1.2.3",
    "::1",
    "fe80::/10",
    "10.151.30.11",
    "10.151.30.0/24",
    "10.244.1.0/24",
    "10.96.0.1",
    "203.0.113.11",
    "127.0.0.1",
    "224.0.0.1",
    "10.151.30.255",
];

/// Boundary words: names, keywords, durations, rates.
const WORDS: &[&str] = &[
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "''",
    "\"\"",
    "Local",
    "Cluster",
    "NodePort",
    "LoadBalancer",
    "ClusterIP",
    "ExternalName",
    "TCP",
    "UDP",
    "SCTP",
    "ClientIP",
    "None",
    "Exists",
    "Equal",
    "NoSchedule",
    "NoExecute",
    "PreferNoSchedule",
    "http",
    "dns",
    "../evil",
    "a/b",
    "-",
    ".",
    "..",
    "A",
    "default/nginx",
    "nginx",
    "ydzs-master",
    "browser",
    "kube-system/x",
    "0s",
    "-1s",
    "1h",
    "99999999999h",
    "1.5s",
    "10ms",
    "1e3s",
    "5%",
    "100%",
    "101%",
    "1G",
    "1Mbit",
    "\"a\\0b\"",
];

/// Keys of the config and manifest formats, for token replacement.
const KEYS: &[&str] = &[
    "seed",
    "nodeNetwork",
    "router",
    "clusterCIDR",
    "nodes",
    "name",
    "ip",
    "podCIDR",
    "labels",
    "taints",
    "clients",
    "canReach",
    "manifests",
    "plan",
    "from",
    "to",
    "service",
    "replicas",
    "selector",
    "matchLabels",
    "template",
    "containers",
    "ports",
    "containerPort",
    "port",
    "targetPort",
    "nodePort",
    "protocol",
    "type",
    "externalTrafficPolicy",
    "internalTrafficPolicy",
    "sessionAffinity",
    "healthCheckNodePort",
    "externalIPs",
    "loadBalancerIP",
    "tolerations",
    "nodeSelector",
    "kind",
    "apiVersion",
    "metadata",
    "namespace",
    "spec",
    "wait",
    "scale",
    "deployment",
    "count",
    "loadBalancer",
    "serviceNodePortRange",
    "kubeProxy",
    "masqueradeAll",
    "effect",
    "key",
    "value",
    "operator",
];

/// One seed: the text and the path it is loaded as.
#[derive(Clone, Debug)]
pub struct Seed {
    /// Config text.
    pub text: String,
    /// Path given to the loader (anchors relative `file:` manifests).
    pub path: PathBuf,
}

/// The repository's `lab-configs/` directory.
pub fn lab_configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab-configs")
}

/// `- file: X` manifest entries replaced by the file's content as an inline `- |` block.
pub fn inline_manifests(text: &str, dir: &Path) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let inlined = trimmed
            .strip_prefix("- file:")
            .map(str::trim)
            .and_then(|f| std::fs::read_to_string(dir.join(f)).ok());
        match inlined {
            Some(body) => {
                out.push_str(&format!("{indent}- |\n"));
                for l in body.lines() {
                    out.push_str(&format!("{indent}    {l}\n"));
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Top-level keys with defaults (the loader computes them when absent).
const OPTIONAL_KEYS: [&str; 3] = ["seed:", "router:", "clusterCIDR:"];

/// `text` without its top-level optional keys, so the defaults are computed.
fn without_optional_keys(text: &str) -> String {
    text.lines()
        .filter(|l| !OPTIONAL_KEYS.iter().any(|k| l.starts_with(k)))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Deletes one top-level (unindented, non-comment) line: a key and, for a block key,
/// leaves its indented body to the next key.
fn delete_top_level_line(rng: &mut ChaCha8Rng, text: &mut Vec<u8>) {
    let lines = lines_of(text);
    let top: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].first().is_some_and(|b| b.is_ascii_alphabetic()))
        .collect();
    if let Some(&i) = top.choose(rng) {
        let mut lines = lines;
        lines.remove(i);
        *text = lines.join(&b'\n');
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The seed corpus (see the module docs).
pub fn seeds() -> Vec<Seed> {
    let dir = lab_configs_dir();
    let mut out = Vec::new();
    for p in yaml_files(&dir) {
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        let inlined = inline_manifests(&text, &dir);
        out.push(Seed {
            text: without_optional_keys(&inlined),
            path: p.clone(),
        });
        out.push(Seed {
            text: inlined,
            path: p.clone(),
        });
        out.push(Seed { text, path: p });
    }
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bad-configs");
    for p in yaml_files(&bad) {
        if let Ok(text) = std::fs::read_to_string(&p) {
            out.push(Seed { text, path: p });
        }
    }
    out
}

/// Byte offsets `(start, end)` of the token around `at` (a run of YAML scalar characters).
fn token_at(text: &[u8], at: usize) -> Option<(usize, usize)> {
    let is_tok = |b: u8| b.is_ascii_alphanumeric() || b".:/_-%".contains(&b);
    if !text.get(at).is_some_and(|&b| is_tok(b)) {
        return None;
    }
    let start = text[..at]
        .iter()
        .rposition(|&b| !is_tok(b))
        .map_or(0, |i| i + 1);
    let end = text[at..]
        .iter()
        .position(|&b| !is_tok(b))
        .map_or(text.len(), |i| at + i);
    Some((start, end))
}

/// Offsets of the values in `text`: the first byte after `: ` or `- ` on lines that are
/// not comments.
fn value_starts(text: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut line_start = 0;
    for line in text.split(|&b| b == b'\n') {
        let comment = line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'#');
        if !comment {
            for (i, w) in line.windows(2).enumerate() {
                if (w == b": " || w == b"- ") && i + 2 < line.len() {
                    out.push(line_start + i + 2);
                }
            }
        }
        line_start += line.len() + 1;
    }
    out
}

/// The dictionary for a token that looks like `tok`.
fn dict_for(tok: &[u8]) -> &'static [&'static str] {
    if tok.contains(&b'.') && tok.iter().any(u8::is_ascii_digit) {
        ADDRESSES
    } else if tok.iter().all(u8::is_ascii_digit) {
        NUMBERS
    } else {
        WORDS
    }
}

/// Replaces one token (a value, most of the time) by a boundary value of its kind.
fn replace_token(rng: &mut ChaCha8Rng, text: &mut Vec<u8>) {
    if text.is_empty() {
        return;
    }
    let values = value_starts(text);
    for _ in 0..8 {
        let at = match values.choose(rng) {
            Some(&v) if rng.random_bool(0.8) => v,
            _ => rng.random_range(0..text.len()),
        };
        if let Some((s, e)) = token_at(text, at) {
            let dict = match rng.random_range(0..10u8) {
                0..=6 => dict_for(&text[s..e]),
                7 => KEYS,
                _ => *[NUMBERS, ADDRESSES, WORDS].choose(rng).unwrap_or(&WORDS),
            };
            let mut with = dict.choose(rng).copied().unwrap_or("0").to_string();
            if rng.random_bool(0.03) {
                with = "a".repeat(rng.random_range(60..300));
            }
            text.splice(s..e, with.into_bytes());
            return;
        }
    }
}

fn lines_of(text: &[u8]) -> Vec<Vec<u8>> {
    text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

fn mutate_lines(rng: &mut ChaCha8Rng, text: &mut Vec<u8>, other: &[u8]) {
    let mut lines = lines_of(text);
    if lines.is_empty() {
        return;
    }
    let i = rng.random_range(0..lines.len());
    match rng.random_range(0..6u8) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            let j = rng.random_range(0..lines.len());
            lines.swap(i, j);
        }
        3 => {
            if rng.random_bool(0.5) {
                lines[i].splice(0..0, *b"  ");
            } else if lines[i].starts_with(b"  ") {
                lines[i].drain(..2);
            }
        }
        4 => {
            let o = lines_of(other);
            if let Some(l) = o.choose(rng) {
                lines.insert(i, l.clone());
            }
        }
        _ => {
            // Splice: our head, the other seed's tail.
            let o = lines_of(other);
            let j = rng.random_range(0..=o.len());
            lines.truncate(i);
            lines.extend(o.into_iter().skip(j));
        }
    }
    *text = lines.join(&b'\n');
}

/// What the config target counts.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    configs: u64,
    loaded: u64,
    rejected: u64,
    not_utf8: u64,
}

/// Fuzz target: mutated configs into [`cluster::load_cluster_from_str`].
pub struct ConfigHarness {
    seeds: Vec<Seed>,
    counts: Counts,
    last_path: PathBuf,
}

impl Default for ConfigHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigHarness {
    /// Loads the seed corpus ([`seeds`]).
    pub fn new() -> Self {
        Self::with_seeds(seeds())
    }
    /// A harness over the given seeds (at least one is needed to mutate).
    pub fn with_seeds(seeds: Vec<Seed>) -> Self {
        let last_path = lab_configs_dir().join("fuzz.yaml");
        ConfigHarness {
            seeds,
            counts: Counts::default(),
            last_path,
        }
    }
    /// Number of seeds.
    pub fn seed_count(&self) -> usize {
        self.seeds.len()
    }
}

impl Harness for ConfigHarness {
    const NAME: &'static str = "configs";

    fn generate(&mut self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let Some(seed) = self.seeds.choose(rng) else {
            return Vec::new();
        };
        self.last_path = seed.path.clone();
        let other = self
            .seeds
            .choose(rng)
            .map(|s| s.text.as_bytes())
            .unwrap_or(b"");
        let mut text = seed.text.as_bytes().to_vec();
        let ops = rng.random_range(1..=6u32);
        for _ in 0..ops {
            match rng.random_range(0..10u8) {
                0..=4 => replace_token(rng, &mut text),
                5..=6 => mutate_lines(rng, &mut text, other),
                7 => delete_top_level_line(rng, &mut text),
                _ => havoc(rng, &mut text, 2, 64 * 1024),
            }
        }
        text
    }

    fn execute(&mut self, input: &[u8]) {
        self.counts.configs += 1;
        let text = String::from_utf8_lossy(input);
        if matches!(text, std::borrow::Cow::Owned(_)) {
            self.counts.not_utf8 += 1;
        }
        match cluster::load_cluster_from_str(&text, &self.last_path, None) {
            Ok(_) => self.counts.loaded += 1,
            Err(e) => {
                self.counts.rejected += 1;
                // Error rendering is part of the path (messages name file, field and value).
                let _ = e.to_string();
            }
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = &self.counts;
        vec![
            ("configs", c.configs),
            ("  loaded", c.loaded),
            ("  rejected with an error", c.rejected),
            ("  had invalid UTF-8", c.not_utf8),
        ]
    }
}
