"""The AWS plumbing the Kinesis, Firehose and DynamoDB connectors share: boto3 options and raw JSON
calls (:mod:`.config`), DynamoDB attribute values (:mod:`.attribute_values`), the request-based sink
(:mod:`.sink`), the shard sources (:mod:`.shards`) and vectorized helpers (:mod:`.common`)."""
