//! Test datagrams for the packet layer's properties, either family, built by etherparse
//! (an independent implementation of the headers and checksums).
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use wire::{Tuple, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

/// Any address of the family (`v6`).
pub fn ip(v6: bool) -> BoxedStrategy<IpAddr> {
    if v6 {
        any::<u128>()
            .prop_map(|x| IpAddr::V6(Ipv6Addr::from(x)))
            .boxed()
    } else {
        any::<u32>()
            .prop_map(|x| IpAddr::V4(Ipv4Addr::from(x)))
            .boxed()
    }
}

/// A `proto` flow of the family; ICMP echo (`PROTO_ICMP` for IPv4 is turned into
/// `PROTO_ICMPV6` for IPv6) has its identifier as both ports.
pub fn tuple_of(proto: u8, v6: bool) -> impl Strategy<Value = Tuple> {
    (ip(v6), any::<u16>(), ip(v6), any::<u16>()).prop_map(move |(src, sport, dst, dport)| {
        let proto = match proto {
            PROTO_ICMP | PROTO_ICMPV6 if v6 => PROTO_ICMPV6,
            PROTO_ICMP | PROTO_ICMPV6 => PROTO_ICMP,
            p => p,
        };
        let icmp = proto == PROTO_ICMP || proto == PROTO_ICMPV6;
        Tuple {
            proto,
            src,
            sport,
            dst,
            dport: if icmp { sport } else { dport },
        }
    })
}

/// Two `proto` flows of the same family, IPv4 or IPv6.
pub fn tuple_pair(proto: u8) -> impl Strategy<Value = (Tuple, Tuple)> {
    any::<bool>().prop_flat_map(move |v6| (tuple_of(proto, v6), tuple_of(proto, v6)))
}

/// A TCP (ACK), UDP or ICMP/ICMPv6 echo request datagram of `t` with `payload`.
pub fn build(t: &Tuple, payload: &[u8], hops: u8) -> Vec<u8> {
    let b = match (t.src, t.dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            etherparse::PacketBuilder::ipv6(s.octets(), d.octets(), hops)
        }
        _ => etherparse::PacketBuilder::ipv4(
            wire::v4(t.src).octets(),
            wire::v4(t.dst).octets(),
            hops,
        ),
    };
    let mut out = Vec::new();
    let written = match t.proto {
        PROTO_TCP => b
            .tcp(t.sport, t.dport, 7, 1000)
            .ack(9)
            .write(&mut out, payload),
        PROTO_UDP => b.udp(t.sport, t.dport).write(&mut out, payload),
        PROTO_ICMPV6 => b.icmpv6_echo_request(t.sport, 1).write(&mut out, payload),
        _ => b.icmpv4_echo_request(t.sport, 1).write(&mut out, payload),
    };
    written.unwrap();
    out
}
