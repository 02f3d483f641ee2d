//! Domain types and rules of thetazero. Pure: no IO, no wire format, no database.
//!
//! Everything here is shared by the sandbox, the stores and the HTTP edge. The
//! rules that decide what an agent may do (permissions, templates, limits) live
//! here so that every layer reads them from one place.

pub mod audit;
pub mod bus;
pub mod frameworks;
pub mod id;
pub mod limits;
pub mod model;
pub mod permissions;
pub mod rate;
mod sql;
pub mod store;
pub mod telemetry;

pub use limits::{AgentConfig, Ceilings, ConfigError, Limits, Template};
pub use permissions::{KeyScope, Permissions, Preset, Scope};
