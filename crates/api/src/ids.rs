//! Typed identifiers: an instance UUID cannot be passed where an image UUID
//! is wanted.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_uuid {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random identifier.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
            /// The underlying UUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hyphenated(s).map(Self)
            }
        }
    };
}

typed_uuid!(
    /// The UUID of an instance (zone or VM).
    InstanceUuid
);
typed_uuid!(
    /// The UUID of an image.
    ImageUuid
);

/// Parses a UUID in the one form SmartOS accepts: 36 characters,
/// lowercase or uppercase hex with hyphens.
pub fn parse_hyphenated(s: &str) -> Result<Uuid, uuid::Error> {
    if s.len() != 36 {
        // Let the uuid crate produce the error for the odd length.
        return Uuid::try_parse(&format!("{s}!"));
    }
    Uuid::try_parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reject_simple_form() {
        let id: InstanceUuid = "0d6e5b7c-8f1a-4f5e-9a51-6e1b2c3d4e5f".parse().unwrap();
        assert_eq!(id.to_string(), "0d6e5b7c-8f1a-4f5e-9a51-6e1b2c3d4e5f");
        assert!("0d6e5b7c8f1a4f5e9a516e1b2c3d4e5f".parse::<InstanceUuid>().is_err());
        assert!("not-a-uuid".parse::<ImageUuid>().is_err());
    }
}
