"""Adapters around SQL and Redis. Repository functions take a session and never commit."""
