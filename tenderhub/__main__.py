import sys

from tenderhub.cli import main

sys.exit(main())
