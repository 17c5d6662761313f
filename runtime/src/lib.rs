//! What every Pixelpipe program does the same way at run time: Kafka client
//! settings and security ([`kafka`]), logging ([`logging`]) and the shutdown
//! signal ([`shutdown`]), and a group's offsets read from outside it
//! ([`group_offsets`]). The operator and the worker share it instead of one
//! linking the other.

pub mod group_offsets;
pub mod http;
pub mod kafka;
pub mod logging;
pub mod shutdown;

pub use kafka::{KafkaSettings, Pem, Sasl, Security, Tls, secret_text};
