"""``python -m app.cli``: the ``hookledger`` command."""

from app.cli import main

raise SystemExit(main())
