//! Problems found in the input objects. Each names the object and what is wrong; the object (or
//! just the offending part of it) is skipped and everything else is still computed.

use crate::objects::ObjectRef;
use std::fmt;

/// What is wrong with an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// An address field does not hold an IP address.
    #[error("{field}: invalid IP address {value:?}")]
    InvalidIp {
        /// The field, e.g. `spec.clusterIPs[0]`.
        field: String,
        /// The value found.
        value: String,
    },
    /// A CIDR field does not hold a CIDR.
    #[error("{field}: invalid CIDR {value:?}")]
    InvalidCidr {
        /// The field.
        field: String,
        /// The value found.
        value: String,
    },
    /// A port is missing or outside 1..=65535.
    #[error("{field}: port {value} is missing or out of range (1-65535)")]
    InvalidPort {
        /// The field.
        field: String,
        /// The value found (0 when missing).
        value: i64,
    },
    /// A protocol other than TCP, UDP and SCTP.
    #[error("{field}: unknown protocol {value:?} (expected TCP, UDP or SCTP)")]
    UnknownProtocol {
        /// The field.
        field: String,
        /// The value found.
        value: String,
    },
    /// Two ports of one Service collide (same name, or same port number and protocol).
    #[error("{field}: conflicts with {other}: {detail}")]
    ConflictingPorts {
        /// The port that was skipped.
        field: String,
        /// The port kept.
        other: String,
        /// What collides.
        detail: String,
    },
    /// A destination (address, protocol, port) or NodePort already claimed by another
    /// service-port; the later one (in namespace/name order) is skipped for that destination.
    #[error("{destination} is already used by {owner}")]
    ConflictingDestination {
        /// The destination, e.g. `10.96.0.10 TCP 53` or `NodePort TCP 30080`.
        destination: String,
        /// The service-port that keeps it.
        owner: String,
    },
    /// An EndpointSlice without the `kubernetes.io/service-name` label.
    #[error("no kubernetes.io/service-name label: cannot tell which Service it belongs to")]
    MissingServiceName,
    /// A required field is absent or empty.
    #[error("{field}: {detail}")]
    Missing {
        /// The field.
        field: String,
        /// Why it matters.
        detail: String,
    },
    /// A field has a value the model does not understand.
    #[error("{field}: invalid value {value:?}: {detail}")]
    InvalidValue {
        /// The field.
        field: String,
        /// The value found.
        value: String,
        /// What was expected.
        detail: String,
    },
}

/// A problem in one object: which object, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ModelError {
    /// The object with the problem.
    pub object: ObjectRef,
    /// What is wrong with it.
    pub problem: Problem,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.problem)
    }
}

impl ModelError {
    /// A short, stable name of the problem, for metric labels.
    pub fn reason(&self) -> &'static str {
        match self.problem {
            Problem::InvalidIp { .. } => "invalid_ip",
            Problem::InvalidCidr { .. } => "invalid_cidr",
            Problem::InvalidPort { .. } => "invalid_port",
            Problem::UnknownProtocol { .. } => "unknown_protocol",
            Problem::ConflictingPorts { .. } => "conflicting_ports",
            Problem::ConflictingDestination { .. } => "conflicting_destination",
            Problem::MissingServiceName => "missing_service_name",
            Problem::Missing { .. } => "missing_field",
            Problem::InvalidValue { .. } => "invalid_value",
        }
    }
}
