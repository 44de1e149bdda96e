"""The classroom's services: the Prefect server ("Orion"), workers ("agents"), PostgreSQL.

One life cycle for all of them (``base.py``), their processes under a
watchdog (``process.py``, ``watchdog.py``), their state files
(``registry.py``), and what finishes an ended worker's runs (``recovery.py``,
``control.py``). docs/architecture.md draws it. Nothing is imported here, so
``energy-flows status`` stays fast.
"""
