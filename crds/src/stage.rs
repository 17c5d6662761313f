//! The four stages of the worker pipeline, and one value per stage.
//!
//! Every per-stage value (pool sizes and their bounds, busy time, metric
//! labels, flags, status) is a [`PerStage<T>`], so adding a stage is one
//! change here that the compiler then walks through the rest of the code.

use std::fmt;
use std::ops::{Index, IndexMut};
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A stage of the worker pipeline, in pipeline order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Stage {
    /// Raw bytes into events.
    Parse,
    /// Semantic checks, consent and routing.
    Validate,
    /// Server-side fields, hashing, URL stripping, partner payloads.
    Augment,
    /// Partner messages and dead letters to Kafka.
    Produce,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: &'static [Stage] = <Stage as strum::VariantArray>::VARIANTS;

    /// The stage's name: a metric label value and a log field.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One value per stage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
// Each field defaults on its own (a spec may name only the stages it
// changes), and the schema shows the default, so `T` must have one.
#[schemars(bound = "T: JsonSchema + Default + Serialize")]
pub struct PerStage<T> {
    /// The parse stage: decoding raw bytes into events.
    #[serde(default)]
    pub parse: T,
    /// The validate stage: semantic checks, consent and routing.
    #[serde(default)]
    pub validate: T,
    /// The augment stage: server-side fields, hashing and URL stripping.
    #[serde(default)]
    pub augment: T,
    /// The produce stage: partner messages and dead letters to Kafka.
    #[serde(default)]
    pub produce: T,
}

impl<T> PerStage<T> {
    /// A value for every stage, from `f`.
    pub fn from_fn(mut f: impl FnMut(Stage) -> T) -> Self {
        Self {
            parse: f(Stage::Parse),
            validate: f(Stage::Validate),
            augment: f(Stage::Augment),
            produce: f(Stage::Produce),
        }
    }

    /// The same value for every stage.
    pub fn splat(value: T) -> Self
    where
        T: Clone,
    {
        Self::from_fn(|_| value.clone())
    }

    /// Each stage's value through `f`.
    pub fn map<U>(self, mut f: impl FnMut(Stage, T) -> U) -> PerStage<U> {
        PerStage {
            parse: f(Stage::Parse, self.parse),
            validate: f(Stage::Validate, self.validate),
            augment: f(Stage::Augment, self.augment),
            produce: f(Stage::Produce, self.produce),
        }
    }

    /// Borrows each value.
    pub fn as_ref(&self) -> PerStage<&T> {
        PerStage {
            parse: &self.parse,
            validate: &self.validate,
            augment: &self.augment,
            produce: &self.produce,
        }
    }

    /// Pairs each stage's value with `other`'s.
    pub fn zip<U>(self, other: PerStage<U>) -> PerStage<(T, U)> {
        PerStage {
            parse: (self.parse, other.parse),
            validate: (self.validate, other.validate),
            augment: (self.augment, other.augment),
            produce: (self.produce, other.produce),
        }
    }

    /// `(stage, value)` in pipeline order.
    pub fn iter(&self) -> impl Iterator<Item = (Stage, &T)> {
        Stage::ALL.iter().map(move |&s| (s, &self[s]))
    }

    /// The values in pipeline order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        Stage::ALL.iter().map(move |&s| &self[s])
    }
}

impl<T> Index<Stage> for PerStage<T> {
    type Output = T;
    fn index(&self, stage: Stage) -> &T {
        match stage {
            Stage::Parse => &self.parse,
            Stage::Validate => &self.validate,
            Stage::Augment => &self.augment,
            Stage::Produce => &self.produce,
        }
    }
}

impl<T> IndexMut<Stage> for PerStage<T> {
    fn index_mut(&mut self, stage: Stage) -> &mut T {
        match stage {
            Stage::Parse => &mut self.parse,
            Stage::Validate => &mut self.validate,
            Stage::Augment => &mut self.augment,
            Stage::Produce => &mut self.produce,
        }
    }
}

/// `parse/validate/augment/produce`, e.g. `2/2/2/8`: the printer column's
/// form, and the worker's `--pools` flag.
impl<T: fmt::Display> fmt::Display for PerStage<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.parse, self.validate, self.augment, self.produce
        )
    }
}

/// Why a `parse/validate/augment/produce` text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected four values as parse/validate/augment/produce, got {0:?}")]
pub struct PerStageParseError(String);

impl<T: FromStr> FromStr for PerStage<T> {
    type Err = PerStageParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PerStageParseError(s.to_string());
        let mut parts = s.split('/').map(|p| p.trim().parse::<T>());
        let mut next = || parts.next().and_then(Result::ok).ok_or_else(bad);
        let values = PerStage {
            parse: next()?,
            validate: next()?,
            augment: next()?,
            produce: next()?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_named_in_pipeline_order() {
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["parse", "validate", "augment", "produce"]);
        assert_eq!("augment".parse::<Stage>(), Ok(Stage::Augment));
        assert_eq!(Stage::Produce.to_string(), "produce");
    }

    #[test]
    fn per_stage_values_read_and_write_as_slashes() {
        let p: PerStage<usize> = "1/2/3/40".parse().expect("valid");
        assert_eq!(p[Stage::Augment], 3);
        assert_eq!(p.to_string(), "1/2/3/40");
        for bad in ["1/2/3", "1/2/3/4/5", "a/b/c/d", "", "1//3/4"] {
            assert!(bad.parse::<PerStage<usize>>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn map_zip_and_index_agree() {
        let p = PerStage::from_fn(|s| s as usize);
        let doubled = p.map(|_, v| v * 2);
        assert_eq!(doubled.to_string(), "0/2/4/6");
        let pairs = p.zip(doubled);
        assert_eq!(pairs[Stage::Produce], (3, 6));
        let mut q = PerStage::splat(0);
        q[Stage::Validate] = 9;
        assert_eq!(q.values().copied().collect::<Vec<_>>(), [0, 9, 0, 0]);
    }
}
