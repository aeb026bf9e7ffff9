"""Makes the shared test helpers in this folder (``ray_processes``) importable from every
test folder."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
