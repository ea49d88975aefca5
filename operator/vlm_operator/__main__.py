"""`python -m vlm_operator` runs the command line."""

from vlm_operator.cli import main

raise SystemExit(main())
