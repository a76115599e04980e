"""The schema's history as Alembic revisions (``versions/``), run by ``app.store.schema``."""
