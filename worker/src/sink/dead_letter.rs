//! What a dead letter carries besides the original bytes: the original
//! headers, and headers naming the stage, the reason and the source record.

use pixelpipe_crds::Stage;
use rdkafka::message::{Header, OwnedHeaders};

use crate::event::Rejection;
use crate::job::InputMessage;

/// Header names on dead letters.
pub mod headers {
    pub const STAGE: &str = "pixelpipe.stage";
    pub const REASON: &str = "pixelpipe.reason";
    pub const DETAIL: &str = "pixelpipe.detail";
    pub const SOURCE_TOPIC: &str = "pixelpipe.source.topic";
    pub const SOURCE_PARTITION: &str = "pixelpipe.source.partition";
    pub const SOURCE_OFFSET: &str = "pixelpipe.source.offset";
}

pub(super) fn dead_letter_headers(
    topic: &str,
    msg: &InputMessage,
    stage: Stage,
    rejection: &Rejection,
) -> OwnedHeaders {
    let partition = msg.partition.to_string();
    let offset = msg.offset.to_string();
    let mut h = OwnedHeaders::new_with_capacity(6 + msg.headers.len());
    for (key, value) in &msg.headers {
        h = h.insert(Header {
            key,
            value: Some(value.as_slice()),
        });
    }
    for (key, value) in [
        (headers::STAGE, stage.as_str()),
        (headers::REASON, rejection.reason.code()),
        (headers::DETAIL, rejection.detail.as_str()),
        (headers::SOURCE_TOPIC, topic),
        (headers::SOURCE_PARTITION, partition.as_str()),
        (headers::SOURCE_OFFSET, offset.as_str()),
    ] {
        h = h.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    h
}
