mod cluster;
fn main() {}
