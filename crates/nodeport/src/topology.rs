//! Endpoint categorisation (`CategorizeEndpoints`, spec §3.1, §5.4).
