"""``python -m orchestrator_db.cli``: the same as the ``orchestrator-db`` command."""

from . import main

if __name__ == "__main__":
    main()
