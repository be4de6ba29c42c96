import sys

from roofsim.cli.main import main

sys.exit(main())
