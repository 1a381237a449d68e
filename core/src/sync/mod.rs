//! Sync between the device store and the county server: the wire format (shared with the
//! server) and, with it, the client.

pub mod wire;
