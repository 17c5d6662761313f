//! How long the partner payload of each benchmark input is, written by the
//! worker's own code, so that the ceiling can send as many bytes as the
//! worker does. The payload is longer than the input it is made from
//! (SHA-256s of 64 hex digits in place of identifiers, the server-side
//! times), and carrying those bytes is Kafka I/O, not processing: a ceiling
//! that forwards the input unchanged does less of it than the pipeline
//! must.

use pixelpipe_crds::PipelineFile;
use pixelpipe_worker::augment::{Payloads, Privacy};
use pixelpipe_worker::event::decode;
use pixelpipe_worker::routing::Router;
use pixelpipe_worker::validate::validate;

/// The worker's parse, validate and augment, for lengths only.
#[derive(Debug)]
pub struct PayloadLength {
    config: PipelineFile,
    router: Router,
    privacy: Privacy,
}

impl PayloadLength {
    pub fn new(config: PipelineFile) -> Self {
        Self {
            router: Router::new(&config),
            privacy: Privacy::of(&config.privacy),
            config,
        }
    }

    /// The length of the payload the worker writes for `input` if it is
    /// received and processed at `now_ms`; `None` for an input the worker
    /// dead-letters. A later processing time can add a digit to the event's
    /// age: a byte in a thousand.
    pub fn of(&self, input: &[u8], now_ms: i64) -> Option<usize> {
        let limits = &self.config.limits;
        let event = decode(Some(input), limits.max_event_bytes as usize).ok()?;
        let valid = validate(&event, &self.router, limits, now_ms).ok()?;
        let mut payloads = Payloads::new(&self.privacy, now_ms).ok()?;
        let payload = payloads.write(&event, valid.event_ms, now_ms).ok()?;
        Some(payload.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixelpipe_loadgen::{Generator, Kind, Mix};

    fn lengths() -> PayloadLength {
        PayloadLength::new(PipelineFile::parse(crate::suite::PIPELINE).expect("the pipeline"))
    }

    #[test]
    fn a_valid_event_s_payload_is_longer_than_the_event() {
        let mut g = Generator::new(Mix {
            seed: 7,
            run_id: "lengths".into(),
            no_consent_share: 0.0,
            malformed_share: 0.0,
            event_bytes: 1024,
        });
        let now = jiff::Timestamp::now().as_millisecond();
        let m = g.next_message();
        assert_eq!(m.kind, Kind::Valid);
        let len = lengths()
            .of(&m.payload, now)
            .expect("a valid event has a payload");
        // Hashes and times in, personal query parameters out: longer.
        assert!(len > m.payload.len(), "{len} against {}", m.payload.len());
        assert!(
            len < m.payload.len() * 2,
            "{len} against {}",
            m.payload.len()
        );
    }

    #[test]
    fn what_the_worker_dead_letters_has_no_payload() {
        let now = jiff::Timestamp::now().as_millisecond();
        assert_eq!(lengths().of(b"{\"not\": \"an event\"}", now), None);
        assert_eq!(lengths().of(b"\xff", now), None);
    }
}
