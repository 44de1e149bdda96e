"""The classroom's services: the Prefect server ("Orion") and workers ("agents").

* :mod:`~energy_flows.services.server`: :class:`PrefectServer`, ``start_server()``
* :mod:`~energy_flows.services.worker`: :class:`Worker`
* :mod:`~energy_flows.services.postgres`: :class:`PostgresServer`, the server's
  database when it runs on PostgreSQL (``PrefectServer(database="postgres")``)
* :mod:`~energy_flows.services.pgdata`: a managed PostgreSQL's binaries, data
  folder and template
* :mod:`~energy_flows.services.base`: :class:`ManagedService`, the shape both share,
  and ``launch()``, which starts a service and records it
* :mod:`~energy_flows.services.cluster`: ``dask_runner()``, a Dask cluster of
  processes for one flow run (the batch flow on Dask, lesson 07), and its dashboard link
* :mod:`~energy_flows.services.control`: ``running()``, ``stop_all()``, ``reconcile()``
* :mod:`~energy_flows.services.recovery`: the runs an ended worker leaves behind end Crashed
* :mod:`~energy_flows.services.registry`: the state files in ``<home>/state/``
* :mod:`~energy_flows.services.process`: ``spawn()``, the one way every child
  process is started (under ``watchdog.py``, so none outlives its kernel)
* :mod:`~energy_flows.services.launch`: starts Prefect processes (and a kernel's
  own import of Prefect) without the slow optional import and collector pauses
* :mod:`~energy_flows.services.database`: new homes copy a migrated empty database
* :mod:`~energy_flows.services.serverlog`: in the server process, one log line per
  busy-database refusal instead of a traceback
* :mod:`~energy_flows.services.api`: the few REST calls made without importing Prefect
* :mod:`~energy_flows.services.urls`: the server's addresses, here or behind JupyterHub
* :mod:`~energy_flows.services.commands`: ``energy-flows up | down | status | logs | reset``

Nothing is imported here, so ``python -m energy_flows.services.launch`` and
``energy-flows status`` stay fast.
"""
