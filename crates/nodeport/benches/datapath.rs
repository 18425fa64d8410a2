//! Datapath benchmarks: established-flow translation (lookup + rewrite), new-flow decision
//! + conntrack insert, and conntrack memory per entry at 1M entries (counting allocator).
//!
//! Targets: ≥ 10 Mpps established, ≥ 2 M new flows/s, ≤ 128 B/entry.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::PacketBuilder;
use nodeport::conntrack::ConnEntry;
use nodeport::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

struct Counting;
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        ALLOCATED.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new, Ordering::Relaxed);
        ALLOCATED.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MASTER: Ipv4Addr = Ipv4Addr::new(10, 151, 30, 11);
const NODE_PORT: u16 = 32761;

fn service() -> (Service, EndpointSlice) {
    let svc = Service {
        cluster_ips: vec![Ipv4Addr::new(10, 96, 0, 10).into()],
        ports: vec![ServicePort::tcp(80, 80, Some(NODE_PORT))],
        ..Service::new("default", "nginx", ServiceType::NodePort)
    };
    let endpoints = (1..=3)
        .map(|n| Endpoint {
            ip: Ipv4Addr::new(10, 244, n, 16).into(),
            node_name: Some(format!("node{n}")),
            ready: true,
            serving: true,
            terminating: false,
        })
        .collect();
    let slice = EndpointSlice {
        address_type: Default::default(),
        service: svc.service_ref(),
        ports: vec![EndpointPort {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 80,
        }],
        endpoints,
    };
    (svc, slice)
}

fn proxier(max: usize) -> Proxier {
    let mut cfg = ProxyConfig::new("master", vec![MASTER.into()]);
    cfg.cluster_cidrs = vec!["10.244.0.0/16".parse().unwrap()];
    cfg.conntrack_max = max;
    let mut p = Proxier::new(cfg);
    let (svc, slice) = service();
    p.update(&[svc], &[slice]);
    p.set_trace(false);
    p
}

fn syn(client: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(client.octets(), MASTER.octets(), 64)
        .tcp(sport, NODE_PORT, 1, 64240)
        .syn()
        .write(&mut out, &[])
        .unwrap();
    out
}

/// One new flow of the `new_flow` group: the next client address and port (from the
/// counter `n`) written into a copy of `template`, PREROUTING, then POSTROUTING when
/// accepted. The table is flushed at 60k flows. Returns PREROUTING's chain walk.
#[inline(always)]
fn new_flow(
    p: &mut Proxier,
    n: &mut u32,
    buf: &mut [u8],
    template: &[u8],
    now: Duration,
    rng: &mut ChaCha8Rng,
) -> ChainWalk {
    *n = n.wrapping_add(1);
    if p.conntrack().len() >= 60_000 {
        p.conntrack_mut().clear();
    }
    buf.copy_from_slice(template);
    let c = Ipv4Addr::from(0xc633_0000u32 + (*n >> 14));
    buf[12..16].copy_from_slice(&c.octets());
    let sport = 1024 + (*n & 0x3fff) as u16;
    buf[20..22].copy_from_slice(&sport.to_be_bytes());
    let pre = p.prerouting(now, buf, rng);
    if let Verdict::Accept(pending) = pre.verdict {
        black_box(p.postrouting(now, buf, pending, Some(MASTER.into()), rng));
    }
    pre.walk
}

fn datapath(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let now = Duration::from_secs(1);

    // Established: 100k flows in the table, cycle through 1024 of them, original direction
    // (DNAT + SNAT rewrite) — lookup + state update + in-place rewrite.
    let mut p = proxier(1 << 20);
    let mut flows = Vec::new();
    for i in 0..100_000u32 {
        let c = Ipv4Addr::from(0xcb00_0000 + i);
        let mut pkt = syn(c, 40000);
        let pre = p.prerouting(now, &mut pkt, &mut rng);
        if let Verdict::Accept(pending) = pre.verdict {
            let _ = p.postrouting(now, &mut pkt, pending, Some(MASTER.into()), &mut rng);
        }
        if i % 97 == 0 && flows.len() < 1024 {
            flows.push(syn(c, 40000));
        }
    }
    let mut g = c.benchmark_group("established");
    g.throughput(Throughput::Elements(1));
    g.bench_function("translate_original_dir", |b| {
        let mut i = 0;
        let mut buf = flows[0].clone();
        b.iter(|| {
            let f = &flows[i & 1023];
            i += 1;
            buf.copy_from_slice(f);
            let pre = p.prerouting(now, &mut buf, &mut rng);
            black_box(&pre);
        })
    });
    g.finish();

    // New flows: decision + DNAT + MASQUERADE + conntrack insert. The table is flushed
    // every 60k flows: one masquerade address has only ~64k source ports per endpoint, so a
    // fuller table would measure the port search of an exhausted SNAT space instead.
    let mut g = c.benchmark_group("new_flow");
    g.throughput(Throughput::Elements(1));
    let mut p = proxier(2 << 20);
    p.conntrack_mut().reserve(60_000);
    let mut n: u32 = 0;
    let mut buf = syn(MASTER, 1);
    let template = syn(Ipv4Addr::new(198, 51, 100, 1), 1024);
    g.bench_function("decide_dnat_masquerade_insert", |b| {
        b.iter(|| {
            new_flow(&mut p, &mut n, &mut buf, &template, now, &mut rng);
        })
    });
    // Same with tracing on (chain walk strings + rewrite lists), as the lab runs it.
    let mut p = proxier(2 << 20);
    p.set_trace(true);
    p.conntrack_mut().reserve(60_000);
    let mut n: u32 = 0;
    g.bench_function("decide_dnat_masquerade_insert_traced", |b| {
        b.iter(|| {
            black_box(new_flow(&mut p, &mut n, &mut buf, &template, now, &mut rng));
        })
    });
    g.finish();
}

/// Bytes per conntrack entry at 1M entries (printed; criterion measures the insert time).
fn memory(c: &mut Criterion) {
    let base = ALLOCATED.load(Ordering::Relaxed);
    let mut ct = nodeport::Conntrack::new(2_000_000);
    let now = Duration::ZERO;
    let n = 1_000_000u32;
    for i in 0..n {
        let o = Tuple::tcp(Ipv4Addr::from(0xcb00_0000 + i), 40000, MASTER, NODE_PORT);
        let r = Tuple::tcp(
            Ipv4Addr::new(10, 244, 1, 16),
            80,
            MASTER,
            (i % 60_000) as u16 + 1024,
        );
        let r = Tuple {
            dst: Ipv4Addr::from(u32::from(MASTER) + i / 60_000).into(),
            ..r
        };
        ct.insert(ConnEntry::new(o, r, 0x02, now)).unwrap();
    }
    let used = ALLOCATED.load(Ordering::Relaxed) - base;
    println!(
        "conntrack memory: {} entries, {} bytes heap, {:.1} B/entry (entry struct {} B; table reports {} B)",
        ct.len(),
        used,
        used as f64 / f64::from(n),
        std::mem::size_of::<ConnEntry>(),
        ct.heap_bytes()
    );
    let mut g = c.benchmark_group("conntrack_1M");
    g.throughput(Throughput::Elements(1));
    let probe = Tuple::tcp(
        Ipv4Addr::from(0xcb00_0000 + 12345),
        40000,
        MASTER,
        NODE_PORT,
    );
    g.bench_function("lookup_at_1M", |b| {
        b.iter(|| black_box(ct.lookup(black_box(&probe))))
    });
    g.finish();
}

criterion_group!(benches, datapath, memory);
criterion_main!(benches);
