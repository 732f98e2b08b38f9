"""The worker process: faust app, the services it owns, and how it is started."""
