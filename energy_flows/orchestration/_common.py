"""Old name of :mod:`energy_flows.orchestration.common`, kept while callers move.

Import from :mod:`energy_flows.orchestration.common` instead: this alias goes
once nothing imports it.
"""

from energy_flows.orchestration.common import *  # noqa: F403
from energy_flows.orchestration.common import __all__  # noqa: F401
