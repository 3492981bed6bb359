import sys

from hwsched.cli import main

sys.exit(main())
