"""Kafka for eventray on aiokafka: the ``kafka://`` transport, ``kafka-source`` and
``kafka-sink``; a test broker in ``eventray_kafka.testing``."""

from ._config import KafkaConnection, KafkaSinkConfig, KafkaSourceConfig
from ._sink import KafkaSink
from ._source import KafkaSource
from ._transport import KafkaTransport

__all__ = [
    "KafkaConnection",
    "KafkaSink",
    "KafkaSinkConfig",
    "KafkaSource",
    "KafkaSourceConfig",
    "KafkaTransport",
]
