import sys

from redkube.cli.main import main

sys.exit(main(sys.argv[1:]))
