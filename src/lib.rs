//! archiveinterface: tape and other high-latency storage behind the Pacifica Archive Interface and
//! SwiftHLM HTTP APIs.

pub mod hlm;
