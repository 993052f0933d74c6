"""`python -m regrow` (and `torchrun -m regrow`) runs the command-line interface."""

from regrow.cli.main import main

raise SystemExit(main())
