import sys

from mock_server.cli import main

if __name__ == "__main__":  # not when a spawned encoder worker process imports this as its main module
    sys.exit(main())
