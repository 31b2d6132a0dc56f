"""`python -m server`: run the gateway (see --help)."""

from server.cli import main

raise SystemExit(main())
