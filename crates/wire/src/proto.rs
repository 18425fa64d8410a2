//! IP protocol numbers (and IPv6 extension header numbers) (IANA "Assigned Internet Protocol Numbers") and TCP flag bits.

/// ICMP (RFC 792).
pub const PROTO_ICMP: u8 = 1;
/// TCP (RFC 9293).
pub const PROTO_TCP: u8 = 6;
/// UDP (RFC 768).
pub const PROTO_UDP: u8 = 17;
/// ICMPv6 (RFC 4443): IPv6's ICMP, its checksum covering a pseudo-header.
pub const PROTO_ICMPV6: u8 = 58;
/// SCTP (RFC 9260).
pub const PROTO_SCTP: u8 = 132;

/// SCTP chunk types the conntrack model looks at (RFC 9260 §3.2).
pub mod sctp_chunk {
    pub const INIT: u8 = 1;
    pub const INIT_ACK: u8 = 2;
    pub const ABORT: u8 = 6;
    pub const COOKIE_ECHO: u8 = 10;
    pub const COOKIE_ACK: u8 = 11;
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

/// Lower-case name as `iptables -p` and `conntrack -L` spell it ("ip" for others).
pub fn name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_ICMP => "icmp",
        PROTO_SCTP => "sctp",
        PROTO_ICMPV6 => "icmpv6",
        _ => "ip",
    }
}

/// TCP flag bits (byte 13 of the header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// IPv6 extension headers (RFC 8200 §4) the parser knows: hop-by-hop, routing and
/// destination options are skipped, a fragment header is a fragment.
pub mod ipv6_ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const DEST_OPTS: u8 = 60;
}
