"""Kafka plumbing shared by the worker and the CLI: client settings, topics, sinks."""
