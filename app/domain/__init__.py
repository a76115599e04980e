"""The pure core: parsing, signatures, idempotency keys, state merges.

Nothing in this package imports starlette, redis, rq or sqlalchemy; time is passed in.
"""
