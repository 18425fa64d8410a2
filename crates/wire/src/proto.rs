//! IP protocol numbers (IANA "Assigned Internet Protocol Numbers") and TCP flag bits.

/// ICMP (RFC 792).
pub const PROTO_ICMP: u8 = 1;
/// TCP (RFC 9293).
pub const PROTO_TCP: u8 = 6;
/// UDP (RFC 768).
pub const PROTO_UDP: u8 = 17;

/// Lower-case name as `iptables -p` and `conntrack -L` spell it ("ip" for others).
pub fn name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_ICMP => "icmp",
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
