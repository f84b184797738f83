"""`python -m pydarknet` is the `pydarknet` command."""

from pydarknet.cli.main import main

raise SystemExit(main())
