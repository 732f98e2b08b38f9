"""The event contract: JSON Schemas of the topics (events.md) and the output events."""
