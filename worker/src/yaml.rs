//! The one place that reads YAML. serde_yaml is deprecated upstream but works;
//! keeping it behind this module lets a maintained fork replace it in one change.

use serde::de::DeserializeOwned;

pub use serde_yaml::Error;

/// Deserializes a YAML document.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_yaml::from_str(text)
}
