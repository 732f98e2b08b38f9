"""Create the topics that are missing; never touch ones that ops created."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)


async def ensure_topics(
    bootstrap: str,
    topics: Sequence[str],
    *,
    partitions: int,
    replication: int,
    client_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Returns the topics it created. ``client_options``: TLS/SASL for the admin client."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client_options or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return []
        try:
            new = [NewTopic(t, num_partitions=partitions, replication_factor=replication)
                   for t in missing]  # fmt: skip
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            # Another worker won the race; what matters is that the topics exist.
            log.info("topics created concurrently by another worker: %s", missing)
        else:
            log.info("created topics %s with %d partitions", missing, partitions)
        return missing
    finally:
        await admin.close()
