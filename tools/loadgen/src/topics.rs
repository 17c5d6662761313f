//! Topic creation for the demo, tests and the load generator.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication, TopicResult};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use pixelpipe_runtime::KafkaSettings;

/// Creates each `(name, partitions)` topic that does not exist yet.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[(&str, i32)],
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        settings.client("pixelpipe-topics", |_| {}).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new, &options).await?;
    done_unless(results, RDKafkaErrorCode::TopicAlreadyExists, "create")
}

/// Deletes each of `topics` that exists.
pub async fn delete_topics(settings: &KafkaSettings, topics: &[&str]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        settings.client("pixelpipe-topics", |_| {}).create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.delete_topics(topics, &options).await?;
    done_unless(results, RDKafkaErrorCode::UnknownTopicOrPartition, "delete")
}

/// The first topic an admin operation failed on, other than with `already`:
/// the code that says it was done before (it exists, it is gone).
fn done_unless(
    results: Vec<TopicResult>,
    already: RDKafkaErrorCode,
    operation: &str,
) -> Result<(), KafkaError> {
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, code)) if code == already => {}
            Err((name, code)) => {
                tracing::error!(topic = %name, error = %code, "cannot {operation} topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}
