//! nodestack
