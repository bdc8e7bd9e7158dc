"""Central database: models, engine/session set-up and Alembic migrations."""
