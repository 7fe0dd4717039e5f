//! The receive-only SMTP sink (`relaymail sink`): accepts mail on the
//! configured listeners and stores it. It never relays: nothing here, or
//! below, opens an outbound connection, and it does not use `relay`,
//! `spool` or `creds`.

pub mod store;
