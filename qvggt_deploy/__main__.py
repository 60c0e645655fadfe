"""``python -m qvggt_deploy`` is the same as the ``qvggt`` console script."""
import sys

from qvggt_deploy.cli.main import main

sys.exit(main())
