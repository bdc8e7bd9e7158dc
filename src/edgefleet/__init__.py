"""edgefleet: run jobs on outbound-only edge workers, steered centrally at runtime."""

__version__ = "0.1.0"

#: The HTTP API's version and path prefix; here rather than in ``contract`` so that admin
#: commands, which only need the path, start without building the wire models.
API_VERSION = "v1"
API_PREFIX = f"/api/{API_VERSION}"

#: The documented upper bound for a worker's concurrency. Larger values are refused
#: everywhere (CLI, API, worker flag) because no single edge host runs that many jobs.
MAX_CONCURRENCY = 1024
