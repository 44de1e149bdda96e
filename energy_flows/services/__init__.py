"""The classroom's services: the Prefect server ("Orion"), workers ("agents"), PostgreSQL.

Nothing is imported here, so ``energy-flows status`` stays fast. docs/architecture.md.
"""
