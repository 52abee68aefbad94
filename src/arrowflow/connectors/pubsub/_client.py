"""google-cloud-pubsub plumbing: clients (an insecure channel to an emulator, or the library's
default), resource paths, the raw-protobuf ``Publish`` call, and which failures are transient."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ACK_CHUNK",
    "RETRYABLE_ERRORS",
    "RETRYABLE_STATUS",
    "direct_publish",
    "path",
    "publisher_client",
    "subscriber_client",
]

#: The server takes at most this many ack ids per acknowledge/modify_ack_deadline call.
ACK_CHUNK = 2500
#: Exception class names of a failed publish that are worth retrying.
RETRYABLE_ERRORS = (
    "ServiceUnavailable",
    "DeadlineExceeded",
    "InternalServerError",
    "Aborted",
    "ResourceExhausted",
    "TooManyRequests",
    "Unknown",
    "Cancelled",
    "TimeoutError",
    "PublishToPausedOrderingKeyException",
)
#: gRPC status names of a failed Publish RPC that are worth retrying.
RETRYABLE_STATUS = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN", "CANCELLED"}
)


def direct_publish(publisher: Any) -> tuple[Any, Any] | None:
    """``(Publish multicallable on raw protobufs, raw PublishRequest class)`` for ``publisher``'s gRPC
    channel, or None when its transport has no gRPC channel (then the client library publishes)."""
    from google.pubsub_v1 import types

    channel = getattr(publisher.transport, "grpc_channel", None)
    if channel is None or not hasattr(channel, "unary_unary"):
        return None
    request_type = types.PublishRequest.pb()
    call = channel.unary_unary(
        "/google.pubsub.v1.Publisher/Publish",
        request_serializer=request_type.SerializeToString,
        response_deserializer=types.PublishResponse.pb().FromString,
    )
    return call, request_type


def path(project: str, kind: str, name: str) -> str:
    return name if name.startswith("projects/") else f"projects/{project}/{kind}/{name}"


def subscriber_client(emulator_host: str | None) -> Any:
    """A ``SubscriberClient``: an insecure channel to ``emulator_host``, else the library's default."""
    from google.cloud import pubsub_v1

    if emulator_host is None:
        return pubsub_v1.SubscriberClient()
    import grpc
    from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

    return pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator_host))
    )


def publisher_client(emulator_host: str | None, **kwargs: Any) -> Any:
    """A ``PublisherClient`` (``kwargs``: batch_settings, publisher_options) for ``emulator_host``."""
    from google.cloud import pubsub_v1

    if emulator_host is None:
        return pubsub_v1.PublisherClient(**kwargs)
    import grpc
    from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport

    channel = grpc.insecure_channel(emulator_host)
    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel), **kwargs)
