"""A sandbox of the tax platform: the HTTP contract of ``tax-platform-api.md`` with
switchable faults, for local runs, demos and tests.

``server.SandboxServer`` runs it in-process; ``faults.Faults`` is the live handle a
test turns; ``store.SandboxStore`` keeps everything stored and every POST counted.
"""
