//! One file per protocol. Each handler is a plain function from the app and the request to
//! a response; `routes.rs` says which handler serves which method and path.

pub mod simple;
