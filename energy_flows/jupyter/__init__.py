"""JupyterLab's side of the classroom: the "Prefect UI" Launcher tile and the proxy's password.

``ui_tile.py`` is the tile jupyter-server-proxy shows in the Launcher (it
starts or reuses this home's Prefect server); ``proxy_auth.py`` is a Jupyter
server extension that lets the owner's UI through the proxy without a password.
Both run inside, or are started by, the Jupyter server; the servers they reach
are the classroom services' (``energy_flows/services/``).
"""
