import sys

from awing.cli import main

sys.exit(main())
