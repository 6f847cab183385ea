//! The `starttls` command's machinery: the transcript suite, the policy
//! vectors, live loopback checks, and the reference server and client. The binary is `starttls`.

pub mod connect;
pub mod hostile;
pub mod live;
pub mod mailbox;
pub mod net;
pub mod pki;
pub mod policy;
pub mod probe;
pub mod reference;
pub mod serve;
pub mod transcript;
pub mod zone;
