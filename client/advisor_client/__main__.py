"""`python -m advisor_client submit ...`: the client commands without the service installed."""

import sys

from advisor_client.cli import main

sys.exit(main())
