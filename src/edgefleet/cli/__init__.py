"""The ``edgefleet`` command line: server, worker, admin commands and database migrations."""
