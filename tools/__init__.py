"""Development tools of the checkout; not part of the installed ``energy_flows`` package.

Run them from the top of the checkout (see ``tools/README.md``)::

    python -m tools.execute_lessons execute    # make notebooks
    python -m tools.screenshots                # make screenshots
"""
