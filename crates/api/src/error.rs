//! The transport-neutral API error. The daemon turns it into an HTTP status
//! in one place; the CLIs turn it into SmartOS's exit codes and output.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What kind of failure an [`ApiError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ErrorKind {
    /// The request or payload is invalid; nothing was changed.
    Invalid,
    /// The named instance or image does not exist.
    NotFound,
    /// The request conflicts with current state (in use, duplicate, wrong state).
    Conflict,
    /// The request is understood but not supported on this host or brand.
    Unsupported,
    /// Something failed inside the daemon or the kernel.
    Internal,
}

/// SmartOS's validation result (`vmadm validate` output). Each list names
/// properties; `reasons` says why each one was refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ValidationErrors {
    /// The brand given, when it is unknown or cannot run here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_brand: Option<String>,
    /// Properties that are not valid (unknown, or not for this brand or
    /// action). The three lists are always present, empty or not, as in
    /// SmartOS's errors object.
    #[serde(default)]
    pub bad_properties: Vec<String>,
    /// Properties whose value is wrong.
    #[serde(default)]
    pub bad_values: Vec<String>,
    /// Required properties that are absent.
    #[serde(default)]
    pub missing_properties: Vec<String>,
    /// Why each named property was refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reasons: BTreeMap<String, String>,
}

impl ValidationErrors {
    /// True when nothing was found wrong.
    pub fn is_empty(&self) -> bool {
        self.bad_brand.is_none()
            && self.bad_properties.is_empty()
            && self.bad_values.is_empty()
            && self.missing_properties.is_empty()
    }

    fn note(&mut self, prop: &str, reason: String) {
        self.reasons.entry(prop.to_string()).or_insert(reason);
    }

    /// Records an unknown or misplaced property.
    pub fn bad_property(&mut self, prop: &str, reason: impl Into<String>) {
        if !self.bad_properties.iter().any(|p| p == prop) {
            self.bad_properties.push(prop.to_string());
        }
        self.note(prop, reason.into());
    }

    /// Records a property whose value is wrong.
    pub fn bad_value(&mut self, prop: &str, reason: impl Into<String>) {
        if !self.bad_values.iter().any(|p| p == prop) {
            self.bad_values.push(prop.to_string());
        }
        self.note(prop, reason.into());
    }

    /// Records a required property that is absent.
    pub fn missing(&mut self, prop: &str, reason: impl Into<String>) {
        if !self.missing_properties.iter().any(|p| p == prop) {
            self.missing_properties.push(prop.to_string());
        }
        self.note(prop, reason.into());
    }

    /// Records a brand that cannot be used.
    pub fn bad_brand(&mut self, brand: &str, reason: impl Into<String>) {
        self.bad_brand = Some(brand.to_string());
        self.note("brand", reason.into());
    }

    /// A one-line summary naming each property and its reason.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(b) = &self.bad_brand {
            parts.push(format!("bad brand {b:?}: {}", self.reasons.get("brand").map(String::as_str).unwrap_or("")));
        }
        for (label, list) in [
            ("missing", &self.missing_properties),
            ("bad property", &self.bad_properties),
            ("bad value", &self.bad_values),
        ] {
            for p in list {
                match self.reasons.get(p) {
                    Some(r) => parts.push(format!("{label} {p}: {r}")),
                    None => parts.push(format!("{label} {p}")),
                }
            }
        }
        parts.join("; ")
    }
}

/// An error answered by the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// A human-readable message naming what failed and why.
    pub message: String,
    /// For [`ErrorKind::Invalid`] payloads: SmartOS's validation result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Box<ValidationErrors>>,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), validation: None }
    }
    /// An invalid request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    /// A payload that failed validation.
    pub fn validation(errors: ValidationErrors) -> Self {
        Self {
            kind: ErrorKind::Invalid,
            message: format!("Invalid payload: {}", errors.summary()),
            validation: Some(Box::new(errors)),
        }
    }
    /// A missing instance or image.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// A conflict with current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// Not supported here.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// An internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// The HTTP status this error is answered with.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            ErrorKind::Invalid => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Unsupported => 422,
            ErrorKind::Internal => 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_property_and_reason() {
        let mut v = ValidationErrors::default();
        v.bad_value("max_swap", "must be at least 256");
        v.missing("brand", "is required");
        assert!(!v.is_empty());
        let s = v.summary();
        assert!(s.contains("missing brand: is required"), "{s}");
        assert!(s.contains("bad value max_swap: must be at least 256"), "{s}");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["bad_values"][0], "max_swap");
        assert_eq!(json["bad_properties"], serde_json::json!([]), "always there, as in SmartOS");
    }
}
