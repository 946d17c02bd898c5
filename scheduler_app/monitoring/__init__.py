"""The read side: health checks (:mod:`.health`), the cluster seen through one seam
(:mod:`.nodes`), Prometheus metrics (:mod:`.metrics`, counters kept by
:mod:`.counters`) and the scheduler process's own probe (:mod:`.probe`). Bounded
queries only; used by the API, ``/metrics`` and ``runscheduler``."""
