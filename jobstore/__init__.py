"""What the API (``service``) and the workers (``worker``) share, so neither imports the other.

settings (``TAGDISTILL_*``), the records kept in Redis and the ``Store`` that owns every Redis
key, the data directory's layout, JSON logging, and the job queue (the task's name and sending
it by name). It depends on the core (``tagdistill``) and never on ``service`` or ``worker``.
"""
