//! The one place that reads and writes YAML. serde_yaml is deprecated upstream
//! but works; keeping it behind this module lets a maintained fork replace it
//! in one change.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use serde_yaml::Error;

/// Deserializes a YAML document.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_yaml::from_str(text)
}

/// Serializes a value as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_yaml::to_string(value)
}
