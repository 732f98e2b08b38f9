"""The tax platform's HTTP contract: request signing and the client adapter."""
